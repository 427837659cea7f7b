"""Help panel: the review loop in five steps and the keyboard shortcuts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from napari_medseg.widgets._controller import controller_for
from napari_medseg.widgets.shortcuts import SHORTCUTS

if TYPE_CHECKING:
    import napari

STEPS = (
    "1. Cases: open a store, open the most uncertain case (it is locked for you).",
    "2. Predict: run the pair; the heat map shows where UNETR and BS-Net disagree or are unsure.",
    "3. Uncertainty: jump from region to region; fix the labels with the paint/erase tools.",
    "4. Review: accept the proposal, edit, save a version, then approve or send back.",
    "5. Next case (Alt-N). Every save is a new version with its provenance.",
    "Mouse: drag with the right button on the image to set window/level (right/left: wider/narrower, "
    "down/up: darker/brighter); the Window box in Cases has the CT presets, View the three planes.",
)


class HelpPanel(QWidget):
    """The loop's steps and the keyboard shortcuts (the canvas must have focus)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        controller_for(napari_viewer)  # binds the shortcuts on this viewer
        steps = QLabel("\n".join(STEPS))
        steps.setWordWrap(True)
        self.table = QTableWidget(len(SHORTCUTS), 2)
        self.table.setHorizontalHeaderLabels(["Key", "Action"])
        self.table.verticalHeader().setVisible(False)
        for row, s in enumerate(SHORTCUTS):
            self.table.setItem(row, 0, QTableWidgetItem(s.key))
            self.table.setItem(row, 1, QTableWidgetItem(s.description))
        self.table.resizeColumnsToContents()
        layout = QVBoxLayout(self)
        layout.addWidget(steps)
        layout.addWidget(self.table)
