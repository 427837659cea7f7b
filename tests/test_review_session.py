"""ReviewSession: the headless review loop on real hippocampus cases (no Qt)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_medseg.errors import LockedError, StaleSaveError, StoreError
from napari_medseg.review import ReviewSession, UnsavedChangesError, label_diff
from napari_medseg.review.queue import neighbour

#: One window covers a hippocampus volume (31-43 x 40-59 x 24-47 voxels): one pass per case.
PATCH = (48, 64, 48)
HIPPO_LABELS = {0: "background", 1: "Anterior", 2: "Posterior"}


def make_tiny_pair(model_dir):
    """A small random-init UNETR + BS-Net pair saved in ``model_dir`` (real networks, untrained)."""
    import torch

    from napari_medseg.models.factory import build_network
    from napari_medseg.models.pair import ModelPair

    torch.manual_seed(0)
    nets = {
        "unetr": build_network(
            "unetr", {"img_size": PATCH, "feature_size": 8, "hidden_size": 48, "mlp_dim": 96, "num_heads": 2}
        ),
        "bsnet": build_network("bsnet", {"filters": (8, 16, 32, 64), "boundary_filters": (4, 8, 16)}),
    }
    ModelPair.from_nets(nets, model_id="tiny-random", patch_size=PATCH).save(model_dir)
    return model_dir


@pytest.fixture
def store(tmp_path, hippo_cases):
    from napari_medseg.store import CaseStore

    s = CaseStore.init(tmp_path / "store", name="hippo", labels=HIPPO_LABELS)
    for image, label in hippo_cases[:3]:
        s.import_case(image, label)
    yield s
    s.close()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_pair(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def session(store, tiny_model):
    return ReviewSession(store, user="alice", model_dir=tiny_model)


def test_opening_a_case_takes_its_lock_and_loads_the_latest_label(session, store):
    case = store.case_ids()[0]
    session.open_case(case)
    assert store.case(case).lock_owner == "alice"
    assert session.image.shape == session.labels.shape
    assert session.base_version == 1
    np.testing.assert_array_equal(session.labels, store.load_label(case).array)
    assert not session.has_unsaved_changes
    other = ReviewSession(store, user="bob")
    with pytest.raises(LockedError, match="alice"):
        other.open_case(case)
    session.open_case(store.case_ids()[1])
    assert store.case(case).lock_owner is None


def test_queue_puts_the_most_uncertain_case_first(session, store):
    a, b, c = store.case_ids()
    store.set_uncertainty(a, 0.1)
    store.set_uncertainty(c, 0.7)
    assert session.queue_ids() == [c, a, b]
    session.open_case(c)
    assert session.next_case() == a
    assert session.previous_case() is None
    assert neighbour([c, a, b], b, 1) is None


def test_prediction_becomes_a_saved_proposal_and_scores_the_case(session, store):
    case = store.case_ids()[0]
    session.open_case(case)
    seen = []
    pred = session.run_prediction(net="pair", device="cpu", progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1]
    assert pred.labels.shape == session.image.shape
    assert session.proposal_version == 2 and store.proposal(case).number == 2
    assert store.proposal(case).source.startswith("model:tiny-random@")
    assert store.case(case).uncertainty == pytest.approx(pred.score)
    band = session.uncertainty_map(band_only=True)
    full = session.uncertainty_map(band_only=False)
    assert band.shape == full.shape == session.image.shape
    assert np.all(band[~pred.band] == 0)
    # inside the band both are the pair's disagreement (full one from the kept float16 probabilities)
    np.testing.assert_allclose(full[pred.band], band[pred.band], atol=5e-3)


def test_saving_an_edit_records_parent_and_change_versus_proposal(session, store):
    case = store.case_ids()[0]
    session.open_case(case)
    session.run_prediction(device="cpu")
    session.accept_proposal()
    np.testing.assert_array_equal(session.labels, session.proposal)
    session.labels[:4, :4, :4] = 2
    expected = label_diff(session.labels, session.proposal)
    assert session.has_unsaved_changes
    info = session.save_version(note="fixed the corner")
    assert info.number == 3 and info.parent == 2 and info.author == "alice" and info.source == "human"
    assert info.changed_vs_proposal == session.diff().changed == expected.changed > 0
    assert info.dice_vs_proposal == pytest.approx(expected.dice)
    assert "fixed the corner" in info.note
    assert not session.has_unsaved_changes
    assert store.case(case).status == "corrected"


def test_stale_save_is_refused_naming_who_and_can_be_saved_as_new_version(session, store):
    case = store.case_ids()[0]
    session.open_case(case)
    session.labels[0, 0, 0] = 1
    # bob breaks the lock and saves in between
    store.lock(case, "bob", force=True)
    store.save_version(case, store.load_label(case).array, author="bob", parent=1)
    store.unlock(case, "bob")
    with pytest.raises(StaleSaveError, match="bob"):
        session.save_version()
    assert store.latest_version(case).number == 2
    info = session.save_as_new_version(note="mine")
    assert info.number == 3 and info.parent == 2 and "bob" in info.note


def test_switching_case_with_unsaved_edits_is_refused_unless_discarded(session, store):
    first, second = store.case_ids()[:2]
    session.open_case(first)
    session.labels[1, 1, 1] = 2 if session.labels[1, 1, 1] != 2 else 1
    with pytest.raises(UnsavedChangesError, match="unsaved"):
        session.open_case(second)
    assert session.case_id == first
    session.open_case(second, discard=True)
    assert session.case_id == second and not session.has_unsaved_changes


def test_approve_needs_the_label_on_screen_saved_then_writes_labelstr(session, store):
    case = store.case_ids()[0]
    session.open_case(case)
    session.run_prediction(device="cpu")  # latest version is now the proposal, not what is on screen
    with pytest.raises(UnsavedChangesError, match="save a version"):
        session.approve()
    session.save_version()
    session.approve(comment="looks right")
    assert store.case(case).status == "approved"
    assert (store.root / "labelsTr" / f"{case}.nii.gz").is_file()


def test_needs_work_sends_the_case_back_with_the_comment(session, store):
    case = store.case_ids()[0]
    session.open_case(case)
    session.labels[2, 2, 2] = 1 if session.labels[2, 2, 2] != 1 else 2
    session.save_version()
    assert session.needs_work("posterior tail too wide") == "proposed"
    assert any("posterior tail too wide" in e.detail for e in store.events(case))
    with pytest.raises(StoreError, match="empty"):
        session.needs_work("  ")


def test_diff_counts_added_and_removed_voxels_and_dice():
    proposal = np.zeros((4, 4, 4), np.uint8)
    proposal[:2] = 1
    working = proposal.copy()
    working[0, 0, :] = 0  # 4 removed
    working[3, 0, :2] = 2  # 2 added
    d = label_diff(working, proposal)
    assert (d.added, d.removed, d.changed) == (2, 4, 6)
    assert int((d.map == 1).sum()) == 2 and int((d.map == 2).sum()) == 4
    # class 1: |A|=32, |B|=28, overlap 28 -> 56/60 ; class 2 only in working -> 0
    assert d.dice == pytest.approx((56 / 60 + 0.0) / 2)


def test_session_runs_without_qt_or_napari():
    code = (
        "import sys, napari_medseg.review.session as s; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'torch')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_single_network_uncertainty_can_be_limited_to_its_boundary_band(session, store):
    session.open_case(store.case_ids()[1])
    pred = session.run_prediction(net="bsnet", device="cpu", save=False)
    assert pred.net == "bsnet" and session.proposal_version is None
    full = session.uncertainty_map(band_only=False)
    band = session.uncertainty_map(band_only=True)
    np.testing.assert_array_equal(band[pred.band], full[pred.band])
    assert np.all(band[~pred.band] == 0)
