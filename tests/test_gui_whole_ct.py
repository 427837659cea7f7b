"""The viewer on whole CTs (512x512x300): how long the event loop is blocked (a timer probe), and that
moving from one whole CT to the next does not keep the earlier ones in memory.

A 5 ms QTimer records when it actually fires; the longest gap during an action is the longest time the
event loop could not answer (no repaint, no click). The figures are printed (run with ``-s``) and
reported in bench/RESULTS.md; they are measurements, not asserted limits (the machine is shared).

    MEDSEG_WHOLE_CT=1 python -m pytest -s tests/test_gui_whole_ct.py
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_medseg.widgets import _layers  # noqa: E402

pytestmark = [
    pytest.mark.gui,
    # ~1-2 min on 2 cores and three whole CTs on disk: run on demand (MEDSEG_WHOLE_CT=1), not in CI
    pytest.mark.skipif(
        not os.environ.get("MEDSEG_WHOLE_CT"), reason="whole-CT viewer probe: set MEDSEG_WHOLE_CT=1 to run"
    ),
]
SLICES = 300
LABELS = {0: "background", 1: "odd structures", 2: "even structures"}


class Probe:
    """Longest gap between the ticks of a 5 ms QTimer while an action runs (seconds)."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def measure(self, qtbot, action, settle_ms: int = 300) -> tuple[float, float]:
        """Run ``action`` from inside the event loop; ``(wall seconds, longest block seconds)``."""
        from qtpy.QtCore import QTimer

        self.ticks = [time.perf_counter()]
        self.timer.start()
        done: list[float] = []

        def run() -> None:
            start = time.perf_counter()
            action()
            done.append(time.perf_counter() - start)

        QTimer.singleShot(0, run)
        qtbot.waitUntil(lambda: bool(done), timeout=120_000)
        qtbot.wait(settle_ms)  # the repaints the action queued
        self.timer.stop()
        gaps = np.diff(self.ticks)
        return done[0], float(gaps.max()) if len(gaps) else 0.0


