"""Failures panel: where does the model go wrong? Approved cases ranked by Dice, worst first.

Evaluate runs the model on every case with approved labels in a napari worker thread (the viewer
stays responsive) and fills a table (mean and per-class Dice, HD95 in mm) and a histogram of the
per-case Dice. Selecting a row shows that case: image, approved reference, the model's proposal, an
error map (false positives magenta, false negatives cyan; :data:`~napari_medseg.evaluation.failures.ERROR_COLORS`)
and the uncertainty overlay. Export writes ``failures.csv`` and ``failures_hist.png``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.widgets._controller import controller_for, unwrap

if TYPE_CHECKING:
    import napari

    from napari_medseg.evaluation.failures import FailureReport

NETS = {"Pair (UNETR + BS-Net)": "pair", "UNETR": "unetr", "BS-Net": "bsnet"}
DEVICES = ("auto", "cpu", "cuda")
PREFIX = "failure: "
IMAGE, REFERENCE, PROPOSAL, ERRORS, UNCERTAINTY = (
    PREFIX + n for n in ("image", "reference", "proposal", "errors", "uncertainty")
)


class FailuresPanel(QWidget):
    """Store and model; Evaluate / Cancel; worst-first table; histogram; case view; export.

    Signals:
        report_ready(object): the :class:`~napari_medseg.evaluation.failures.FailureReport`.
    """

    report_ready = Signal(object)

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.report: FailureReport | None = None
        self.worker: Any = None

        self.store_edit = QLineEdit()
        self.store_edit.setToolTip("case store folder (with .medseg/)")
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("the store's current model")
        self.net_combo = QComboBox()
        self.net_combo.addItems(list(NETS))
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.run_btn = QPushButton("Evaluate")
        self.run_btn.clicked.connect(self.evaluate)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.export_btn = QPushButton("Export report…")
        self.export_btn.setEnabled(False)
        self.export_btn.clicked.connect(self._ask_export)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.table = QTableWidget(0, 1)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._selected)
        self.legend = QLabel(
            '<span style="color:#ff00ff">■</span> false positive (model added) &nbsp; '
            '<span style="color:#00ffff">■</span> false negative (model missed)'
        )

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.4), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)

        form = QFormLayout()
        form.addRow("Store", self.store_edit)
        form.addRow("Model", self.model_edit)
        form.addRow("Network", self.net_combo)
        form.addRow("Device", self.device_combo)
        buttons = QHBoxLayout()
        for b in (self.run_btn, self.cancel_btn, self.export_btn):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.legend)
        layout.addWidget(self.canvas, 1)
        self._cancel: Any = None
        self._relay: Any = None
        self.ctrl = controller_for(self.viewer)
        self.ctrl.session_changed.connect(self._follow_session)
        self.ctrl.case_opened.connect(lambda _c: self.clear_layers())
        self._follow_session()

    def _follow_session(self) -> None:
        """The panel works on the open session's store (typing a folder opens it as the session)."""
        root = self.ctrl.store_root
        self.store_edit.setReadOnly(root is not None)
        if root is not None:
            self.store_edit.setText(str(root))

    def _ensure_session(self) -> bool:
        """The session's store, or the folder typed here opened as the session (one store for all panels)."""
        if self.ctrl.store_root is not None:
            return True
        typed = self.store_edit.text().strip()
        if not typed or not (Path(typed) / ".medseg").is_dir():
            self.status_label.setText("open a case store first (Cases panel)")
            return False
        return self.ctrl.open_store(typed)

    def clear_layers(self) -> None:
        """Remove this panel's case layers (a newly opened case must not sit under them)."""
        for name in [layer.name for layer in self.viewer.layers if layer.name.startswith(PREFIX)]:
            self.viewer.layers.remove(name)

    # ------------------------------------------------------------------ evaluation
    @property
    def running(self) -> bool:
        return self.worker is not None

    def evaluate(self):  # noqa: ANN201 - the napari worker, or None
        """Start scoring the model on every approved case in a worker thread."""
        from napari.qt.threading import create_worker

        from napari_medseg.evaluation.failures import failure_report
        from napari_medseg.inference.cancel import CancelToken
        from napari_medseg.widgets._controller import _progress_relay

        if self.running:
            return None
        if not self._ensure_session():
            return None
        store = self.ctrl.store_root
        self._cancel = CancelToken()
        self._relay = _progress_relay(SimpleNamespace(emit=self._progress))
        worker = create_worker(
            failure_report,
            store,
            self.model_edit.text().strip() or None,
            NETS[self.net_combo.currentText()],
            self.device_combo.currentText(),
            progress=self._relay.emit,
            cancel=self._cancel,
        )
        worker.returned.connect(self.set_report)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._done)
        self.worker = worker
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.progress.setRange(0, 0)
        self.status_label.setText("loading the model…")
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop after the case being scored (the table keeps the previous report)."""
        if self._cancel is not None:
            self._cancel.cancel()
            self.status_label.setText("stopping after this case…")

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.status_label.setText(f"scored {done}/{total} approved cases")

    def _failed(self, err: Exception) -> None:
        from napari_medseg.errors import MedsegError
        from napari_medseg.inference.cancel import Cancelled

        if isinstance(err, Cancelled):
            self.status_label.setText("stopped")
            return
        if not isinstance(err, MedsegError):
            raise err
        self.status_label.setText(f"error: {err}")

    def _done(self) -> None:
        if self.worker is not None and self.report is None:
            self.status_label.setText(self.status_label.text() or "stopped")
        self.worker = self._cancel = self._relay = None
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.progress.setRange(0, max(self.progress.maximum(), 1))

    # ------------------------------------------------------------------ table and plot
    def columns(self) -> list[str]:
        """``case``, ``dice_mean``, per-class Dice, per-class HD95, ``hd95_mean``, per-class volume error (%)."""
        keys: list[str] = []
        for c in self.report.cases if self.report else []:
            keys += [k for k in c.metrics if k not in keys]
        dice = [k for k in keys if k.startswith("dice_") and k != "dice_mean"]
        hd = [k for k in keys if k.startswith("hd95_") and k != "hd95_mean"]
        tail = ["hd95_mean"] if "hd95_mean" in keys else []
        volume = [k for k in keys if k.startswith("volerr_")]
        return ["case", "dice_mean", *dice, *hd, *tail, *volume]

    def set_report(self, report: FailureReport) -> None:
        """Show ``report`` (cases already worst first) in the table and the histogram."""
        import math

        from napari_medseg.evaluation.failures import histogram_figure

        self.report = report
        cols = self.columns()
        self.table.blockSignals(True)
        self.table.clear()
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels([c.replace("_", " ") for c in cols])
        self.table.setRowCount(len(report.cases))
        for r, case in enumerate(report.cases):
            for c, col in enumerate(cols):
                if col == "case":
                    text = case.case_id
                else:
                    v = case.metrics.get(col, math.nan)
                    if not math.isfinite(v):
                        text = "-"
                    elif col.startswith("volerr"):
                        text = f"{v:+.1f} %"  # signed: + = the model's structure is larger
                    else:
                        text = f"{v:.3f}" if col.startswith("dice") else f"{v:.1f}"
                item = QTableWidgetItem(text)
                if col != "case":
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.blockSignals(False)
        histogram_figure(report, figure=self.figure)
        self.canvas.draw_idle()
        self.export_btn.setEnabled(bool(report.cases))
        self.status_label.setText(
            f"{report.model_id}: mean Dice {report.mean():.3f} on {len(report.cases)} approved cases (worst first)"
        )
        self.report_ready.emit(report)

    def _selected(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        if rows and self.report is not None:
            self.show_case(self.report.cases[min(rows)].case_id)

    # ------------------------------------------------------------------ case view
    def show_case(self, case_id: str) -> None:
        """Add image, reference, proposal, error map and uncertainty of ``case_id`` to the viewer."""
        import numpy as np
        from napari.utils.colormaps import DirectLabelColormap

        from napari_medseg.evaluation.failures import ERROR_COLORS, error_map
        from napari_medseg.io.napari_view import layer_kwargs, to_display

        case = next(c for c in self.report.cases if c.case_id == case_id)
        if not self._ensure_session():
            return
        store = self.ctrl.session.store
        image = store.load_image(case_id)
        reference = store.load_label(case_id, case.version)
        truth = np.asarray(reference.array)
        self.clear_layers()
        geo = layer_kwargs(image)
        self.viewer.add_image(to_display(image.array), name=IMAGE, colormap="gray", **geo)
        self.viewer.add_labels(
            to_display(truth.astype(np.uint8)), name=REFERENCE, opacity=0.5, visible=False, **geo
        )
        if case.proposal is not None:
            self.viewer.add_labels(
                to_display(case.proposal), name=PROPOSAL, opacity=0.5, visible=False, **geo
            )
            errors = self.viewer.add_labels(
                to_display(error_map(case.proposal, truth)),
                name=ERRORS,
                colormap=DirectLabelColormap(color_dict=ERROR_COLORS),
                opacity=0.9,
                **geo,
            )
            errors.editable = False
        if case.uncertainty is not None:
            self.viewer.add_image(
                to_display(case.uncertainty.astype(np.float32)),
                name=UNCERTAINTY,
                colormap="inferno",
                blending="additive",
                opacity=0.6,
                contrast_limits=(0.0, 1.0),
                visible=False,
                **geo,
            )
        self._centre_on_errors()

    def _centre_on_errors(self) -> None:
        """Move the slider to the slice with the most wrong voxels."""
        import numpy as np

        if ERRORS not in self.viewer.layers:
            return
        layer = self.viewer.layers[ERRORS]
        data = np.asarray(layer.data)
        per_slice = (data > 0).reshape(data.shape[0], -1).sum(1)
        centre = [int(per_slice.argmax()), data.shape[1] // 2, data.shape[2] // 2]
        world = layer.data_to_world(centre)
        self.viewer.dims.set_point(range(len(world)), tuple(float(w) for w in world))

    # ------------------------------------------------------------------ export
    def _ask_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for failures.csv and failures_hist.png")
        if folder:
            self.export(folder)

    def export(self, folder: str | Path) -> dict[str, Path]:
        """Write the CSV table and the histogram PNG into ``folder``."""
        from napari_medseg.evaluation.failures import write_report

        if self.report is None:
            raise RuntimeError("evaluate a model first")
        paths = write_report(self.report, folder)
        self.status_label.setText(f"wrote {paths['csv']} and {paths['png']}")
        return paths
