"""Tools panel: label-correction tools for annotators, each undoable with napari's Ctrl+Z.

The panel works on the active Labels layer (or the only Labels layer in the viewer). Every tool runs
one of the headless functions of :mod:`napari_medseg.editing` on the layer's data (display order,
e.g. ``(Z, Y, X)``) and writes back only the voxels that changed through ``Labels.data_setitem``
inside ``Labels.block_history()``, so the whole tool run is one entry of the layer's undo history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.editing import (
    SMOOTH_METHODS,
    EditResult,
    fill_holes,
    interpolate_slices,
    remove_islands,
    smooth_labels,
)
from napari_medseg.errors import InputError, MedsegError

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels


def apply_to_layer(layer: Labels, new_labels: np.ndarray) -> int:
    """Write the voxels where ``new_labels`` differs from ``layer.data`` as ONE undoable step.

    ``new_labels`` has the layer's shape (display order). Returns the number of voxels changed;
    ``layer.undo()`` restores the previous labels exactly.
    """
    old = np.asarray(layer.data)
    if new_labels.shape != old.shape:
        raise InputError(f"The edited labels have shape {new_labels.shape}, the layer has {old.shape}.")
    changed = np.nonzero(new_labels != old)
    n = int(changed[0].size)
    if n:
        values = new_labels[changed].astype(old.dtype, copy=False)
        with layer.block_history():
            layer.data_setitem(changed, values)
    return n


class ToolsPanel(QWidget):
    """Dock widget with the correction tools: fill between slices, remove islands, fill holes, smooth,
    brush class and contour mode.

    Parameters
    ----------
    napari_viewer:
        The viewer (injected by npe2). Tools act on its active Labels layer.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer

        self.class_spin = QSpinBox()
        self.class_spin.setRange(1, 65535)
        self.class_spin.setValue(1)
        self.class_spin.setToolTip(
            "Class id used by the brush, by 'Fill between slices' and by 'This class only'."
        )
        self.brush_button = QPushButton("Set brush to class")
        self.only_class_check = QCheckBox("This class only")
        self.only_class_check.setToolTip("Islands, holes and smoothing act on the chosen class only.")

        self.interpolate_button = QPushButton("Fill between slices")
        self.interpolate_button.setToolTip(
            "Fill the slices between the drawn slices of the class along the slider axis (shape interpolation)."
        )

        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(1, 10_000_000)
        self.min_size_spin.setValue(20)
        self.min_size_spin.setSuffix(" voxels")
        self.keep_largest_check = QCheckBox("Keep largest only")
        self.islands_button = QPushButton("Remove islands < N")

        self.slicewise_check = QCheckBox("Slice by slice")
        self.slicewise_check.setToolTip(
            "Fill 2D holes in each slice along the slider axis instead of 3D holes."
        )
        self.holes_button = QPushButton("Fill holes")

        self.method_combo = QComboBox()
        self.method_combo.addItems(list(SMOOTH_METHODS))
        self.radius_spin = QSpinBox()
        self.radius_spin.setRange(1, 5)
        self.radius_spin.setValue(1)
        self.radius_spin.setSuffix(" voxel(s)")
        self.smooth_button = QPushButton("Smooth")

        self.contour_check = QCheckBox("Contour mode")
        self.contour_check.setToolTip("Show labels as outlines so the image underneath stays visible.")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        self._build_layout()
        self.brush_button.clicked.connect(self.set_brush_to_class)
        self.interpolate_button.clicked.connect(self.fill_between_slices)
        self.islands_button.clicked.connect(self.remove_islands)
        self.holes_button.clicked.connect(self.fill_holes)
        self.smooth_button.clicked.connect(self.smooth)
        self.contour_check.toggled.connect(self.set_contour)

    def _build_layout(self) -> None:
        layout = QVBoxLayout(self)

        brush = QGroupBox("Class")
        form = QFormLayout(brush)
        row = QHBoxLayout()
        row.addWidget(self.class_spin)
        row.addWidget(self.brush_button)
        form.addRow("Class id", row)
        form.addRow(self.only_class_check)
        form.addRow(self.contour_check)
        layout.addWidget(brush)

        tools = QGroupBox("Tools")
        form = QFormLayout(tools)
        form.addRow(self.interpolate_button)
        form.addRow("Minimum size", self.min_size_spin)
        form.addRow(self.keep_largest_check)
        form.addRow(self.islands_button)
        form.addRow(self.slicewise_check)
        form.addRow(self.holes_button)
        form.addRow("Method", self.method_combo)
        form.addRow("Radius", self.radius_spin)
        form.addRow(self.smooth_button)
        layout.addWidget(tools)

        layout.addWidget(self.status_label)
        layout.addStretch(1)

    # ----------------------------------------------------------------- target layer and axis
    def labels_layer(self) -> Labels:
        """The active Labels layer, else the only Labels layer; InputError when there is none to choose."""
        from napari.layers import Labels

        active = self.viewer.layers.selection.active
        if isinstance(active, Labels):
            return active
        candidates = [layer for layer in self.viewer.layers if isinstance(layer, Labels)]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise InputError("There is no Labels layer to edit; open or create one first.")
        raise InputError("Several Labels layers are open; select the one to edit in the layer list.")

    def slider_axis(self, layer: Labels) -> int:
        """The layer axis that the viewer's first slider walks (``viewer.dims.order[0]``)."""
        axis = int(self.viewer.dims.order[0]) - (self.viewer.dims.ndim - layer.ndim)
        if not 0 <= axis < layer.ndim:
            raise InputError(f"The slider axis is not an axis of layer '{layer.name}'.")
        return axis

    def _classes(self) -> list[int] | None:
        return [self.class_spin.value()] if self.only_class_check.isChecked() else None

    # ----------------------------------------------------------------- tools
    def _run(self, title: str, tool: Callable[[np.ndarray, Labels], EditResult], detail: str = "") -> int:
        """Run ``tool(data, layer)`` on the target layer, apply it as one undo step, report; -1 on user error."""
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            layer = self.labels_layer()
            if layer.multiscale:
                raise InputError("Multiscale Labels layers cannot be edited with these tools.")
            data = np.asarray(layer.data)
            result = tool(data, layer)
            changed = apply_to_layer(layer, result.labels)
        except MedsegError as err:
            self._report(f"{title}: {err}", error=True)
            return -1
        finally:
            QApplication.restoreOverrideCursor()
        suffix = f" ({detail})" if detail else ""
        self._report(
            f"{title}: {changed} voxel{'s' if changed != 1 else ''} changed{suffix}. Ctrl+Z undoes it."
        )
        return changed

    def fill_between_slices(self) -> int:
        """Shape-interpolate the chosen class across every gap along the slider axis."""
        class_id = self.class_spin.value()

        def tool(data: np.ndarray, layer: Labels) -> EditResult:
            axis = self.slider_axis(layer)
            return interpolate_slices(data, class_id, axis=axis, spacing=tuple(layer.scale))

        return self._run("Fill between slices", tool, f"class {class_id}")

    def remove_islands(self) -> int:
        """Set components smaller than the minimum size (or all but the largest) to background."""
        min_size = self.min_size_spin.value()
        keep_largest = self.keep_largest_check.isChecked()
        return self._run(
            f"Remove islands < {min_size}",
            lambda data, _layer: remove_islands(
                data, min_size=min_size, classes=self._classes(), keep_largest=keep_largest
            ),
        )

    def fill_holes(self) -> int:
        """Fill enclosed background pockets of each class (3D, or 2D per slice along the slider axis)."""

        def tool(data: np.ndarray, layer: Labels) -> EditResult:
            axis = self.slider_axis(layer) if self.slicewise_check.isChecked() else None
            return fill_holes(data, classes=self._classes(), axis=axis)

        return self._run("Fill holes", tool)

    def smooth(self) -> int:
        """Smooth class boundaries with the chosen method and radius."""
        method = self.method_combo.currentText()
        radius = self.radius_spin.value()
        return self._run(
            "Smooth",
            lambda data, _layer: smooth_labels(data, method=method, radius=radius, classes=self._classes()),
            f"{method}, radius {radius}",
        )

    def set_brush_to_class(self) -> None:
        """Select the chosen class on the layer and switch it to the paint brush."""
        try:
            layer = self.labels_layer()
        except MedsegError as err:
            self._report(str(err), error=True)
            return
        layer.selected_label = self.class_spin.value()
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        self._report(f"Brush paints class {layer.selected_label} on '{layer.name}'.")

    def set_contour(self, on: bool) -> None:
        """Show the labels as 1-pixel contours (on) or filled (off)."""
        try:
            layer = self.labels_layer()
        except MedsegError as err:
            self._report(str(err), error=True)
            return
        layer.contour = 1 if on else 0

    def _report(self, message: str, error: bool = False) -> None:
        self.status_label.setText(message)
        self.viewer.status = message
        if error:
            from napari.utils.notifications import show_warning

            show_warning(message)
