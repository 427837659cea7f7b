"""Axial, coronal and sagittal reading planes on a real CT, checked on screen: the anatomy lies where a
radiologist expects it (superior up in coronal and sagittal, anterior up in axial and on the left in
sagittal) and the orientation letters name the patient direction at each edge, also after napari's own
transpose button. Screenshots go to a temp folder, or to MEDSEG_SCREENSHOT_DIR."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

SCREENSHOTS = Path(os.environ.get("MEDSEG_SCREENSHOT_DIR", tempfile.gettempdir()))
#: Structures of the TotalSegmentator CT example (its "total" class ids) merged into three classes.
CLASSES = {0: "background", 1: "lung", 2: "liver", 3: "vertebrae"}
TOTALSEG_IDS = {1: range(10, 15), 2: (5,), 3: range(25, 51)}
#: Which class must lie before which on screen in each plane: (class before, class after, screen axis),
#: axis 0 = rows (before = higher on screen), 1 = columns (before = further left).
EXPECTED = {
    "axial": [(2, 3, 0)],  # liver anterior to the spine: anterior up
    "coronal": [(1, 2, 0)],  # lungs above the liver: superior up
    "sagittal": [(1, 2, 0), (2, 3, 1)],  # superior up, and anterior (liver) left of the spine
}
LETTERS = {"axial": "APRL", "coronal": "SIRL", "sagittal": "SIAP"}  # top, bottom, left, right


@pytest.fixture()
def ct_store(totalseg_dir, tmp_path):
    from napari_medseg.store import CaseStore

    seg = nib.load(str(totalseg_dir / "example_seg.nii.gz"))
    ids = np.asarray(seg.dataobj)
    merged = np.zeros(ids.shape, np.uint8)
    for value, members in TOTALSEG_IDS.items():
        merged[np.isin(ids, list(members))] = value
    # stored head-down (slice k = 0 the most superior), as some scanners write them: the same anatomy on a
    # grid whose K index runs against the axial slider
    ct = nib.load(str(totalseg_dir / "example_ct_sm.nii.gz"))
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    flip[2, 3] = ids.shape[2] - 1
    image, label = tmp_path / "images" / "example_ct_sm.nii.gz", tmp_path / "example_ct_sm.nii.gz"
    image.parent.mkdir()
    nib.save(nib.Nifti1Image(np.asarray(ct.dataobj)[:, :, ::-1], ct.affine @ flip), str(image))
    nib.save(nib.Nifti1Image(merged[:, :, ::-1], seg.affine @ flip), str(label))
    store = CaseStore.init(tmp_path / "ct", name="ct", labels=CLASSES, modality="CT")
    case = store.import_case(image, label)
    return store, case


def _open_in_app(make_napari_viewer, store, case):  # noqa: ANN001, ANN202
    """The review window with all panels, the case open: (viewer, panels, controller)."""
    from napari_medseg.review import ReviewSession
    from napari_medseg.widgets._controller import controller_for
    from napari_medseg.widgets.layout import dock_review_panels

    viewer = make_napari_viewer(show=True)
    _docks, panels = dock_review_panels(viewer)
    ctrl = controller_for(viewer)
    ctrl.set_session(ReviewSession(store, user="alice"))
    assert ctrl.open_case(case)
    return viewer, panels, ctrl


def _screen_centre(canvas: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Mean (row, col) of the canvas pixels of one label colour."""
    hit = np.abs(canvas[..., :3].astype(int) - colour).max(axis=-1) <= 12
    assert hit.sum() > 30, f"colour {colour} is not on screen"
    return np.argwhere(hit).mean(axis=0)


def _best_slice(layer, axis: int, classes: set[int]) -> float:
    """World position (mm) along ``axis`` of the slice that shows the smallest of ``classes`` the most
    (the layer's data axes are the world axes, possibly flipped)."""
    data = np.asarray(layer.data)
    counts = [np.moveaxis(data == c, axis, 0).sum(axis=(1, 2)) for c in classes]
    index = (np.array(data.shape) - 1) / 2
    index[axis] = int(np.argmax(np.min(counts, axis=0)))
    return float(np.asarray(layer.data_to_world(index))[axis])


