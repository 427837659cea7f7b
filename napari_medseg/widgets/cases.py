"""Cases panel: the store's review queue as a table; open a case, step to the next or previous one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.io.napari_view import CT_WINDOWS, VIEWS
from napari_medseg.widgets import _layers
from napari_medseg.widgets._controller import controller_for, unwrap

if TYPE_CHECKING:
    import napari

COLUMNS = ("case", "status", "uncertainty", "versions", "editor", "lock")
#: Sort choices shown to the user -> queue order key.
SORTS = {"most uncertain first": "uncertainty", "case id": "case", "status": "status"}
STATUS_FILTERS = ("all", "new", "proposed", "in_review", "corrected", "approved")


class CasesPanel(QWidget):
    """Table of the store's cases (case, status, uncertainty, versions, last editor, lock owner)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from napari_medseg.review.session import default_user

        self.viewer = unwrap(napari_viewer)
        self.ctrl = controller_for(self.viewer)

        self.store_edit = QLineEdit()
        self.store_edit.setPlaceholderText("case store folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.user_edit = QLineEdit(default_user())
        self.user_edit.setToolTip("your name: recorded with every save and shown on your locks")
        open_store = QPushButton("Open store")
        open_store.clicked.connect(lambda: self.open_store(self.store_edit.text()))

        self.sort_combo = QComboBox()
        self.sort_combo.addItems(list(SORTS))
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(list(STATUS_FILTERS))
        self.sort_combo.currentIndexChanged.connect(self.refresh)
        self.filter_combo.currentIndexChanged.connect(self.refresh)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setMinimumHeight(120)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_row(row))

        open_btn = QPushButton("Open case")
        open_btn.clicked.connect(lambda: self.open_row(self.table.currentRow()))
        prev_btn = QPushButton("◀ Previous")
        prev_btn.clicked.connect(lambda: self.step(-1))
        next_btn = QPushButton("Next ▶")
        next_btn.clicked.connect(lambda: self.step(1))
        self.status_label = QLabel("no store open")
        self.status_label.setWordWrap(True)
        self.window_combo = QComboBox()
        self.window_combo.addItems(["auto", *CT_WINDOWS])
        self.window_combo.setToolTip(
            "CT window (level/width in HU); auto: soft tissue for CT, else 0.5-99.5 %; "
            "drag with the right mouse button on the image to set your own"
        )
        self.window_combo.currentTextChanged.connect(self.apply_window)
        self.view_combo = QComboBox()
        self.view_combo.addItems(list(VIEWS))
        self.view_combo.setToolTip(
            "reading plane, radiological convention (Alt-1/2/3): axial from the feet, coronal from the front, "
            "sagittal from the patient's left"
        )
        self.view_combo.textActivated.connect(self.ctrl.set_view)
        self.ctrl.view_changed.connect(self._show_view)
        self.ctrl.window_dragged.connect(self._window_dragged)
        add_btn = QPushButton("Add opened image to store")
        add_btn.setToolTip("import the image opened with File > Open into this store and open it as a case")
        add_btn.clicked.connect(lambda: self.ctrl.adopt_image())

        row1 = QHBoxLayout()
        row1.addWidget(self.store_edit)
        row1.addWidget(browse)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("User"))
        row2.addWidget(self.user_edit)
        row2.addWidget(open_store)
        row3 = QHBoxLayout()
        row3.addWidget(QLabel("Sort"))
        row3.addWidget(self.sort_combo)
        row3.addWidget(QLabel("Status"))
        row3.addWidget(self.filter_combo)
        row4 = QHBoxLayout()
        row4.addWidget(prev_btn)
        row4.addWidget(open_btn)
        row4.addWidget(next_btn)
        row5 = QHBoxLayout()
        row5.addWidget(QLabel("Window"))
        row5.addWidget(self.window_combo)
        row5.addWidget(QLabel("View"))
        row5.addWidget(self.view_combo)
        row6 = QHBoxLayout()
        row6.addWidget(add_btn)
        layout = QVBoxLayout(self)
        for row in (row1, row2, row3):
            layout.addLayout(row)
        layout.addWidget(self.table)
        layout.addLayout(row4)
        layout.addLayout(row5)
        layout.addLayout(row6)
        layout.addWidget(self.status_label)

        self.destroyed.connect(self.ctrl.release)  # the viewer closes: give the case lock back
        self.ctrl.session_changed.connect(self.refresh)
        self.ctrl.case_opened.connect(lambda _case: self.refresh())
        self.ctrl.case_opened.connect(lambda _case: self.apply_window(self.window_combo.currentText()))
        self.ctrl.store_changed.connect(self.refresh)
        self.refresh()

    # ------------------------------------------------------------------ actions
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Case store folder")
        if folder:
            self.store_edit.setText(folder)
            self.open_store(folder)

    def open_store(self, root: str) -> bool:
        """Open the case store in ``root`` as the user named in the panel."""
        return self.ctrl.open_store(root, user=self.user_edit.text().strip() or None)

    @property
    def order(self) -> str:
        return SORTS[self.sort_combo.currentText()]

    @property
    def statuses(self) -> list[str] | None:
        status = self.filter_combo.currentText()
        return None if status == "all" else [status]

    def case_ids(self) -> list[str]:
        """Case ids in the table's order."""
        return [self.table.item(r, 0).text() for r in range(self.table.rowCount())]

    def open_row(self, row: int) -> bool:
        if row < 0 or row >= self.table.rowCount():
            return False
        opened = self.ctrl.open_case(self.table.item(row, 0).text())
        if not opened:
            self.refresh()  # show why (e.g. who holds the lock)
        return opened

    def step(self, step: int) -> bool:
        """Open the next/previous case in the table's order (sort and filter apply)."""
        return self.ctrl.step_case(step, self.order, self.statuses)

    def apply_window(self, name: str) -> None:
        """Set the image's contrast to a CT window preset (or the modality's default for ``auto``)."""
        from napari_medseg.io.napari_view import window_limits

        layer = _layers.shown_image(self.viewer)
        if layer is None:
            return
        if name in CT_WINDOWS:
            layer.contrast_limits = window_limits(*CT_WINDOWS[name])
        elif (
            self.ctrl.session is not None
            and self.ctrl.session.image is not None
            and layer.name == _layers.IMAGE
        ):
            from napari_medseg.io.napari_view import default_contrast

            layer.contrast_limits = default_contrast(self.ctrl.session.image)

    def _window_dragged(self) -> None:
        """A window set with the mouse is no preset: the box goes blank (choosing a preset restores one)."""
        if self.window_combo.currentIndex() != -1:
            self.window_combo.blockSignals(True)  # blank is not a choice: apply_window must not run
            self.window_combo.setCurrentIndex(-1)
            self.window_combo.blockSignals(False)

    def _show_view(self, name: str) -> None:
        """Follow the plane shown (also when napari's own buttons change it); blank for another one."""
        if name:
            self.view_combo.setCurrentText(name)
        else:
            self.view_combo.setCurrentIndex(-1)

    # ------------------------------------------------------------------ view
    def refresh(self) -> None:
        s = self.ctrl.session
        if s is None:
            self.table.setRowCount(0)
            self.status_label.setText("no store open")
            return
        if not self.store_edit.hasFocus():
            self.store_edit.setText(str(s.store.root))
        if not self.user_edit.hasFocus():
            self.user_edit.setText(s.user)
        cases = s.cases(self.order, self.statuses)
        self.table.setRowCount(len(cases))
        for row, c in enumerate(cases):
            values = (
                c.case_id,
                c.status,
                "" if c.uncertainty is None else f"{c.uncertainty:.3f}",
                str(c.n_versions),
                c.last_editor or "",
                c.lock_owner or "",
            )
            for col, value in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(value))
            if c.case_id == s.case_id:
                self.table.selectRow(row)
        opened = f"open: {s.case_id}" if s.case_id else "no case open"
        self.status_label.setText(f"{len(cases)} cases in {s.store.root.name} · {opened} · user {s.user}")
