"""The save path: the file is written before the write lock, counts from held arrays, races recounted."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.errors import StaleSaveError
from napari_medseg.io.atomic import TMP_PREFIX
from napari_medseg.io.volume import array_checksum
from napari_medseg.store import CaseStore
from napari_medseg.store.casestore import labels_checksum

HIPPO_LABELS = {0: "background", 1: "Anterior", 2: "Posterior"}


@pytest.fixture()
def store(tmp_path, hippo_cases):
    s = CaseStore.init(tmp_path / "store", name="hippo", labels=HIPPO_LABELS)
    s.import_many(hippo_cases[:1])
    yield s
    s.close()


def _temp_files(store: CaseStore) -> list:
    return sorted(store.root.rglob(f"{TMP_PREFIX}*"))


def test_counts_from_held_arrays_equal_counts_from_the_files(store):
    case = store.case_ids()[0]
    v1 = np.asarray(store.load_label(case).array)
    proposal = v1.copy()
    proposal[proposal == 1] = 2
    store.save_version(case, proposal, "model", source="model:m@abc", is_proposal=True)
    edited = proposal.copy()
    edited[:3] = 1
    from_files = store.save_version(case, edited, "ann", parent=2)
    again = edited.copy()
    again[-2:] = 2
    held = {3: edited, 2: np.ascontiguousarray(proposal)}  # C order, unlike the Fortran-ordered files
    from_memory = store.save_version(case, again, "ann", parent=3, known_labels=held)
    reread = store.save_version(case, again, "ann", parent=4)
    assert from_memory.changed_vs_parent == int(np.count_nonzero(again != edited))
    assert from_memory.changed_vs_proposal == int(np.count_nonzero(again != proposal))
    assert from_memory.dice_vs_proposal == pytest.approx(reread.dice_vs_proposal)
    assert from_files.changed_vs_proposal == int(np.count_nonzero(edited != proposal))
    assert _temp_files(store) == []


def test_a_stale_save_leaves_no_file_behind(store):
    case = store.case_ids()[0]
    labels = np.asarray(store.load_label(case).array)
    store.save_version(case, labels, "ann", parent=1)
    with pytest.raises(StaleSaveError):
        store.save_version(case, labels, "other", parent=1)
    assert _temp_files(store) == []
    assert sorted(p.name for p in (store.root / ".medseg" / "versions" / case).glob("*.nii.gz")) == [
        "1.nii.gz",
        "2.nii.gz",
    ]


def test_a_save_made_while_another_lands_is_counted_against_the_new_latest(store, monkeypatch):
    case = store.case_ids()[0]
    base = np.asarray(store.load_label(case).array)
    theirs = base.copy()
    theirs[:2] = 2
    mine = base.copy()
    mine[-1] = 1
    prepare = CaseStore._prepare_version
    calls = []

    def racing(self, *args, **kwargs):
        prepared = prepare(self, *args, **kwargs)
        if self is not store:
            return prepared
        calls.append(prepared.latest)
        if len(calls) == 1:  # another annotator saves after our file was written, before our transaction
            other = CaseStore.open(self.root)
            other.save_version(case, theirs, "other")
            other.close()
        return prepared

    monkeypatch.setattr(CaseStore, "_prepare_version", racing)
    info = store.save_version(case, mine, "ann")  # parent=None: on top of whatever is latest
    assert calls == [1, 2] and info.number == 3 and info.parent == 2
    assert info.changed_vs_parent == int(np.count_nonzero(mine != theirs))
    np.testing.assert_array_equal(store.load_label(case, 3).array, mine)
    assert _temp_files(store) == []


def test_label_checksum_is_the_int32_array_checksum_in_either_memory_order():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, (7, 300, 5)).astype(np.uint8)
    expected = array_checksum(a.astype(np.int32))
    assert labels_checksum(a) == expected == labels_checksum(np.asfortranarray(a))