def _letters_on_screen(viewer, markers, canvas_shape) -> dict[str, tuple[float, float]]:
    """Canvas (row, col) of each orientation letter, from napari's 2D camera."""
    shown = list(viewer.dims.displayed)
    centre = np.asarray(viewer.scene.camera.center[-2:])
    flip = np.array([-1 if str(o) in ("up", "left") else 1 for o in viewer.scene.camera.orientation2d])
    half = np.array(canvas_shape[:2]) / 2
    return {
        letter: tuple(flip * (np.asarray(point)[shown] - centre) * viewer.scene.camera.zoom + half)
        for letter, point in zip(markers.features["letter"], markers.data * markers.scale, strict=True)
    }


def test_reading_planes_show_the_anatomy_the_radiological_way(make_napari_viewer, qtbot, ct_store):
    from qtpy.QtCore import Qt

    from napari_medseg.io.label_colors import label_rgb
    from napari_medseg.widgets import _layers

    viewer, panels, ctrl = _open_in_app(make_napari_viewer, *ct_store)
    combo = panels["Cases"].view_combo
    assert ctrl.view == "axial" and combo.currentText() == "axial"
    labels = viewer.layers[_layers.LABELS]
    markers = viewer.layers[_layers.MARKERS]
    image = viewer.layers[_layers.IMAGE]
    # one slider step per slice in every plane: the letters never add steps of their own
    assert tuple(viewer.dims.nsteps) == image.data.shape

    canvas_widget = viewer.window._qt_viewer.canvas.native
    keys = {"axial": Qt.Key_1, "sagittal": Qt.Key_3}
    for view in ("coronal", "sagittal", "axial"):
        if view == "coronal":  # the user picks it in the Cases panel
            combo.textActivated.emit(view)
        else:  # Alt-3, Alt-1 on the canvas
            canvas_widget.setFocus()
            qtbot.keyClick(canvas_widget, keys[view], Qt.AltModifier)
            qtbot.wait(50)
        assert ctrl.view == view and combo.currentText() == view
        assert tuple(viewer.dims.nsteps) == image.data.shape
        slider = viewer.dims.order[0]
        classes = {c for pair in EXPECTED[view] for c in pair[:2]}
        viewer.dims.set_point(slider, _best_slice(labels, slider, classes))
        qtbot.wait(50)

        # the orientation letters: this plane's, each at its edge of the canvas
        canvas_shape = viewer.screenshot(canvas_only=True, flash=False).shape
        where = _letters_on_screen(viewer, markers, canvas_shape)
        top, bottom, left, right = LETTERS[view]
        assert set(where) == set(LETTERS[view])
        assert where[top][0] < where[bottom][0] and where[left][1] < where[right][1]
        assert all(0 <= r < canvas_shape[0] and 0 <= c < canvas_shape[1] for r, c in where.values())
        shot = viewer.screenshot(canvas_only=True, flash=False)
        for letter, (r, c) in where.items():  # drawn on this slice: yellow text at each position
            patch = shot[max(int(r) - 12, 0) : int(r) + 12, max(int(c) - 12, 0) : int(c) + 12].astype(int)
            yellow = (patch[..., 0] > 200) & (patch[..., 1] > 200) & (patch[..., 2] < 80)
            assert yellow.sum() > 10, f"letter {letter} is not drawn in the {view} view"

        # the anatomy, from the pixels: only the labels, filled
        others = [layer for layer in viewer.layers if layer is not labels and layer.visible]
        for layer in others:
            layer.visible = False
        labels.contour, labels.opacity = 0, 1.0
        canvas = viewer.screenshot(canvas_only=True, flash=False)
        labels.contour, labels.opacity = 2, 0.9
        for layer in others:
            layer.visible = True
        for before, after, screen_axis in EXPECTED[view]:
            a = _screen_centre(canvas, np.array(label_rgb(before)))
            b = _screen_centre(canvas, np.array(label_rgb(after)))
            assert a[screen_axis] < b[screen_axis], (view, CLASSES[before], CLASSES[after], a, b)
        if view == "coronal":
            qtbot.wait(100)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            viewer.window._qt_window.grab().save(str(SCREENSHOTS / "coronal_ct_1080p.png"))

    # the Review panel's sizes name the slice as the axial slider numbers it (here K runs the other way)
    from napari_medseg.review.measurements import axial_diameters

    session = ctrl.session
    lines = panels["Review"].measurement_lines
    qtbot.waitUntil(lambda: "vertebrae" in "".join(lines()), timeout=10000)
    spine = axial_diameters(session.labels == 3, session.image.affine)
    on = session.labels.shape[2] - 1 - spine.k
    assert lines()[-1].endswith(f"mm on axial slice {on}")

    # napari's own transpose button: no named plane any more, the letters still tell the truth
    ctrl.set_view("coronal")
    viewer.dims.transpose()  # displayed (S, L) -> (L, S); the camera keeps "up", "right"
    assert ctrl.view is None and combo.currentIndex() == -1
    where = _letters_on_screen(viewer, markers, canvas_shape)
    assert set(where) == set("LRIS")
    assert where["L"][0] < where["R"][0] and where["I"][1] < where["S"][1]
    ctrl.set_view("axial")
    assert viewer.dims.order == (0, 1, 2) and combo.currentText() == "axial"
    # Alt-2 with the mouse on a finding in the axial view: the coronal plane through that point
    ctrl.set_view("axial")
    liver_world = np.asarray(
        viewer.layers[_layers.LABELS].data_to_world(np.argwhere(np.asarray(labels.data) == 2).mean(axis=0))
    )
    viewer.cursor.position = tuple(liver_world)
    canvas_widget.setFocus()
    qtbot.keyClick(canvas_widget, Qt.Key_2, Qt.AltModifier)
    qtbot.wait(50)
    assert ctrl.view == "coronal"
    step = viewer.dims.range[1].step
    assert abs(viewer.dims.point[1] - liver_world[1]) <= step / 2  # the P slider is at the pointed liver
    assert abs(viewer.dims.point[0] - liver_world[0]) <= viewer.dims.range[0].step / 2

    # the current-region ring (what "Next region" draws) shows in every plane, without slider steps of its own
    liver = np.argwhere(np.asarray(viewer.layers[_layers.LABELS].data) == 2).mean(axis=0)
    world = tuple(float(v) for v in viewer.layers[_layers.LABELS].data_to_world(liver))
    _layers.centre_on(viewer, world)
    _layers.show_region(viewer, world, radius_mm=15.0)
    for view in ("axial", "coronal", "sagittal"):
        ctrl.set_view(view)
        assert tuple(viewer.dims.nsteps) == image.data.shape
        shot = viewer.screenshot(canvas_only=True, flash=False).astype(int)
        cyan = (shot[..., 0] < 60) & (shot[..., 1] > 200) & (shot[..., 2] > 200)
        assert cyan.sum() > 50, f"the region ring is not drawn in the {view} view"


