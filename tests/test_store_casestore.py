"""Case store: import, append-only versions with provenance, review workflow, training items."""

from __future__ import annotations

import json
import sqlite3

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.errors import GeometryError, InputError, StoreError
from napari_medseg.io import load_labels, load_volume
from napari_medseg.store import CaseStore
from napari_medseg.store.provenance import file_sha256, mean_foreground_dice

HIPPO_LABELS = {0: "background", 1: "Anterior", 2: "Posterior"}
MODEL = "model:unetr-test@0123abcd"


@pytest.fixture()
def store(tmp_path, hippo_cases):
    s = CaseStore.init(tmp_path / "store", name="hippo", labels=HIPPO_LABELS)
    s.import_many(hippo_cases[:3])
    yield s
    s.close()


def _edit(labels: np.ndarray, n: int, value: int = 1) -> np.ndarray:
    out = labels.copy()
    out.reshape(-1)[:n] = value  # first n voxels (background corner) set to `value`
    return out


def test_import_copies_real_cases_and_records_version_one(store, hippo_cases):
    assert store.case_ids() == [p.name[: -len(".nii.gz")] for p, _ in hippo_cases[:3]]
    case = store.case_ids()[0]
    src_image, src_label = hippo_cases[0]
    assert store.load_image(case).checksum == load_volume(src_image).checksum
    v1 = store.latest_version(case)
    assert (v1.number, v1.parent, v1.source, v1.is_proposal) == (1, None, "human", False)
    stored = store.load_label(case)
    expected = load_labels(src_label).array
    np.testing.assert_array_equal(stored.array, expected)
    np.testing.assert_allclose(stored.affine, load_volume(src_image).affine)
    info = store.case(case)
    assert (info.status, info.n_versions, info.last_editor) == ("proposed", 1, "import")


def test_import_of_an_existing_case_is_refused(store, hippo_cases):
    with pytest.raises(StoreError, match="already in the store"):
        store.import_case(*hippo_cases[0])


def test_import_with_labels_from_another_grid_raises_geometry_error(store, hippo_cases):
    with pytest.raises(GeometryError):
        store.import_case(hippo_cases[4][0], hippo_cases[5][1])
    assert hippo_cases[4][0].name[:-7] not in store.case_ids()


def test_every_save_is_a_new_version_with_provenance(store):
    case = store.case_ids()[0]
    base = store.load_label(case).array
    proposal = _edit(base, 50, 2)
    p = store.save_version(case, proposal, author="unetr", source=MODEL, parent=1, is_proposal=True)
    assert (p.number, p.parent, p.changed_vs_parent, p.source) == (
        2,
        1,
        50 - int(np.sum(base.reshape(-1)[:50] == 2)),
        MODEL,
    )
    assert store.proposal(case).number == 2
    corrected = _edit(proposal, 20, 1)
    h = store.save_version(case, corrected, author="alice", parent=2, note="fixed corner")
    assert (h.number, h.parent, h.author, h.note, h.is_proposal) == (3, 2, "alice", "fixed corner", False)
    assert h.changed_vs_parent == 20 and h.changed_vs_proposal == 20
    assert h.dice_vs_proposal == pytest.approx(mean_foreground_dice(proposal, corrected))
    assert h.image_checksum == store.load_image(case).checksum
    assert h.created_utc.endswith("+00:00")
    # old versions are untouched and still readable
    np.testing.assert_array_equal(store.load_label(case, 1).array, base)
    np.testing.assert_array_equal(store.load_label(case, 2).array, proposal)
    np.testing.assert_array_equal(store.load_label(case).array, corrected)
    assert [v.number for v in store.versions(case)] == [1, 2, 3]
    assert all(file_sha256(v.path) == v.file_sha256 for v in store.versions(case))


def test_saving_the_same_labels_twice_still_adds_a_version(store):
    case = store.case_ids()[1]
    labels = store.load_label(case).array
    v2 = store.save_version(case, labels, author="bob")
    v3 = store.save_version(case, labels, author="bob")
    assert (v2.number, v3.number, v3.changed_vs_parent) == (2, 3, 0)
    assert v2.path != v3.path and v2.path.exists() and v3.path.exists()


def test_labels_of_the_wrong_shape_raise_geometry_error(store):
    case = store.case_ids()[0]
    shape = store.load_image(case).shape
    with pytest.raises(GeometryError, match="do not match the image grid"):
        store.save_version(case, np.zeros((shape[0] + 1, shape[1], shape[2]), np.uint8), author="alice")
    assert len(store.versions(case)) == 1


def test_float_or_undeclared_label_values_are_refused(store):
    case = store.case_ids()[0]
    labels = store.load_label(case).array
    with pytest.raises(InputError, match="integer"):
        store.save_version(case, labels.astype(np.float32), author="alice")
    with pytest.raises(InputError, match="not declared"):
        store.save_version(case, _edit(labels, 5, 7), author="alice")


def test_unknown_source_is_refused(store):
    case = store.case_ids()[0]
    with pytest.raises(StoreError, match="source"):
        store.save_version(case, store.load_label(case).array, author="x", source="robot")


def test_database_refuses_to_change_or_delete_a_version(store):
    con = sqlite3.connect(store.root / ".medseg" / "store.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE versions SET author = 'mallory'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM versions")
    con.close()


def test_orphan_file_from_an_interrupted_save_is_moved_aside_not_overwritten(store):
    case = store.case_ids()[0]
    orphan = store.root / ".medseg" / "versions" / case / "2.nii.gz"
    orphan.write_bytes(b"half-finished save")
    assert [v.number for v in store.versions(case)] == [1]  # ignored by readers
    assert store.check().orphans == [orphan]
    v2 = store.save_version(case, store.load_label(case).array, author="alice")
    assert v2.number == 2 and file_sha256(v2.path) == v2.file_sha256
    moved = list((store.root / ".medseg" / "orphans").rglob("*2.nii.gz"))
    assert len(moved) == 1 and moved[0].read_bytes() == b"half-finished save"
    assert store.check().ok


