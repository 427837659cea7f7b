"""nnU-Net v2 export and the MSD export, checked by nnU-Net v2's own code where it is installed.

nnU-Net's checks (``verify_dataset_integrity``, ``convert_msd_dataset``) run only when ``nnunetv2`` is
importable (marker ``slow_tools``: a full ``pip install nnunetv2`` takes about 3 minutes, see
bench/RESULTS.md); the layout tests below them always run.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.cli import main
from napari_medseg.errors import StoreError
from napari_medseg.store import CaseStore
from napari_medseg.store.export_nnunet import dataset_folder_name, export_nnunet


@pytest.fixture()
def approved_store(tmp_path, hippo_dir):
    """A store with 4 hippocampus cases, 3 of them approved."""
    root = tmp_path / "store"
    assert (
        main(["store", "init", str(root), "--name", "Hippo_2", "--labels", "0=bg,1=Anterior,2=Posterior"])
        == 0
    )
    assert main(["store", "import", str(root), str(hippo_dir), "--limit", "4", "--author", "importer"]) == 0
    store = CaseStore.open(root)
    for case in store.case_ids()[:3]:
        store.set_status(case, "approved", "rad")
    return store


@pytest.fixture()
def nnunet_env(tmp_path, monkeypatch):
    """nnU-Net's three folders (it reads them from the environment when a function runs)."""
    paths = {}
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        paths[var] = tmp_path / var
        paths[var].mkdir()
        monkeypatch.setenv(var, str(paths[var]))
    return paths


def _verify():
    module = pytest.importorskip("nnunetv2.experiment_planning.verify_dataset_integrity")
    return module.verify_dataset_integrity


def test_nnunet_export_has_the_layout_nnunet_v2_reads(approved_store, tmp_path, capsys):
    raw = tmp_path / "raw"
    args = [
        "store",
        "export",
        str(approved_store.root),
        str(raw),
        "--format",
        "nnunetv2",
        "--dataset-id",
        "7",
    ]
    assert main(args) == 0
    folder = raw / "Dataset007_Hippo-2"
    assert f"exported 3 approved case(s) to {folder}" in capsys.readouterr().out
    content = json.loads((folder / "dataset.json").read_text())
    assert content["channel_names"] == {"0": "MRI"}
    assert content["labels"] == {"background": 0, "Anterior": 1, "Posterior": 2}
    assert content["numTraining"] == 3 and content["file_ending"] == ".nii.gz"
    cases = approved_store.case_ids()[:3]
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in cases]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in cases]
    assert (folder / "imagesTs").is_dir() and not any((folder / "imagesTs").iterdir())
    for c in cases:
        assert (folder / "imagesTr" / f"{c}_0000.nii.gz").read_bytes() == approved_store.image_path(
            c
        ).read_bytes()
        np.testing.assert_array_equal(
            np.asarray(nib.load(folder / "labelsTr" / f"{c}.nii.gz").dataobj),
            approved_store.load_label(c).array,
        )
    assert not any(p.name.startswith(".") for p in raw.iterdir())  # no partial folder left behind

    with pytest.raises(StoreError, match="already holds dataset id 7"):
        export_nnunet(approved_store, raw, 7)
    with pytest.raises(StoreError, match="1 to 999"):
        export_nnunet(approved_store, raw, 1000)
    with pytest.raises(StoreError, match="outside the store"):
        export_nnunet(approved_store, approved_store.root / "x", 8)
    assert main(["store", "export", str(approved_store.root), str(tmp_path / "m"), "--dataset-id", "3"]) == 2


def test_label_values_with_gaps_are_renumbered_for_nnunet(tmp_path, hippo_cases):
    root = tmp_path / "s"
    store = CaseStore.init(root, name="Gaps", labels={0: "background", 1: "Anterior", 5: "Posterior"})
    image, label = hippo_cases[0]
    case = store.import_case(image, author="importer")
    original = np.asarray(nib.load(label).dataobj)
    store.save_version(case, np.where(original == 2, 5, original), author="alice", parent=None)
    store.set_status(case, "approved", "rad")
    done = export_nnunet(store, tmp_path / "raw", 12)
    assert done.relabel == {0: 0, 1: 1, 5: 2}
    assert json.loads((done.folder / "dataset.json").read_text())["labels"] == {
        "background": 0,
        "Anterior": 1,
        "Posterior": 2,
    }
    exported = nib.load(done.folder / "labelsTr" / f"{case}.nii.gz")
    np.testing.assert_array_equal(np.asarray(exported.dataobj), original)
    np.testing.assert_allclose(exported.affine, nib.load(store.image_path(case)).affine)


def test_store_without_approved_cases_is_refused(tmp_path, hippo_cases):
    store = CaseStore.init(tmp_path / "s", labels={0: "background", 1: "A"})
    store.import_case(hippo_cases[0][0], author="importer")
    with pytest.raises(StoreError, match="no case is approved"):
        export_nnunet(store, tmp_path / "raw", 1)


def test_dataset_folder_name_keeps_one_underscore():
    assert dataset_folder_name(3, "my liver_set!") == "Dataset003_my-liver-set"


@pytest.mark.slow_tools
def test_nnunet_export_passes_nnunets_integrity_check(approved_store, nnunet_env):
    verify = _verify()
    done = export_nnunet(approved_store, nnunet_env["nnUNet_raw"], 9)
    verify(str(done.folder), num_processes=1)  # raises (AssertionError/RuntimeError) on any problem


@pytest.mark.slow_tools
def test_msd_export_converts_with_nnunets_msd_converter(approved_store, nnunet_env, tmp_path):
    verify = _verify()
    from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset

    msd_dir = approved_store.export(tmp_path / "Task05_Hippo")
    convert_msd_dataset(str(msd_dir), num_processes=1)
    converted = nnunet_env["nnUNet_raw"] / "Dataset005_Hippo"
    assert len(list((converted / "imagesTr").glob("*_0000.nii.gz"))) == 3
    verify(str(converted), num_processes=1)


def test_msd_export_has_what_nnunets_msd_converter_needs(approved_store, tmp_path, capsys):
    out = tmp_path / "Task05_Hippo"
    assert main(["store", "export", str(approved_store.root), str(out)]) == 0
    assert "note:" not in capsys.readouterr().out
    assert (out / "imagesTs").is_dir()
    content = json.loads((out / "dataset.json").read_text())
    assert content["labels"] == {"0": "background", "1": "Anterior", "2": "Posterior"}  # store calls 0 "bg"
    assert main(["store", "export", str(approved_store.root), str(tmp_path / "approved")]) == 0
    assert "TaskNN_Name" in capsys.readouterr().out
