"""One path from a prediction to the store: stored once with its map and regions, reopened with them,
a person's label stays the working label, and a run outside the model's domain is refused or not ranked."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA, make_tiny_pair_dir

from napari_medseg.models.domain import OutsideDomainError, domain_from_images
from napari_medseg.review import ReviewSession
from napari_medseg.review.proposals import load_stored_prediction, store_prediction
from napari_medseg.store import CaseStore

LABELS = {0: "background", 1: "Anterior", 2: "Posterior"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, hippo_cases):
    """A tiny random pair whose card records a domain from four real hippocampus images."""
    import json

    folder = make_tiny_pair_dir(tmp_path_factory.mktemp("m") / "tiny", model_id="tiny-domain")
    card = json.loads((folder / "pair.json").read_text())
    card["domain"] = domain_from_images([i for i, _ in hippo_cases[:4]], LABELS, "MRI")
    (folder / "pair.json").write_text(json.dumps(card))
    return folder


@pytest.fixture
def store(tmp_path, hippo_cases):
    s = CaseStore.init(tmp_path / "store", name="hippo", labels=LABELS)
    s.import_case(*hippo_cases[0])  # a reference label made by a person
    s.import_case(hippo_cases[1][0])  # image only
    yield s
    s.close()


def test_a_prediction_is_stored_once_with_its_map_and_regions_and_reopens_with_them(store, model_dir):
    case = store.case_ids()[1]  # no label
    s = ReviewSession(store, user="alice", model_dir=model_dir)
    s.open_case(case)
    pred = s.run_prediction(device="cpu")
    version = store.proposal(case)
    assert s.proposal_version == version.number == 1 and store.case(case).uncertainty == pytest.approx(
        pred.score
    )
    again = store_prediction(store, case, pred, "alice")  # the same proposal from the same model
    assert not again.created and again.version.number == 1 and "not saved again" in again.reason
    assert len(store.versions(case)) == 1
    s.close_case()

    s2 = ReviewSession(store, user="bob", model_dir=model_dir)
    s2.open_case(case)  # no run: proposal, overlay and regions come from the store
    assert s2.prediction is None and s2.stored is not None
    np.testing.assert_array_equal(s2.proposal, pred.labels)
    np.testing.assert_allclose(s2.uncertainty_map(), pred.uncertainty.astype(np.float32), atol=1e-3)
    assert [r.id for r in s2.regions] == [r.id for r in pred.regions] and s2.regions
    assert store.check().ok  # the extra files beside the version are not orphan versions


def test_a_persons_label_stays_the_working_label_after_a_proposal(store, model_dir, hippo_cases):
    case = store.case_ids()[0]
    reference = store.load_label(case, 1).array
    s = ReviewSession(store, user="alice", model_dir=model_dir)
    s.open_case(case)
    s.run_prediction(device="cpu")
    assert store.proposal(case).number == 2
    s.close_case()
    s.open_case(case)
    assert s.base_version == 1 and s.proposal_version == 2
    np.testing.assert_array_equal(s.labels, reference)  # not the proposal
    s.labels[0, 0, 0] = 1 - s.labels[0, 0, 0] if s.labels[0, 0, 0] < 2 else 0
    info = s.save_version("small fix")  # a later proposal is no competing edit: no stale-save refusal
    assert info.parent == 2 and "edited from version 1" in info.note


def test_a_save_after_a_rerun_and_accept_records_the_proposal_as_edited(store, model_dir):
    case = store.case_ids()[1]
    s = ReviewSession(store, user="alice", model_dir=model_dir)
    s.open_case(case)
    s.run_prediction(device="cpu")
    s.accept_proposal()
    s.labels[:2, :2, :2] = 2
    first = s.save_version()
    assert first.parent == 1 and "edited from" not in first.note
    s.run_prediction(device="cpu", net="bsnet")  # a different proposal: a new version on top
    s.accept_proposal()
    s.labels[:3, :3, :3] = 1
    second = s.save_version()
    assert second.parent == s.proposal_version == first.number + 1 and "edited from" not in second.note


def test_a_ct_is_refused_unless_insisted_and_then_never_ranked(tmp_path, model_dir):
    ct = SHARED_DATA / "ibsi-sts-ct" / "imagesTr" / "sts_002.nii.gz"
    if not ct.exists():
        pytest.skip(f"real data not found at {ct}")
    from napari_medseg.io import load_volume, save_volume

    full = load_volume(ct)  # a corner of the real CT (same grid, smaller): a short run when insisted
    from napari_medseg.io.volume import Volume

    corner = Volume(np.ascontiguousarray(full.array[:64, :64, :16]), full.affine.copy(), modality="CT")
    small = save_volume(corner, tmp_path / "ct.nii.gz")
    store = CaseStore.init(tmp_path / "ct", name="ct", labels=LABELS, modality="CT")
    case = store.import_case(small)
    s = ReviewSession(store, user="alice", model_dir=model_dir)
    s.open_case(case)
    with pytest.raises(OutsideDomainError, match="outside tiny-domain's training domain"):
        s.predict(device="cpu")
    assert store.versions(case) == []
    s.run_prediction(device="cpu", outside_domain=True)
    assert store.case(case).uncertainty is None  # not in the most-uncertain-first ranking
    assert "outside the model's training domain" in store.proposal(case).note
    assert load_stored_prediction(store, case).outside_domain and s.outside_domain
    store.close()
