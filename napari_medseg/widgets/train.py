"""Train panel: retrain the model on the store's corrected labels in a separate process.

Start runs ``python -m napari_medseg.commands.retrain`` (the ``napari-medseg retrain`` command) in a
:class:`QProcess`, so training never blocks or crashes the viewer. Its ``PROGRESS {json}`` lines
drive the progress bar and a live loss / Dice plot; the final ``RESULT {json}`` line says whether the
new model was promoted and why. Cancel sends SIGTERM (the command stops at the next batch and leaves
the model registry untouched) and kills the process if it has not ended after a grace period.

When a model is promoted, :attr:`TrainPanel.model_changed` is emitted with the new model folder and
the open review session (if any) loads it, so the next prediction uses it without a restart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QProcess, QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.widgets._controller import controller_for, unwrap
from napari_medseg.widgets._controls import run_controls

if TYPE_CHECKING:
    import napari

NETS = {"Pair (UNETR + BS-Net, Co-Correcting)": "pair", "UNETR only": "unetr", "BS-Net only": "bsnet"}
DEVICES = ("auto", "cpu", "cuda")
#: Seconds a cancelled process gets to stop cleanly before it is killed.
CANCEL_GRACE_S = 30


def parse_line(line: str) -> tuple[str, dict[str, Any]] | None:
    """``"PROGRESS {...}"`` / ``"RESULT {...}"`` -> ``(kind, payload)``; anything else -> ``None``."""
    kind, _, rest = line.strip().partition(" ")
    if kind not in ("PROGRESS", "RESULT"):
        return None
    try:
        payload = json.loads(rest)
    except json.JSONDecodeError:
        return None
    return (kind, payload) if isinstance(payload, dict) else None


class TrainPanel(QWidget):
    """Store, networks, epochs or time budget, device; Start / Cancel; live plot; promotion decision.

    Signals:
        model_changed(str): folder of the newly promoted model.
        finished(dict): the ``RESULT`` payload (``status`` done / cancelled / error).
    """

    model_changed = Signal(str)
    finished = Signal(dict)

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.process: QProcess | None = None
        self.history: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        self._buffer = ""
        self._stderr = ""

        self.store_edit = QLineEdit()
        self.store_edit.setToolTip("case store folder (with .medseg/)")
        browse = self._browse_btn = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.nets_combo = QComboBox()
        self.nets_combo.addItems(list(NETS))
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(5)
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(0.0, 24 * 60.0)
        self.budget_spin.setDecimals(1)
        self.budget_spin.setSuffix(" min")
        self.budget_spin.setSpecialValueText("no limit")
        self.budget_spin.setToolTip("stop training after about this many minutes (0 = run all epochs)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.delta_spin = QDoubleSpinBox()
        self.delta_spin.setRange(-1.0, 1.0)
        self.delta_spin.setDecimals(3)
        self.delta_spin.setSingleStep(0.005)
        self.delta_spin.setToolTip(
            "the new model's mean Dice must beat the current one by at least this much"
        )
        self.start_btn = QPushButton("Start")
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn, self.progress, self.status_label = run_controls(self.cancel, "")
        self.decision_label = QLabel("")
        self.decision_label.setWordWrap(True)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.6), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        self.ax_loss = self.figure.add_subplot(1, 1, 1)
        self.ax_dice = self.ax_loss.twinx()
        self._draw_plot()

        store_row = QHBoxLayout()
        store_row.addWidget(self.store_edit)
        store_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Store", store_row)
        form.addRow("Networks", self.nets_combo)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Time budget", self.budget_spin)
        form.addRow("Device", self.device_combo)
        form.addRow("Min. Dice gain", self.delta_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.cancel_btn)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.canvas)
        layout.addWidget(self.decision_label)
        layout.addStretch(1)

        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)
        self.model_changed.connect(self._reload_session_model)
        self.ctrl = controller_for(self.viewer)
        self.ctrl.session_changed.connect(self._follow_session)
        self._follow_session()

    # ------------------------------------------------------------------ setup
    def _follow_session(self) -> None:
        """The panel retrains the open session's store (a folder chosen here opens as the session)."""
        root = self.ctrl.store_root
        self.store_edit.setReadOnly(root is not None)
        self._browse_btn.setEnabled(root is None)
        if root is not None:
            self.store_edit.setText(str(root))

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Case store folder")
        if folder:
            self.store_edit.setText(folder)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.NotRunning

    def command(self) -> list[str]:
        """Arguments of the retrain process (after the Python interpreter)."""
        args = [
            "-m",
            "napari_medseg.commands.retrain",
            "--events",
            "--store",
            self.store_edit.text().strip(),
            "--epochs",
            str(self.epochs_spin.value()),
            "--nets",
            NETS[self.nets_combo.currentText()],
            "--device",
            self.device_combo.currentText(),
            "--min-delta",
            f"{self.delta_spin.value():g}",
        ]
        if self.budget_spin.value() > 0:
            args += ["--time-budget", f"{self.budget_spin.value():g}"]
        return args

    # ------------------------------------------------------------------ run
    def start(self) -> QProcess | None:
        """Launch the retrain process; returns it (``None`` if the store is missing or a run is on)."""
        if self.running:
            return None
        if self.ctrl.store_root is None:
            typed = self.store_edit.text().strip()
            if not typed or not (Path(typed) / ".medseg").is_dir():
                self.status_label.setText("open a case store first (Cases panel)")
                return None
            if not self.ctrl.open_store(typed):
                return None
        self.store_edit.setText(str(self.ctrl.store_root))
        self.history, self.result, self._buffer, self._stderr = [], None, "", ""
        self.decision_label.setText("")
        self._draw_plot()
        proc = QProcess(self)
        proc.setProcessChannelMode(QProcess.SeparateChannels)
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._on_finished)
        self.process = proc
        self.progress.setRange(0, 0)  # busy until the first epoch ends
        self.status_label.setText("loading the cases and the current model…")
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        proc.start(sys.executable, self.command())
        return proc

    def cancel(self) -> None:
        """Ask the process to stop (SIGTERM: clean stop, registry untouched); kill it after a grace period."""
        if not self.running:
            return
        self.status_label.setText("stopping…")
        self.cancel_btn.setEnabled(False)
        self.process.terminate()
        self._kill_timer.start(CANCEL_GRACE_S * 1000)

    def _kill(self) -> None:
        if self.running:
            self.process.kill()

    def _read_stdout(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            parsed = parse_line(line)
            if parsed is not None:
                self.handle(*parsed)

    def _read_stderr(self) -> None:
        self._stderr = (self._stderr + bytes(self.process.readAllStandardError()).decode("utf-8", "replace"))[
            -4000:
        ]

    def handle(self, kind: str, event: dict[str, Any]) -> None:
        """Show one parsed line of the process."""
        if kind == "RESULT":
            self.result = event
            return
        stage = event.get("stage")
        if stage == "data":
            self.status_label.setText(
                f"training on {event.get('train')} cases ({event.get('train_approved')} approved), "
                f"validating on {event.get('val')}, starting from {event.get('start_model')}"
            )
        elif stage == "train":
            self.history.append(event)
            self.progress.setRange(0, int(event.get("epochs") or 1))
            self.progress.setValue(int(event.get("epoch") or 0))
            dice = event.get("dice")
            self.status_label.setText(
                f"epoch {event.get('epoch')}/{event.get('epochs')}: loss {event.get('loss', float('nan')):.3f}"
                + (f", validation Dice {dice:.3f}" if dice is not None else "")
            )
            self._draw_plot()
        elif stage == "evaluate":
            self.status_label.setText(
                f"scoring the {event.get('model')} model on validation case {event.get('done')}/{event.get('total')}"
            )
        elif stage == "register":
            self.status_label.setText(f"registering {event.get('model')}")

    def _on_finished(self, exit_code: int, _status: Any = None) -> None:
        self._kill_timer.stop()
        if self.process is not None:
            self._buffer += bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
            for line in self._buffer.split("\n"):
                parsed = parse_line(line)
                if parsed is not None:
                    self.handle(*parsed)
            self._buffer = ""
        result = self.result or {
            "status": "error",
            "promoted": False,
            "message": (self._stderr.strip().splitlines() or [f"the process ended with code {exit_code}"])[
                -1
            ],
        }
        self.result = result
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.progress.setRange(0, max(self.progress.maximum(), 1))
        status = result.get("status")
        if status == "done":
            verdict = "promoted: it is now the current model" if result.get("promoted") else "not promoted"
            self.status_label.setText(
                f"finished {result.get('epochs_run')} epochs in {result.get('seconds')} s"
            )
            self.decision_label.setText(
                f"New model {result.get('model_id')} {verdict}. {result.get('reason', '')}"
            )
        elif status == "cancelled":
            self.status_label.setText("cancelled: nothing was registered, the current model is unchanged")
            self.decision_label.setText("")
        else:
            self.status_label.setText(f"failed: {result.get('message', '')}")
        self.finished.emit(result)
        if status == "done" and result.get("promoted") and result.get("current_model_dir"):
            self.model_changed.emit(str(result["current_model_dir"]))

    # ------------------------------------------------------------------ model reload
    def _reload_session_model(self, model_dir: str) -> None:
        """Make the open review session use the promoted model (``ReviewSession.load_model``)."""
        session = self.ctrl.session
        if session is not None:
            session.load_model(model_dir)

    # ------------------------------------------------------------------ plot
    def _draw_plot(self) -> None:
        epochs = [e["epoch"] for e in self.history]
        self.ax_loss.clear()
        self.ax_dice.clear()
        self.ax_loss.plot(epochs, [e.get("loss") for e in self.history], "o-", color="#cc3311", label="loss")
        dice = [(e["epoch"], e["dice"]) for e in self.history if e.get("dice") is not None]
        if dice:
            self.ax_dice.plot(*zip(*dice, strict=True), "s-", color="#0077bb", label="val. Dice")
        self.ax_loss.set_xlabel("epoch")
        self.ax_loss.set_ylabel("training loss", color="#cc3311")
        self.ax_dice.set_ylabel("validation Dice", color="#0077bb")
        self.ax_dice.set_ylim(0.0, 1.0)
        self.ax_dice.yaxis.set_label_position("right")
        if epochs:
            self.ax_loss.set_xlim(0.5, max(epochs) + 0.5)
        self.figure.tight_layout()
        self.canvas.draw_idle()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        self.cancel()
        super().closeEvent(event)
