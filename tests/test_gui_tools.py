"""Tools panel (napari_medseg.widgets.tools) in a real napari viewer: every tool is undoable."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_medseg.widgets.tools import ToolsPanel


@pytest.fixture
def label_crop(hippo_cases) -> np.ndarray:
    """Real hippocampus labels (uint8, display order as loaded)."""
    return np.asanyarray(nib.load(str(hippo_cases[0][1])).dataobj).astype(np.uint8)


@pytest.fixture
def viewer_panel(make_napari_viewer):
    viewer = make_napari_viewer()
    panel = ToolsPanel(viewer)
    viewer.window.add_dock_widget(panel, name="Tools")
    return viewer, panel


def _add(viewer, data: np.ndarray):
    layer = viewer.add_labels(data.copy(), name="proposal")
    viewer.layers.selection.active = layer
    return layer


def _undo_restores(layer, original: np.ndarray) -> None:
    layer.undo()
    assert np.array_equal(layer.data, original)


def test_fill_between_slices_uses_the_slider_axis_and_undoes(viewer_panel, label_crop):
    viewer, panel = viewer_panel
    erased = label_crop.copy()
    block = erased[12:15]
    block[block == 1] = 0
    layer = _add(viewer, erased)
    assert viewer.dims.order[0] == 0

    panel.class_spin.setValue(1)
    panel.interpolate_button.click()

    filled = np.asarray(layer.data)
    restored = filled[12:15] == 1
    truth = label_crop[12:15] == 1
    assert 2 * np.count_nonzero(restored & truth) / (restored.sum() + truth.sum()) > 0.8
    assert np.array_equal(filled[erased == 2], erased[erased == 2])
    n = np.count_nonzero(filled != erased)
    assert f"{n} voxels changed" in panel.status_label.text()
    assert viewer.status == panel.status_label.text()
    _undo_restores(layer, erased)
    layer.redo()
    assert np.array_equal(layer.data, filled)


def test_fill_between_slices_follows_a_transposed_slider(viewer_panel):
    viewer, panel = viewer_panel
    data = np.zeros((10, 12, 14), dtype=np.uint8)
    data[2:8, 2:10, 3] = 1
    data[2:8, 2:10, 9] = 1
    layer = _add(viewer, data)
    viewer.dims.order = (2, 0, 1)  # the slider now walks axis 2
    panel.interpolate_button.click()
    assert np.all(layer.data[2:8, 2:10, 3:10] == 1)
    _undo_restores(layer, data)


def test_remove_islands_button_removes_planted_islands_and_undoes(viewer_panel, label_crop):
    viewer, panel = viewer_panel
    planted = label_crop.copy()
    far = np.argwhere(ndimage.distance_transform_edt(planted == 0) > 4)
    i, j, k = far[len(far) // 2]
    planted[i, j, k] = 2
    layer = _add(viewer, planted)

    panel.min_size_spin.setValue(5)
    panel.islands_button.click()

    assert layer.data[i, j, k] == 0
    assert np.count_nonzero(layer.data == 1) > 0.95 * np.count_nonzero(planted == 1)
    assert "changed" in panel.status_label.text()
    _undo_restores(layer, planted)


def test_fill_holes_button_fills_planted_hole_and_undoes(viewer_panel, label_crop):
    viewer, panel = viewer_panel
    inner = np.argwhere(ndimage.binary_erosion(label_crop == 1, structure=np.ones((3, 3, 3), bool)))
    i, j, k = inner[0]
    holed = label_crop.copy()
    holed[i, j, k] = 0
    layer = _add(viewer, holed)

    panel.holes_button.click()

    assert layer.data[i, j, k] == 1
    _undo_restores(layer, holed)


def test_smooth_button_keeps_ids_and_undoes_in_one_step(viewer_panel, label_crop):
    viewer, panel = viewer_panel
    layer = _add(viewer, label_crop)

    panel.method_combo.setCurrentText("majority")
    panel.smooth_button.click()

    smoothed = np.asarray(layer.data).copy()
    assert np.count_nonzero(smoothed != label_crop) > 0
    assert set(np.unique(smoothed)) == {0, 1, 2}
    _undo_restores(layer, label_crop)


def test_brush_and_contour_controls_set_the_layer(viewer_panel, label_crop):
    viewer, panel = viewer_panel
    layer = _add(viewer, label_crop)
    panel.class_spin.setValue(2)
    panel.brush_button.click()
    assert layer.selected_label == 2
    assert layer.mode == "paint"
    panel.contour_check.setChecked(True)
    assert layer.contour == 1
    panel.contour_check.setChecked(False)
    assert layer.contour == 0


def test_tools_report_when_there_is_no_labels_layer(viewer_panel, label_crop):
    viewer, panel = viewer_panel
    viewer.add_image(label_crop.astype(np.float32), name="image")
    assert panel.holes_button.isEnabled()
    assert panel.fill_holes() == -1
    assert "no Labels layer" in panel.status_label.text()


def test_tools_work_through_the_public_viewer_proxy_plugins_receive(make_napari_viewer_proxy, label_crop):
    viewer = make_napari_viewer_proxy()
    panel = ToolsPanel(viewer)
    viewer.window.add_dock_widget(panel, name="Tools")
    layer = viewer.add_labels(label_crop.copy(), name="proposal")
    assert panel.smooth() > 0
    assert not np.array_equal(layer.data, label_crop)
    layer.undo()
    assert np.array_equal(layer.data, label_crop)
