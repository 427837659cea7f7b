"""Review panel: accept the proposal, save a version, approve or send back, see what changed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.widgets import _layers
from napari_medseg.widgets._controller import controller_for, unwrap

if TYPE_CHECKING:
    import napari


class ReviewPanel(QWidget):
    """The end of the loop for one case: accept proposal → edit → save → approve / needs work."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.ctrl = controller_for(self.viewer)

        self.case_label = QLabel("no case open")
        accept_btn = QPushButton("Accept proposal as working label")
        accept_btn.clicked.connect(self.ctrl.accept_proposal)
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note for this version (optional)")
        save_btn = QPushButton("Save version")
        save_btn.clicked.connect(self.save)
        self.comment_edit = QLineEdit()
        self.comment_edit.setPlaceholderText("review comment")
        approve_btn = QPushButton("Approve")
        approve_btn.clicked.connect(self.approve)
        needs_work_btn = QPushButton("Needs work")
        needs_work_btn.clicked.connect(self.needs_work)
        diff_btn = QPushButton("Show changes vs proposal")
        diff_btn.clicked.connect(self.ctrl.show_diff)
        self.measures_list = QListWidget()
        self.measures_list.setMaximumHeight(72)
        self.measures_list.setToolTip(
            "each structure's volume (working labels, and the model's proposal) and its longest axial diameter "
            "with the perpendicular short axis (between voxel centres); click one to go to its slice and "
            "see the two axes drawn"
        )
        self.measures_list.itemClicked.connect(self._measurement_chosen)
        self._measurements: list = []
        measure_btn = QPushButton("Measure")
        measure_btn.setToolTip(
            "measure again after painting, with the diameters (done by itself on open, accept, save and run; "
            "the diameters then only for scans up to 16 M voxels)"
        )
        measure_btn.clicked.connect(lambda: self.ctrl.measure_structures(diameters=True))
        self.diff_label = QLabel("")
        self.diff_label.setWordWrap(True)
        self.history = QTextEdit()
        self.history.setReadOnly(True)

        save_row = QHBoxLayout()
        save_row.addWidget(self.note_edit)
        save_row.addWidget(save_btn)
        verdict_row = QHBoxLayout()
        verdict_row.addWidget(approve_btn)
        verdict_row.addWidget(needs_work_btn)
        layout = QVBoxLayout(self)
        layout.addWidget(self.case_label)
        measures_row = QHBoxLayout()
        measures_row.addWidget(self.measures_list, 1)
        measures_row.addWidget(measure_btn)
        layout.addLayout(measures_row)
        layout.addWidget(accept_btn)
        layout.addLayout(save_row)
        layout.addWidget(self.comment_edit)
        layout.addLayout(verdict_row)
        layout.addWidget(diff_btn)
        layout.addWidget(self.diff_label)
        layout.addWidget(QLabel("Versions"))
        layout.addWidget(self.history)

        self.ctrl.case_opened.connect(lambda _c: self.refresh(clear_diff=True))
        self.ctrl.store_changed.connect(self.refresh)
        self.ctrl.session_changed.connect(self.refresh)
        self.ctrl.diff_changed.connect(lambda d: self.diff_label.setText(d.summary()))
        self.ctrl.measurements_changed.connect(self._show_measurements)
        self.refresh()

    def save(self):  # noqa: ANN201 - VersionInfo or None
        info = self.ctrl.save(self.note_edit.text().strip())
        if info is not None:
            self.note_edit.clear()
        return info

    def approve(self) -> bool:
        ok = self.ctrl.approve(self.comment_edit.text().strip())
        if ok:
            self.comment_edit.clear()
        return ok

    def needs_work(self) -> bool:
        ok = self.ctrl.needs_work(self.comment_edit.text().strip())
        if ok:
            self.comment_edit.clear()
        return ok

    def _show_measurements(self, case_id: str, rows: list) -> None:
        def axial_slice(row) -> int | None:  # noqa: ANN001 - StructureMeasurement
            if row.diameters is None:
                return None
            world = _layers.voxel_to_world(self.viewer, (0.0, 0.0, float(row.diameters.k)))
            return _layers.slice_number(self.viewer, world, axis=0)  # as the axial slider numbers it

        self._measurements = list(rows)
        self.measures_list.clear()
        self.measures_list.addItems([r.text(axial_slice(r)) for r in rows] or ["no labelled structure"])

    def _clear_measurements(self) -> None:
        self._measurements = []
        self.measures_list.clear()

    def measurement_lines(self) -> list[str]:
        """The measurement rows as shown (one per structure)."""
        return [self.measures_list.item(r).text() for r in range(self.measures_list.count())]

    def _measurement_chosen(self, item) -> None:  # noqa: ANN001 - QListWidgetItem
        row = self.measures_list.row(item)
        if 0 <= row < len(self._measurements):
            self.ctrl.show_measurement(self._measurements[row])

    def refresh(self, clear_diff: bool = False) -> None:
        s = self.ctrl.session
        if clear_diff:  # a new case: the previous case's diff and measurements no longer apply
            self.diff_label.clear()
            self._clear_measurements()
        if s is None or s.case_id is None:
            self.case_label.setText("no case open")
            self.history.clear()
            self.diff_label.clear()
            self._clear_measurements()
            return
        self.case_label.setText(f"{s.case_id} · {s.status()} · editing from version {s.edited_from or '-'}")
        lines = []
        for v in reversed(s.versions()):
            kind = "proposal" if v.is_proposal else "labels"
            extra = f", Dice vs proposal {v.dice_vs_proposal:.3f}" if v.dice_vs_proposal is not None else ""
            note = f" - {v.note}" if v.note else ""
            lines.append(f"v{v.number} {kind} by {v.author} ({v.source}) {v.created_utc}{extra}{note}")
        self.history.setPlainText("\n".join(lines))
