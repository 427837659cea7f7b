"""Failures panel: worst-first table from a real evaluation, error-map colours on a planted error."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import store_with_tiny_model

#: Where the panel picture goes: a temp folder, or docs/screenshots when refreshing the docs
#: (MEDSEG_SCREENSHOT_DIR=docs/screenshots), so a test run never modifies the checkout.
SCREENSHOTS = Path(os.environ.get("MEDSEG_SCREENSHOT_DIR", tempfile.gettempdir()))
MAGENTA, CYAN = np.array([255, 0, 255]), np.array([0, 255, 255])


@pytest.fixture
def store_root(tmp_path, hippo_cases):
    return store_with_tiny_model(tmp_path, hippo_cases[:4], n_approved=3, model_id="tiny-current")


@pytest.fixture
def panel(make_napari_viewer, store_root):
    from napari_medseg.widgets.failures import FailuresPanel

    viewer = make_napari_viewer(show=True)
    p = FailuresPanel(viewer)
    viewer.window.add_dock_widget(p, name="Failures", area="right")
    p.store_edit.setText(str(store_root))
    p.device_combo.setCurrentText("cpu")
    return p


def test_evaluation_fills_the_table_worst_first_and_exports_csv_and_png(panel, qtbot, tmp_path):
    assert panel.evaluate() is not None
    qtbot.waitUntil(lambda: not panel.running, timeout=90_000)
    report = panel.report
    assert report is not None and report.model_id == "tiny-current"
    assert panel.table.rowCount() == 3  # the three approved cases, not the unapproved one
    headers = [panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())]
    assert (
        headers[:4] == ["case", "dice mean", "dice anterior", "dice posterior"]
        and "hd95 posterior" in headers
        and headers[-2:] == ["volerr anterior", "volerr posterior"]
    )
    err = report.cases[0].metrics["volerr_anterior"]  # signed %, as evaluate reports it
    assert panel.table.item(0, headers.index("volerr anterior")).text() == (
        f"{err:+.1f} %" if err == err else "-"
    )
    dice = [float(panel.table.item(r, 1).text()) for r in range(3)]
    assert dice == sorted(dice)
    assert [panel.table.item(r, 0).text() for r in range(3)] == [c.case_id for c in report.cases]
    assert sum(p.get_height() for p in panel.figure.axes[0].patches) == 3  # histogram of 3 cases
    paths = panel.export(tmp_path / "report")
    assert paths["csv"].read_text().splitlines()[1].startswith(report.cases[0].case_id)
    assert paths["png"].stat().st_size > 0


def test_selected_case_shows_planted_errors_in_two_colours(panel, store_root, qtbot):
    from napari_medseg.evaluation.failures import CaseFailure, FailureReport
    from napari_medseg.store import CaseStore
    from napari_medseg.widgets.failures import ERRORS, IMAGE, PROPOSAL, REFERENCE, UNCERTAINTY

    store = CaseStore.open(store_root)
    case_id = store.case_ids()[0]
    truth = store.load_label(case_id).array.astype(np.uint8)
    store.close()
    planted = truth.copy()
    k = int(np.argmax((truth > 0).sum(axis=(0, 1))))  # the axial slice with most hippocampus
    planted[..., k][truth[..., k] == 1] = 0  # anterior missed -> false negatives
    fp = np.zeros_like(truth, dtype=bool)
    fp[2:10, 2:10, k] = True
    planted[fp & (truth == 0)] = 2  # posterior added in background -> false positives
    report = FailureReport(
        [CaseFailure(case_id, 1, {"dice_mean": 0.5}, planted, np.zeros(truth.shape, np.float16))], "planted"
    )
    panel.set_report(report)
    panel.table.selectRow(0)
    names = [layer.name for layer in panel.viewer.layers]
    assert {IMAGE, REFERENCE, PROPOSAL, ERRORS, UNCERTAINTY} <= set(names)
    errors = panel.viewer.layers[ERRORS]
    assert set(np.unique(errors.data)) == {0, 1, 2}
    assert (errors.data == 1).sum() == (fp & (truth == 0)).sum()
    assert (errors.data == 2).sum() == (truth[..., k] == 1).sum()
    np.testing.assert_allclose(errors.colormap.map(1)[:3], [1, 0, 1])
    np.testing.assert_allclose(errors.colormap.map(2)[:3], [0, 1, 1])
    panel.viewer.layers[IMAGE].visible = False
    qtbot.wait(200)
    shot = panel.viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    near = lambda rgb: (np.abs(shot - rgb).sum(-1) < 60).sum()  # noqa: E731
    assert near(MAGENTA) > 0 and near(CYAN) > 0  # both kinds of error visible on the slice shown
    panel.viewer.layers[IMAGE].visible = True
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    panel.viewer.window._qt_window.grab().save(str(SCREENSHOTS / "failures_panel.png"))
