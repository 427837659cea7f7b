"""Predict panel: run the model (pair, UNETR or BS-Net) on the open case in the background."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.widgets._controller import controller_for, unwrap
from napari_medseg.widgets._controls import run_controls

if TYPE_CHECKING:
    import napari

#: Network choices shown to the user -> ``net`` argument of the inference engine.
NETWORKS = {"Pair (UNETR + BS-Net)": "pair", "UNETR": "unetr", "BS-Net": "bsnet"}
DEVICES = ("auto", "cpu", "cuda", "mps")


class PredictPanel(QWidget):
    """Network, device and model folder; Run / Cancel with a progress bar.

    The run happens in a napari worker thread (the viewer stays responsive); the proposal, the
    uncertainty overlay and (optionally) per-network probabilities appear as layers when it ends.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.ctrl = controller_for(self.viewer)

        self.net_combo = QComboBox()
        self.net_combo.addItems(list(NETWORKS))
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.model_edit = QLineEdit()
        self.model_edit.setToolTip("folder with pair.json + unetr/bsnet checkpoints")
        self.model_edit.textChanged.connect(lambda _text: self._apply_model())
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.probs_check = QCheckBox("add per-network probability layers")
        self.outside_check = QCheckBox("run outside the training domain")
        self.outside_check.setToolTip(
            "run even on a case unlike the model's training images; its result is marked and kept out of "
            "the most-uncertain-first ranking"
        )
        self.domain_label = QLabel("")
        self.domain_label.setWordWrap(True)
        self.run_btn = QPushButton("Run")
        self.run_btn.setToolTip(
            "run on the open case, or on an image opened with File > Open (added to the store)"
        )
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn, self.progress, self.status_label = run_controls(self.ctrl.cancel_prediction, "")

        model_row = QHBoxLayout()
        model_row.addWidget(self.model_edit)
        model_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Network", self.net_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Model", model_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.probs_check)
        layout.addWidget(self.domain_label)
        layout.addWidget(self.outside_check)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)

        for combo in (self.net_combo, self.device_combo):
            combo.currentIndexChanged.connect(self._sync_options)
        self.probs_check.toggled.connect(self._sync_options)
        self.outside_check.toggled.connect(self._sync_options)
        self.ctrl.session_changed.connect(self._show_model)
        self.ctrl.session_changed.connect(self.show_case)
        self.ctrl.case_opened.connect(lambda _c: self.show_case())
        self.ctrl.prediction_started.connect(self._started)
        self.ctrl.prediction_progress.connect(self._progress)
        self.ctrl.prediction_finished.connect(self._finished)
        self._show_model()
        self.show_case()

    def show_case(self) -> None:
        """Reset to the open case: its domain check, and its stored proposal (no previous case's result)."""
        from napari_medseg.errors import MedsegError

        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.outside_check.setChecked(False)  # insisting is per case, never carried over
        s = self.ctrl.session
        if s is None or s.case_id is None:
            self.status_label.setText("")
            self.domain_label.setText("")
            return
        try:
            check = s.check_domain()
        except MedsegError as err:
            self.domain_label.setText(str(err))
        else:
            colour = {True: "#2e7d32", False: "#c62828", None: "#ef6c00"}[check.inside]
            self.domain_label.setText(f'<span style="color:{colour}">{check.message}</span>')
        stored = s.stored
        if stored is None:
            refused = self.domain_label.text() and "outside" in self.domain_label.text()
            self.status_label.setText(f"{s.case_id}: no stored proposal" + ("" if refused else "; press Run"))
            return
        score = stored.summary.get("score")
        mark = " (made outside the training domain)" if stored.outside_domain else ""
        self.status_label.setText(
            f"{s.case_id}: stored proposal version {stored.version.number}{mark}"
            + (f", uncertainty score {score:.3f}" if isinstance(score, int | float) else "")
            + f", {len(stored.regions)} uncertain regions"
        )

    def _show_model(self) -> None:
        """A new session uses the model chosen here, or shows its own when none was chosen."""
        s = self.ctrl.session
        if s is None:
            return
        if self.model_edit.text().strip():
            self._apply_model()
        else:
            self.model_edit.setText(str(s.model_dir))

    def _apply_model(self) -> None:
        s = self.ctrl.session
        chosen = self.model_edit.text().strip()
        if s is not None and chosen:
            s.use_model(chosen)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (pair.json)")
        if folder:
            self.model_edit.setText(folder)

    def run(self):  # noqa: ANN201 - the napari worker, or None
        """Start the model on the open case with the chosen network and device."""
        s = self.ctrl.session
        if s is not None:  # the model may have changed elsewhere (e.g. a retrained model was promoted)
            self.model_edit.setText(str(s.model_dir))
        self._sync_options()
        if (
            s is not None
            and s.case_id is None
            and any(lyr.metadata.get("source") for lyr in self.viewer.layers)
        ):
            # an image opened with File > Open: "run on this image" = add it to the store, open it, run
            self.ctrl.adopt_image(run=True)
            return self.ctrl.worker
        return self.ctrl.run_prediction()

    def _sync_options(self) -> None:
        self.ctrl.predict_options.update(
            net=NETWORKS[self.net_combo.currentText()],
            device=self.device_combo.currentText(),
            show_probabilities=self.probs_check.isChecked(),
            outside_domain=self.outside_check.isChecked(),
        )

    def _started(self, case_id: str) -> None:
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.status_label.setText(f"running on {case_id}…")

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _finished(self, prediction: object) -> None:
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.progress.setRange(0, 1)
        if prediction is None:
            self.progress.setValue(0)
            self.status_label.setText("not run" if self.ctrl.session is None else "stopped")
            return
        self.progress.setValue(1)
        t = prediction.timings.get("total")
        took = f" in {t:.1f} s" if t else ""
        s = self.ctrl.session
        mark = " — outside the training domain: not ranked" if s is not None and s.outside_domain else ""
        self.status_label.setText(
            f"{prediction.net} on {prediction.device} ({prediction.precision}){took}: uncertainty score {prediction.score:.3f}, "
            f"{len(prediction.regions)} uncertain regions{mark}"
        )