def _drag(qtbot, widget, button, start: tuple[int, int], end: tuple[int, int], steps: int = 10) -> None:
    """A real mouse drag on a Qt widget: press, moves with the button held, release."""
    from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    QTest.mousePress(widget, button, Qt.NoModifier, QPoint(*start))
    for t in np.linspace(0, 1, steps + 1)[1:]:
        x, y = (start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]))
        QApplication.sendEvent(
            widget, QMouseEvent(QEvent.MouseMove, QPointF(x, y), Qt.NoButton, button, Qt.NoModifier)
        )
        qtbot.wait(5)
    QTest.mouseRelease(widget, button, Qt.NoModifier, QPoint(*end))
    qtbot.wait(20)


def test_window_level_with_the_right_mouse_button(make_napari_viewer, qtbot, ct_store):
    """A radiologist drags with the right button to set the window: wider to the right, darker downwards,
    in HU; a left drag still pans and leaves the window alone; the Cases panel stops naming a preset."""
    from qtpy.QtCore import Qt

    from napari_medseg.io.napari_view import CT_WINDOWS, dragged_window, level_width, window_limits
    from napari_medseg.widgets import _layers

    viewer, panels, ctrl = _open_in_app(make_napari_viewer, *ct_store)
    combo = panels["Cases"].window_combo
    combo.setCurrentText("soft tissue")
    image = viewer.layers[_layers.IMAGE]
    start = tuple(image.contrast_limits)
    assert start == window_limits(*CT_WINDOWS["soft tissue"])
    canvas = viewer.window._qt_viewer.canvas.native
    middle = (canvas.width() // 2, canvas.height() // 2)

    _drag(qtbot, canvas, Qt.LeftButton, middle, (middle[0] + 80, middle[1] + 40))  # pan
    assert tuple(image.contrast_limits) == start and combo.currentText() == "soft tissue"

    _drag(qtbot, canvas, Qt.RightButton, middle, (middle[0] + 150, middle[1] + 60))
    level, width = level_width(image.contrast_limits)
    expected = level_width(dragged_window(start, 150, 60))
    assert level == pytest.approx(expected[0], abs=2.0) and width == pytest.approx(expected[1], rel=0.01)
    assert width > 400 and level > 40  # wider and darker than soft tissue, in HU
    assert combo.currentIndex() == -1 and "window level" in viewer.status
    viewer.dims.ndisplay = 3  # in 3D the right button is the camera's: the window stays
    before = tuple(image.contrast_limits)
    _drag(qtbot, canvas, Qt.RightButton, middle, (middle[0] + 150, middle[1] + 60))
    assert tuple(image.contrast_limits) == before
    viewer.dims.ndisplay = 2
    combo.setCurrentText("bone")  # a preset is one click away again
    assert tuple(image.contrast_limits) == window_limits(*CT_WINDOWS["bone"])


def test_a_large_scan_gets_its_volumes_by_themselves_and_its_diameters_on_measure(
    make_napari_viewer, qtbot, ct_store, monkeypatch
):
    """Above AUTO_DIAMETER_VOXELS (a whole CT) the automatic measurement is volumes only; Measure adds the
    diameters; one measurement runs at a time (a new one cancels the one in flight)."""
    from qtpy.QtWidgets import QPushButton

    from napari_medseg.widgets import _controller, _notify

    monkeypatch.setattr(_controller, "AUTO_DIAMETER_VOXELS", 0)  # this CT counts as large
    said = []
    monkeypatch.setattr(_notify, "info", lambda text, *a, **k: said.append(text))
    _viewer, panels, ctrl = _open_in_app(make_napari_viewer, *ct_store)
    review = panels["Review"]
    qtbot.waitUntil(lambda: "vertebrae" in "".join(review.measurement_lines()), timeout=10000)
    assert all(" mL" in line and "mm on" not in line for line in review.measurement_lines())
    review.measures_list.itemClicked.emit(review.measures_list.item(0))
    assert any("press Measure" in text for text in said)
    first = ctrl.measure_structures(diameters=True)
    token = ctrl._measure_cancel
    measure = next(b for b in review.findChildren(QPushButton) if b.text() == "Measure")
    measure.click()  # a second request while the first may still run: the first is cancelled
    assert token.cancelled and ctrl._measure_cancel is not token
    qtbot.waitUntil(
        lambda: all("mm on axial slice" in line for line in review.measurement_lines()), timeout=20000
    )
    assert first is not None