def test_review_workflow_allows_documented_moves_and_approval_publishes_labels(store):
    case = store.case_ids()[0]
    label_file = store.root / "labelsTr" / f"{case}.nii.gz"
    with pytest.raises(StoreError, match="cannot become 'new'|unknown status"):
        store.set_status(case, "new", "rad")
    store.set_status(case, "in_review", "rad")
    store.set_status(case, "proposed", "rad", comment="needs work: posterior tail missing")
    corrected = _edit(store.load_label(case).array, 10, 2)
    store.save_version(case, corrected, author="alice")
    assert store.case(case).status == "corrected"
    assert not label_file.exists()
    store.approve(case, "rad")
    info = store.case(case)
    assert (info.status, info.approved_version) == ("approved", 2)
    assert file_sha256(label_file) == store.version(case, 2).file_sha256
    assert nib.load(label_file).shape == corrected.shape
    ds = json.loads((store.root / "dataset.json").read_text())
    assert ds["training"] == [{"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}]
    # editing an approved case sends it back to 'corrected'; labelsTr keeps the approved version
    store.save_version(case, _edit(corrected, 5, 1), author="bob")
    assert store.case(case).status == "corrected"
    assert file_sha256(label_file) == store.version(case, 2).file_sha256
    kinds = [(e.kind, e.detail) for e in store.events(case)]
    assert ("status", "in_review -> proposed: needs work: posterior tail missing") in kinds


def test_approving_a_case_without_labels_is_refused(tmp_path, hippo_cases):
    s = CaseStore.init(tmp_path / "s", labels=HIPPO_LABELS)
    case = s.import_case(hippo_cases[0][0])
    assert s.case(case).status == "new" and s.load_label(case) is None
    s.set_status(case, "in_review", "rad")
    with pytest.raises(StoreError, match="no label version"):
        s.approve(case, "rad")


def test_comment_is_recorded_in_the_event_log(store):
    case = store.case_ids()[0]
    store.comment(case, "rad", "needs work")
    last = store.events(case)[-1]
    assert (last.kind, last.author, last.detail) == ("comment", "rad", "needs work")


def test_training_items_give_latest_labels_and_trust_only_approved(store):
    a, b, c = store.case_ids()
    store.set_status(a, "approved", "rad")
    store.save_version(b, store.load_label(b).array, author="unetr", source=MODEL, is_proposal=True)
    items = {i["case_id"]: i for i in store.training_items()}
    assert items[a]["approved"] and items[a]["version"] == 1
    assert not items[b]["approved"] and items[b]["version"] == 2
    assert items[b]["label"] == str(store.version(b, 2).path)
    assert load_volume(items[c]["image"]).shape == load_labels(items[c]["label"]).shape


def test_uncertainty_is_stored_per_case(store):
    case = store.case_ids()[2]
    store.set_uncertainty(case, 0.42)
    assert store.case(case).uncertainty == pytest.approx(0.42)
    with pytest.raises(StoreError):
        store.set_uncertainty(case, float("nan"))


def test_a_dicom_series_is_imported_as_nifti_on_its_own_grid(tmp_path, totalseg_dir):
    s = CaseStore.init(tmp_path / "ct", labels={0: "background", 1: "organ"}, modality="CT")
    case = s.import_case(totalseg_dir / "ct_dicom", case_id="ct_series")
    stored = s.load_image(case)
    original = load_volume(totalseg_dir / "ct_dicom")
    assert s.image_path(case).name == "ct_series.nii.gz"
    assert stored.shape == original.shape
    np.testing.assert_allclose(stored.affine, original.affine, atol=1e-4)
    labels = np.zeros(stored.shape, np.uint8)
    labels[200:300, 200:300, 5:10] = 1
    v = s.save_version(case, labels, author="alice")
    np.testing.assert_allclose(s.load_label(case).affine, original.affine, atol=1e-4)
    assert v.image_checksum == stored.checksum


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Case images the store reads from disk (its in-memory images are not counted)."""
    import napari_medseg.io as nio

    reads: list[str] = []
    real = nio.load_volume

    def counted(path, *args, **kwargs):  # noqa: ANN001, ANN202
        reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(nio, "load_volume", counted)
    return reads


def test_recent_images_stay_in_memory_within_a_byte_budget(store, monkeypatch):
    import napari_medseg.store.casestore as cs

    ids = store.case_ids()
    sizes = [store.load_image(c).array.nbytes for c in ids]
    store._images.clear()
    reads = _counting_reads(monkeypatch)
    # older images may take about one case together: the most recent one, plus one before it
    monkeypatch.setattr(cs, "IMAGE_CACHE_EXTRA_BYTES", max(sizes) + 1)
    for c in ids:
        store.load_image(c)
    assert len(reads) == len(ids)
    store.load_image(ids[-1])
    store.load_image(ids[-2])
    assert len(reads) == len(ids)  # both still in memory
    store.load_image(ids[0])
    assert len(reads) == len(ids) + 1  # dropped when the budget ran out: read again


def test_the_open_case_image_stays_in_memory_however_large(store, monkeypatch):
    import napari_medseg.store.casestore as cs

    case = store.case_ids()[0]
    monkeypatch.setattr(cs, "IMAGE_CACHE_EXTRA_BYTES", 0)  # e.g. a whole CT beyond any budget
    store.load_image(case)
    reads = _counting_reads(monkeypatch)
    labels = store.load_label(case).array
    store.save_version(case, labels, author="alice", parent=1)  # a save needs the image's grid
    assert reads == []
