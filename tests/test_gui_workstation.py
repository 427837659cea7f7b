"""The review app as a radiologist keeps it open all day, at 1920x1080 (Xvfb): a hippocampus case and a
real CT with an expert tumour contour (ibsi-sts-ct). Screenshots go to a temp folder, or to
docs/screenshots with MEDSEG_SCREENSHOT_DIR=docs/screenshots."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, make_tiny_pair_dir

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

SCREENSHOTS = Path(os.environ.get("MEDSEG_SCREENSHOT_DIR", tempfile.gettempdir()))
LABELS = {0: "background", 1: "anterior", 2: "posterior"}
CT = SHARED_DATA / "ibsi-sts-ct"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, hippo_cases):
    """A tiny random pair whose card records the domain of four real hippocampus images."""
    from napari_medseg.models.domain import domain_from_images

    folder = make_tiny_pair_dir(tmp_path_factory.mktemp("m") / "tiny", model_id="tiny-hippo")
    card = json.loads((folder / "pair.json").read_text())
    card["domain"] = domain_from_images([i for i, _ in hippo_cases[:4]], LABELS, "MRI")
    (folder / "pair.json").write_text(json.dumps(card))
    return folder


def _app(make_napari_viewer, session):
    from napari_medseg.widgets._controller import controller_for
    from napari_medseg.widgets.layout import dock_review_panels

    viewer = make_napari_viewer(show=True)
    docks, panels = dock_review_panels(viewer)
    ctrl = controller_for(viewer)
    ctrl.set_session(session)
    return viewer, docks, panels, ctrl


def _inside(inner, outer) -> bool:
    return outer.contains(inner.topLeft()) and outer.contains(inner.bottomRight())


def _assert_fits_the_screen(viewer, docks, qtbot):
    from qtpy.QtWidgets import QApplication, QTabBar

    qtbot.wait(300)
    screen = QApplication.primaryScreen().availableGeometry()
    assert (screen.width(), screen.height()) == (1920, 1080)
    window = viewer.window._qt_window
    assert _inside(window.frameGeometry(), screen)
    canvas = viewer.window._qt_viewer.canvas.native
    slider = viewer.window._qt_viewer.dims
    for widget in (canvas, slider, *[d for d in docks.values() if d.isVisible()]):
        top_left = widget.mapToGlobal(widget.rect().topLeft())
        bottom = top_left.y() + widget.height()
        assert widget.isVisible() and bottom <= screen.bottom() + 1, widget
    assert canvas.height() >= 600 and canvas.width() >= 900
    titles = []
    for bar in window.findChildren(QTabBar):
        for i in range(bar.count()):
            text = bar.tabText(i)
            titles.append(text)
            assert bar.fontMetrics().horizontalAdvance(text) <= bar.tabRect(i).width(), (
                f"tab {text!r} clipped"
            )
    assert {"Predict", "Uncertainty", "Review", "Tools", "Train", "Failures", "Help"} <= set(titles)


def test_hippocampus_review_fits_1080p_and_every_panel_follows_the_open_case(
    make_napari_viewer, qtbot, tmp_path, hippo_cases, tiny_model
):
    from napari_medseg.review import ReviewSession
    from napari_medseg.store import CaseStore
    from napari_medseg.widgets import _layers

    store = CaseStore.init(tmp_path / "store", name="hippo", labels=LABELS)
    ids = [store.import_case(img) for img, _ in hippo_cases[:2]]
    session = ReviewSession(store, user="alice", model_dir=tiny_model)
    for case in ids:  # the one path: proposal + map + regions stored, as the demo and predict --store do
        session.open_case(case)
        session.run_prediction(device="cpu")
    session.close_case()

    viewer, docks, panels, ctrl = _app(make_napari_viewer, session)
    first = session.queue_ids()[0]
    assert ctrl.open_case(first)
    # the stored proposal shows at once: overlay, regions, no second run
    assert session.prediction is None and _layers.UNCERTAINTY in viewer.layers
    assert panels["Uncertainty"].region_list.count() == len(session.regions) > 0
    assert "slice" in panels["Uncertainty"].region_list.item(0).text()
    assert "stored proposal version 1" in panels["Predict"].status_label.text()
    assert "inside tiny-hippo's training domain" in panels["Predict"].domain_label.text()
    labels = viewer.layers[_layers.LABELS]
    assert labels.contour > 0 and labels.features["class"].tolist() == ["background", "anterior", "posterior"]
    overlay = viewer.layers[_layers.UNCERTAINTY]
    assert overlay.blending == "translucent" and overlay.colorbar.visible
    assert viewer.layers.index(_layers.UNCERTAINTY) > viewer.layers.index(_layers.LABELS)
    assert ctrl.go_to_region(0) and _layers.REGION in viewer.layers
    assert (
        "region 1/" in viewer.canvas.overlays.text.text
        and "shown from 0.50" in viewer.canvas.overlays.text.text
    )
    # the region's slice number is the one the slider shows, in whichever plane is shown
    assert f"axial: slice {viewer.dims.current_step[0]}," in viewer.canvas.overlays.text.text
    ctrl.set_view("coronal")
    assert f"coronal: slice {viewer.dims.current_step[1]}," in viewer.canvas.overlays.text.text
    assert "coronal: slice" in panels["Uncertainty"].region_list.item(0).text()
    ctrl.set_view("axial")
    markers = viewer.layers[_layers.MARKERS]
    marks = dict(zip(markers.features["letter"], markers.data * markers.scale, strict=True))  # world mm
    assert marks["A"][1] < marks["P"][1] and marks["R"][2] < marks["L"][2]  # radiological: A up, R left
    viewer.scene.camera.zoom *= 4  # zoomed in: the letters follow the edges of what is shown
    (_, y0, x0), (_, y1, x1) = _layers.visible_box(viewer, viewer.layers[_layers.IMAGE])
    assert all(y0 <= y <= y1 and x0 <= x <= x1 for _, y, x in markers.data * markers.scale)
    assert (y1 - y0) < np.ptp(viewer.layers[_layers.IMAGE].extent.world[:, 1])
    viewer.scene.camera.zoom /= 4
    assert (
        viewer.canvas.overlays.scale_bar.visible
        and str(viewer.layers[_layers.IMAGE].units[0]) == "millimeter"
    )

    ctrl.toggle_overlay()  # Alt-U: the checkbox follows
    assert not overlay.visible and not panels["Uncertainty"].visible_check.isChecked()
    ctrl.toggle_overlay()
    assert overlay.visible and panels["Uncertainty"].visible_check.isChecked()
    _assert_fits_the_screen(viewer, docks, qtbot)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.grab().save(str(SCREENSHOTS / "review_1080p_tiny_model.png"))

    ctrl.accept_proposal()
    session.labels[session.labels == 1] = 2
    assert ctrl.show_diff() is not None and panels["Review"].diff_label.text()
    assert ctrl.save() is not None
    viewer.add_image(np.zeros((4, 4, 4)), name="failure: image")  # a Failures panel layer
    assert ctrl.step_case(1)  # every panel shows the new case, nothing of the old one
    second = session.case_id
    assert second != first and panels["Review"].diff_label.text() == ""
    assert (
        second in panels["Predict"].status_label.text() and first not in panels["Predict"].status_label.text()
    )
    assert "failure: image" not in viewer.layers
    assert (
        panels["Failures"].store_edit.text() == str(store.root) and panels["Failures"].store_edit.isReadOnly()
    )
    assert panels["Train"].store_edit.text() == str(store.root) and panels["Train"].store_edit.isReadOnly()
    assert panels["Uncertainty"].region_list.count() == len(session.regions)


def test_ct_with_expert_contour_reads_like_a_ct_and_the_hippocampus_model_refuses_it(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from qtpy.QtWidgets import QPushButton

    from napari_medseg.io.napari_view import CT_WINDOWS, window_limits
    from napari_medseg.review import ReviewSession
    from napari_medseg.store import CaseStore
    from napari_medseg.widgets import _layers, _notify

    image, label = CT / "imagesTr" / "sts_003.nii.gz", CT / "labelsTr" / "sts_003.nii.gz"
    if not image.exists():
        pytest.skip(f"real data not found at {image}")
    store = CaseStore.init(tmp_path / "ct", name="sts", labels={0: "background", 1: "tumour"}, modality="CT")
    case = store.import_case(image, label)  # the expert contour: a person's label
    session = ReviewSession(store, user="alice")  # the bundled hippocampus MRI model
    viewer, docks, panels, ctrl = _app(make_napari_viewer, session)
    assert ctrl.open_case(case)
    ct = viewer.layers[_layers.IMAGE]
    soft = window_limits(*CT_WINDOWS["soft tissue"])
    np.testing.assert_allclose(ct.contrast_limits, soft)  # not min..max (washed out)
    panels["Cases"].window_combo.setCurrentText("lung")
    np.testing.assert_allclose(ct.contrast_limits, window_limits(*CT_WINDOWS["lung"]))
    panels["Cases"].window_combo.setCurrentText("soft tissue")
    contour = viewer.layers[_layers.LABELS]
    assert contour.features["class"].tolist() == ["background", "tumour"] and (contour.data == 1).sum() > 0
    k = int(np.argmax((session.labels == 1).sum(axis=(0, 1))))
    ctrl.viewer.dims.set_current_step(0, k)

    # the tumour's volume and size, measured in the background on the CT's 0.98 x 0.98 x 3.27 mm voxels
    from napari_medseg.review.measurements import axial_diameters

    review = panels["Review"]
    shown = lambda: "\n".join(review.measurement_lines())  # noqa: E731
    qtbot.waitUntil(lambda: "tumour" in shown(), timeout=10000)
    ml = int((session.labels == 1).sum()) * float(np.prod(session.image.spacing)) / 1000
    size = axial_diameters(session.labels == 1, session.image.affine)
    world = viewer.layers[_layers.LABELS].data_to_world((size.k, 0, 0))  # display order (k, j, i)
    viewer.dims.set_point(0, world[0])
    on = viewer.dims.current_step[0]  # the axial slider's number for that slice
    assert shown() == f"tumour {ml:.3g} mL, {size.long_mm:.0f} × {size.short_mm:.0f} mm on axial slice {on}"
    ctrl.viewer.dims.set_current_step(0, k)
    contour.paint((k, 10, 10), 1, refresh=True)  # a brush dab far from the tumour, then Measure
    measure = next(b for b in review.findChildren(QPushButton) if b.text() == "Measure")
    measure.click()
    qtbot.waitUntil(lambda: f"tumour {ml:.3g} mL" not in shown(), timeout=10000)
    grown = int((session.labels == 1).sum()) * float(np.prod(session.image.spacing)) / 1000
    assert grown > ml and f"tumour {grown:.3g} mL" in shown()
    contour.undo()
    assert not session.has_unsaved_changes
    measure.click()  # after an undo: back to the expert contour's figures
    qtbot.waitUntil(lambda: f"tumour {ml:.3g} mL" in shown(), timeout=10000)
    assert f"{size.long_mm:.0f} × {size.short_mm:.0f} mm" in shown()

    # a click on the row: the slice where the tumour is widest, with the long and short axis drawn
    review.measures_list.itemClicked.emit(review.measures_list.item(0))
    assert viewer.dims.current_step[0] == on and ctrl.view == "axial"
    calipers = viewer.layers[_layers.DIAMETERS]
    assert tuple(viewer.dims.nsteps) == viewer.layers[_layers.IMAGE].data.shape  # no slider steps of its own
    for line, mm in zip(calipers.data, (size.long_mm, size.short_mm), strict=True):
        ends = line * calipers.scale  # world mm
        assert np.linalg.norm(ends[1] - ends[0]) == pytest.approx(mm, rel=1e-6)
        assert np.allclose(ends[:, 0], world[0])  # on the slice shown
    qtbot.wait(100)
    canvas = viewer.screenshot(canvas_only=True, flash=False).astype(int)
    yellow = (canvas[..., 0] > 200) & (canvas[..., 1] > 200) & (canvas[..., 2] < 80)
    cyan = (canvas[..., 0] < 60) & (canvas[..., 1] > 200) & (canvas[..., 2] > 200)
    assert yellow.sum() > 200 and cyan.sum() > 200  # both calipers drawn (beyond the A/P/R/L letters)
    docks["Review"].raise_()
    qtbot.wait(100)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.grab().save(str(SCREENSHOTS / "ct_review_1080p.png"))

    # the same CT through File > Open (our reader, chosen without asking) sits exactly on the case view
    opened = viewer.open(image, plugin=None)[0]  # as File > Open calls it
    for key in ("scale", "translate"):
        np.testing.assert_allclose(getattr(opened, key), getattr(ct, key), atol=1e-6)
    np.testing.assert_allclose(opened.rotate, ct.rotate, atol=1e-9)
    np.testing.assert_allclose(opened.contrast_limits, soft)
    viewer.layers.remove(opened)

    errors = []
    monkeypatch.setattr(_notify, "report", lambda err: errors.append(str(err)))
    assert ctrl.run_prediction() is None  # refused before any weights are loaded
    assert len(errors) == 1 and "outside hippo-pair" in errors[0] and "CT image, trained on MR" in errors[0]
    assert "outside" in panels["Predict"].domain_label.text()
    assert store.proposal(case) is None and session.labels.sum() > 0  # the expert contour stays
    _assert_fits_the_screen(viewer, docks, qtbot)
    docks["Predict"].raise_()  # the refusal, in red, in the picture
    qtbot.wait(100)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.grab().save(str(SCREENSHOTS / "ct_case_1080p.png"))
