"""Uncertainty panel: the ranked uncertain regions, region-to-region navigation and the overlay's look."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QListWidget,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.widgets import _layers
from napari_medseg.widgets._controller import controller_for, unwrap

if TYPE_CHECKING:
    import napari


def _slider(value: int) -> QSlider:
    s = QSlider(Qt.Horizontal)
    s.setRange(0, 100)
    s.setValue(value)
    return s


class UncertaintyPanel(QWidget):
    """Regions where the two networks disagree, most important first; Next/Previous jumps to them.

    The overlay is the ``uncertainty`` Image layer: its opacity and threshold (lower contrast limit,
    0..1) are set here; "boundary band only" hides disagreement away from the predicted boundaries.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.ctrl = controller_for(self.viewer)

        self.region_list = QListWidget()
        self.region_list.currentRowChanged.connect(self._row_chosen)
        prev_btn = QPushButton("◀ Previous region")
        prev_btn.clicked.connect(lambda: self.ctrl.step_region(-1))
        next_btn = QPushButton("Next region ▶")
        next_btn.clicked.connect(lambda: self.ctrl.step_region(1))
        self.band_check = QCheckBox("boundary band only")
        self.band_check.setChecked(self.ctrl.band_only)
        self.band_check.toggled.connect(self.ctrl.set_band_only)
        self.visible_check = QCheckBox("show overlay")
        self.visible_check.setChecked(True)
        self.visible_check.toggled.connect(self.ctrl.set_overlay_visible)
        self.opacity_slider = _slider(int(_layers.OVERLAY_OPACITY * 100))
        self.opacity_slider.valueChanged.connect(self._apply_look)
        self.threshold_slider = _slider(int(_layers.OVERLAY_THRESHOLD * 100))
        self.threshold_slider.valueChanged.connect(self._apply_look)

        nav = QHBoxLayout()
        nav.addWidget(prev_btn)
        nav.addWidget(next_btn)
        form = QFormLayout()
        form.addRow("Opacity", self.opacity_slider)
        form.addRow("Show from", self.threshold_slider)
        layout = QVBoxLayout(self)
        layout.addWidget(self.region_list)
        layout.addLayout(nav)
        layout.addWidget(self.visible_check)
        layout.addWidget(self.band_check)
        layout.addLayout(form)

        self._updating = False
        self.ctrl.prediction_finished.connect(lambda _p: self.refresh())
        self.ctrl.case_opened.connect(lambda _c: self.refresh())
        self.ctrl.region_changed.connect(self._select_row)
        self.ctrl.view_changed.connect(lambda _view: self.refresh())  # slice numbers of the new plane
        self.ctrl.overlay_visibility.connect(self._show_visibility)
        self.viewer.layers.events.inserted.connect(self._layer_added)
        self.refresh()

    def refresh(self) -> None:
        self._updating = True
        self.region_list.clear()
        for r in self.ctrl.regions():
            self.region_list.addItem(
                f"#{r.id}  {self.ctrl.region_slice(r)}  {r.volume_mm3:.0f} mm³  "
                f"mean uncertainty {r.mean_uncertainty:.2f}"
            )
        self._updating = False
        self._apply_look()

    def _row_chosen(self, row: int) -> None:
        if not self._updating and row >= 0 and row != self.ctrl.region_index:
            self.ctrl.go_to_region(row)

    def _select_row(self, index: int) -> None:
        self._updating = True
        self.region_list.setCurrentRow(index)
        self._updating = False

    def _layer_added(self, event: object) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and layer.name == _layers.UNCERTAINTY:
            self._apply_look()

    def _show_visibility(self, visible: bool) -> None:
        if self.visible_check.isChecked() != visible:
            self.visible_check.blockSignals(True)
            self.visible_check.setChecked(visible)
            self.visible_check.blockSignals(False)

    def _apply_look(self) -> None:
        layer = _layers.get(self.viewer, _layers.UNCERTAINTY)
        if layer is None:
            return
        layer.opacity = self.opacity_slider.value() / 100
        low = min(self.threshold_slider.value() / 100, 0.99)
        layer.contrast_limits = (low, 1.0)
        layer.visible = self.visible_check.isChecked()
        self.ctrl.describe_overlay()
