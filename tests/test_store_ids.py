"""Case ids and names from users cannot escape the store folder."""

from __future__ import annotations

import pytest

from napari_medseg.cli import main
from napari_medseg.errors import StoreError
from napari_medseg.store import CaseStore
from napari_medseg.store.ids import case_id_from_path, validate_case_id

BAD_IDS = ["../evil", "/etc/passwd", "a/b", "", "..", ".hidden", "a\\b", "a b", "x" * 129, "ok\n"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_unsafe_case_ids_are_refused(bad):
    with pytest.raises(StoreError, match="invalid case id"):
        validate_case_id(bad)


@pytest.mark.parametrize("good", ["hippocampus_001", "case-7.v2", "A1"])
def test_ordinary_case_ids_are_accepted(good):
    assert validate_case_id(good) == good


def test_case_id_is_derived_from_the_file_name():
    assert case_id_from_path("/data/imagesTr/hippocampus_001.nii.gz") == "hippocampus_001"
    assert case_id_from_path("brain_0000.nii.gz") == "brain"
    assert case_id_from_path("/dicom/series42") == "series42"


@pytest.mark.parametrize("bad", ["../evil", "/etc/passwd", "a/b", ""])
def test_store_operations_refuse_unsafe_ids_and_write_nothing_outside(tmp_path, hippo_cases, bad):
    root = tmp_path / "store"
    store = CaseStore.init(root, labels={0: "background", 1: "Anterior", 2: "Posterior"})
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(StoreError, match="invalid case id"):
        store.import_case(*hippo_cases[0], case_id=bad)
    for call in (store.load_image, store.versions, store.latest_version, store.proposal):
        with pytest.raises(StoreError, match="invalid case id"):
            call(bad)
    with pytest.raises(StoreError, match="invalid case id"):
        store.save_version(bad, None, author="x")
    with pytest.raises(StoreError, match="invalid case id"):
        store.lock(bad, "x")
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "evil").exists()
    assert main(["store", "history", str(root), bad]) == StoreError.exit_code


def test_author_names_must_be_given(tmp_path, hippo_cases):
    store = CaseStore.init(tmp_path / "s", labels={0: "background", 1: "Anterior", 2: "Posterior"})
    case = store.import_case(*hippo_cases[0])
    with pytest.raises(StoreError, match="author"):
        store.save_version(case, store.load_label(case).array, author="  ")
