"""A reviewer's day in one viewer: case after case opened, predicted, painted, compared with the proposal,
saved and approved, with the process's memory, threads, open files, layers and Qt widgets recorded after
each case.

What it measures is printed (run with ``-s``) and reported in bench/RESULTS.md; what it asserts is what
must hold however fast the machine is: every save and approval landed, and the
process's threads, open files, layers and Qt widgets do not grow with the number of cases.

    MEDSEG_ALL_DAY=1 python -m pytest -s tests/test_gui_all_day.py

``MEDSEG_ALL_DAY_CASES=N`` (default 40) sets the number of cases; ``MEDSEG_ALL_DAY_EVERY=1`` prints every case.
"""

from __future__ import annotations

import gc
import os
import threading
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_medseg.widgets import _layers  # noqa: E402

pytestmark = [
    pytest.mark.gui,
    # minutes on 2 cores (the bundled model on every case): a measurement, run on demand, not in CI
    pytest.mark.skipif(not os.environ.get("MEDSEG_ALL_DAY"), reason="set MEDSEG_ALL_DAY=1 to run"),
    pytest.mark.timeout(3600),
]
CASES = int(os.environ.get("MEDSEG_ALL_DAY_CASES", "40"))
HIPPO_LABELS = {0: "background", 1: "Anterior", 2: "Posterior"}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_day_of_cases_in_one_viewer(make_napari_viewer, qtbot, tmp_path, hippo_dir):
    from napari_medseg.bundled import default_model_dir
    from napari_medseg.store import CaseStore
    from napari_medseg.widgets.cases import CasesPanel
    from napari_medseg.widgets.predict import PredictPanel
    from napari_medseg.widgets.review import ReviewPanel
    from napari_medseg.widgets.uncertainty import UncertaintyPanel

    images = sorted((hippo_dir / "imagesTr").glob("hippocampus_*.nii.gz"))[:CASES]
    root = tmp_path / "store"
    with CaseStore.init(root, name="hippo", labels=HIPPO_LABELS) as s:
        for image in images:
            s.import_case(image, hippo_dir / "labelsTr" / image.name)
    viewer = make_napari_viewer(show=True)
    cases, predict, review = CasesPanel(viewer), PredictPanel(viewer), ReviewPanel(viewer)
    unc = UncertaintyPanel(viewer)
    for name, panel in (("cases", cases), ("predict", predict), ("uncertainty", unc), ("review", review)):
        viewer.window.add_dock_widget(panel, name=name, area="right")
    cases.user_edit.setText("alice")
    assert cases.open_store(str(root))
    predict.model_edit.setText(str(default_model_dir()))
    predict.device_combo.setCurrentText("cpu")
    ctrl = cases.ctrl
    ids = cases.case_ids()
    assert len(ids) == len(images)

    from qtpy.QtWidgets import QApplication

    # (seconds, RSS MiB, threads, open files, layers, Qt widgets)
    rows: list[tuple[float, float, int, int, int, int]] = []
    start = time.perf_counter()
    for k in range(len(ids)):
        row = cases.case_ids().index(ids[k])
        assert cases.open_row(row)
        with qtbot.waitSignal(ctrl.prediction_finished, timeout=120_000) as blocker:
            assert predict.run() is not None
        assert blocker.args[0] is not None
        qtbot.waitUntil(lambda: not ctrl.running, timeout=10_000)
        ctrl.step_region(1)  # the reviewer jumps to the first uncertain region
        layer = viewer.layers[_layers.LABELS]
        centre = tuple(s // 2 for s in layer.data.shape)
        layer.paint(centre, 2, refresh=True)  # a dab of class 2 at the centre
        assert ctrl.show_diff() is not None  # what the edit changed against the proposal
        review.save()
        assert not ctrl.session.has_unsaved_changes
        assert review.approve()
        qtbot.wait(20)
        gc.collect()
        rows.append(
            (
                time.perf_counter() - start,
                _rss_mib(),
                threading.active_count(),
                _open_files(),
                len(viewer.layers),
                len(QApplication.allWidgets()),
            )
        )

    store = ctrl.session.store
    for case_id in ids:
        imported, proposal, saved = store.versions(case_id)  # the import, the model's, the day's save
        assert proposal.is_proposal and (saved.source, saved.author) == ("human", "alice"), case_id
        assert store.case(case_id).status == "approved", case_id
    print(
        f"\na day of {len(ids)} hippocampus cases (open, predict on CPU, next region, paint, diff, save, approve):"
    )
    print(f"  {'case':>4} {'s':>7} {'RSS MiB':>8} {'threads':>7} {'fds':>4} {'layers':>6} {'widgets':>7}")
    for k, (t, rss, nth, nfd, nl, nw) in enumerate(rows, 1):
        if os.environ.get("MEDSEG_ALL_DAY_EVERY") or k in (1, 2, 5, 10) or k % 10 == 0 or k == len(rows):
            print(f"  {k:>4} {t:7.1f} {rss:8.1f} {nth:7d} {nfd:4d} {nl:6d} {nw:7d}")
    rss = np.array([r[1] for r in rows])
    half = len(rss) // 2
    if half >= 2:
        slope = np.polyfit(np.arange(half, len(rss)), rss[half:], 1)[0]
        print(f"  RSS growth over the second half: {slope:+.2f} MiB per case")
    # what must not grow with the number of cases (a leak a reviewer would hit by the afternoon)
    settled = rows[len(rows) // 4]  # pools started by the first cases (store worker, CPU windows) stay
    assert rows[-1][2] <= settled[2], "threads left behind by a case"
    assert rows[-1][3] <= settled[3], "files left open by a case"
    assert rows[-1][4] == settled[4], "layers left behind by a case"
    assert rows[-1][5] <= settled[5] + 8, "widgets left behind by a case (e.g. toasts piling up)"
    ctrl.session.close_case(discard=True)