@pytest.fixture(scope="module")
def ct_store(tmp_path_factory, totalseg_dir):
    """A store with three 512x512x300 CT cases (the CT series resampled), each with a 3-class label."""
    import nibabel as nib

    from napari_medseg.io import load_volume
    from napari_medseg.store import CaseStore

    src = load_volume(totalseg_dir / "ct_dicom")
    z = np.linspace(0, src.shape[2] - 1, SLICES)
    image = np.empty((*src.shape[:2], SLICES), np.int16)
    for k, zk in enumerate(z):  # linear along the slices
        lo = int(np.floor(zk))
        hi = min(lo + 1, src.shape[2] - 1)
        image[:, :, k] = np.round((1 - (zk - lo)) * src.array[:, :, lo] + (zk - lo) * src.array[:, :, hi])
    affine = src.affine.copy()
    affine[:3, 2] *= (src.shape[2] - 1) / (SLICES - 1)
    seg = np.asarray(nib.load(totalseg_dir / "example_seg_dicom.nii.gz").dataobj)[
        :, :, np.round(z).astype(int)
    ]
    labels = np.where(seg > 0, np.where(seg % 2 == 0, 2, 1), 0).astype(np.uint8)
    folder = tmp_path_factory.mktemp("ct")
    nib.save(nib.Nifti1Image(image, affine), folder / "ct300.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / "ct300_seg.nii.gz")
    root = folder / "store"
    with CaseStore.init(root, name="ct", labels=LABELS, modality="CT") as s:
        for k in range(3):  # three cases: a reviewer moving from one whole CT to the next
            s.import_case(folder / "ct300.nii.gz", folder / "ct300_seg.nii.gz", case_id=f"ct300_{k}")
    return root, labels


def _prediction(labels: np.ndarray):
    """A proposal (labels shifted by one voxel) with a band uncertainty map and its regions."""
    import torch

    from napari_medseg.inference.prediction import Prediction
    from napari_medseg.inference.regions import find_regions
    from napari_medseg.inference.uncertainty import boundary_band

    proposal = np.roll(labels, 1, axis=0)
    band = boundary_band(torch.from_numpy(labels), torch.from_numpy(proposal), 3).numpy()
    unc = np.where(labels != proposal, 0.9, 0.3).astype(np.float16) * band
    return Prediction(
        labels=proposal,
        uncertainty=unc,
        band=band,
        regions=find_regions(unc)[:50],
        score=0.1,
        model_id="probe",
    )


def _review_window(make_napari_viewer, root, user: str):  # noqa: ANN001, ANN202
    """A shown viewer with the Cases and Review panels, the store open for ``user``."""
    from napari_medseg.widgets.cases import CasesPanel
    from napari_medseg.widgets.review import ReviewPanel

    viewer = make_napari_viewer(show=True)
    cases, review = CasesPanel(viewer), ReviewPanel(viewer)
    viewer.window.add_dock_widget(cases, area="right")
    viewer.window.add_dock_widget(review, area="right")
    cases.user_edit.setText(user)
    assert cases.open_store(str(root))
    return viewer, cases, review


def test_whole_ct_event_loop_blocks(make_napari_viewer, qtbot, ct_store):
    root, labels = ct_store
    viewer, cases, review = _review_window(make_napari_viewer, root, "alice")
    ctrl, probe = cases.ctrl, Probe()
    figures: dict[str, tuple[float, float]] = {}

    shown: list[float] = []

    def on_inserted(event) -> None:
        if event.value.name == _layers.IMAGE and not shown:
            shown.append(time.perf_counter())

    viewer.layers.events.inserted.connect(on_inserted)
    clicked = time.perf_counter()
    figures["open case (all layers)"] = probe.measure(qtbot, lambda: cases.open_row(0))
    first_image = shown[0] - clicked
    assert _layers.IMAGE in viewer.layers and viewer.layers[_layers.IMAGE].data.shape == (SLICES, 512, 512)

    prediction = _prediction(labels)

    def show() -> None:
        ctrl.session.apply_prediction(prediction, save=False)
        ctrl.show_prediction(prediction)

    figures["show proposal + uncertainty"] = probe.measure(qtbot, show)
    assert _layers.PROPOSAL in viewer.layers and _layers.UNCERTAINTY in viewer.layers

    def scroll() -> None:
        for k in range(100, 130):
            viewer.dims.set_current_step(0, k)
            qtbot.wait(1)

    figures["scroll 30 slices"] = probe.measure(qtbot, scroll)

    layer = viewer.layers[_layers.LABELS]

    def paint() -> None:
        layer.selected_label = 1
        for j in range(200, 260, 6):
            layer.paint((115, j, 250), 1, refresh=True)
            qtbot.wait(1)

    figures["paint 10 dabs"] = probe.measure(qtbot, paint)
    assert ctrl.session.has_unsaved_changes

    figures["save version"] = probe.measure(qtbot, lambda: review.save())
    assert not ctrl.session.has_unsaved_changes
    assert ctrl.session.store.latest_version(ctrl.session.case_id).number == 2  # import + this save

    # the other reading planes: every coronal slice is a strided read across all 300 axial slices
    figures["switch to coronal"] = probe.measure(qtbot, lambda: ctrl.set_view("coronal"))

    def scroll_coronal() -> None:
        for j in range(200, 230):
            viewer.dims.set_current_step(1, j)
            qtbot.wait(1)

    figures["scroll 30 coronal slices"] = probe.measure(qtbot, scroll_coronal)

    def paint_coronal() -> None:  # a correction in the coronal plane: each dab writes across axial slices
        j = viewer.dims.current_step[1]
        for k in range(120, 180, 6):
            layer.paint((k, j, 250), 1, refresh=True)
            qtbot.wait(1)

    figures["paint 10 dabs, coronal"] = probe.measure(qtbot, paint_coronal)
    figures["switch to sagittal"] = probe.measure(qtbot, lambda: ctrl.set_view("sagittal"))
    assert ctrl.view == "sagittal"
    ctrl.set_view("axial")

    print("\nwhole CT 512x512x300, event loop probe (5 ms timer):")
    print(f"  {'first image layer on screen':<30} {first_image:6.3f} s after the click")
    for name, (wall, block) in figures.items():
        print(f"  {name:<30} wall {wall:6.3f} s   longest event-loop block {block * 1000:7.0f} ms")
    ctrl.session.close_case(discard=True)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_whole_ct_cases_one_after_another_do_not_pile_up(make_napari_viewer, qtbot, ct_store):
    """Memory after each of three whole CTs (opened, proposal shown, region, stroke, saved), twice round."""
    import gc

    root, labels = ct_store
    viewer, cases, review = _review_window(make_napari_viewer, root, "bob")
    ctrl, prediction = cases.ctrl, _prediction(labels)
    rss: list[float] = []
    for _round in range(2):
        for k in range(3):
            assert cases.open_row(cases.case_ids().index(f"ct300_{k}"))
            ctrl.session.apply_prediction(prediction, save=False)
            ctrl.show_prediction(prediction)
            assert ctrl.step_region(1)
            layer = viewer.layers[_layers.LABELS]
            layer.paint((120, 230, 250), 2 - _round, refresh=True)  # a dab that changes something each round
            assert ctrl.session.has_unsaved_changes
            assert review.save() is not None
            qtbot.wait(50)
            gc.collect()
            rss.append(_rss_mib())
    print("\nRSS after each whole CT (MiB):", [round(r) for r in rss])
    image_mib = 512 * 512 * SLICES * 2 / 2**20  # one int16 CT
    # one earlier CT may stay in memory for going back (the store's image budget); a third must not
    assert rss[2] - rss[1] < image_mib / 2, rss
    assert max(rss[3:]) - rss[2] < image_mib / 2, rss  # the second round adds nothing
    ctrl.session.close_case(discard=True)
