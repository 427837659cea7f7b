"""The store and its export are plain MSD folders that nibabel, MONAI (and nnU-Net) read; CLI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from napari_medseg.cli import main
from napari_medseg.errors import StoreError
from napari_medseg.store import CaseStore
from napari_medseg.store.provenance import file_sha256


@pytest.fixture()
def cli_store(tmp_path, hippo_dir):
    root = tmp_path / "store"
    assert (
        main(
            ["store", "init", str(root), "--name", "Hippo", "--labels", "0=background,1=Anterior,2=Posterior"]
        )
        == 0
    )
    assert main(["store", "import", str(root), str(hippo_dir), "--limit", "4", "--author", "importer"]) == 0
    return root


def test_cli_imports_first_n_cases_of_an_msd_folder(cli_store, hippo_dir, capsys):
    store = CaseStore.open(cli_store)
    expected = [
        e["image"].split("/")[-1][:-7]
        for e in json.loads((hippo_dir / "dataset.json").read_text())["training"][:4]
    ]
    assert store.case_ids() == sorted(expected)
    assert store.labels == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert {c.status for c in store.cases()} == {"proposed"}
    store.set_uncertainty(expected[2], 0.9)
    store.set_uncertainty(expected[0], 0.1)
    capsys.readouterr()
    assert main(["store", "list", str(cli_store), "--sort", "uncertainty"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["case", "status", "versions", "last", "editor", "lock", "uncertainty"]
    assert lines[1].startswith(expected[2]) and "0.900" in lines[1] and "importer" in lines[1]
    assert lines[2].startswith(expected[0])


def test_export_of_approved_labels_is_read_by_nibabel_and_monai(cli_store, tmp_path, capsys):
    store = CaseStore.open(cli_store)
    a, b, c, _ = store.case_ids()
    edited = store.load_label(a).array.copy()
    edited.reshape(-1)[:25] = 2
    store.save_version(a, edited, author="alice", parent=1)
    assert main(["store", "status", str(cli_store), a, "approved", "--author", "rad", "--comment", "ok"]) == 0
    assert main(["store", "status", str(cli_store), b, "approved", "--author", "rad"]) == 0
    assert main(["store", "status", str(cli_store), c, "--comment", "needs work", "--author", "rad"]) == 0
    out = tmp_path / "export"
    assert main(["store", "export", str(cli_store), str(out)]) == 0
    assert "exported 2 approved case(s)" in capsys.readouterr().out

    items = load_decathlon_datalist(str(out / "dataset.json"), True, "training")
    assert sorted(i["image"].split("/")[-1] for i in items) == [f"{a}.nii.gz", f"{b}.nii.gz"]
    for item in items:
        img, lab = nib.load(item["image"]), nib.load(item["label"])
        assert img.shape == lab.shape
        np.testing.assert_allclose(img.affine, lab.affine)
    exported_a = np.asarray(nib.load(out / "labelsTr" / f"{a}.nii.gz").dataobj)
    np.testing.assert_array_equal(exported_a, edited)
    # the store folder itself is readable the same way
    own = load_decathlon_datalist(str(cli_store / "dataset.json"), True, "training")
    assert len(own) == 2 and all(nib.load(i["label"]).shape == nib.load(i["image"]).shape for i in own)

    with pytest.raises(StoreError, match="not empty"):
        store.export(out)
    with pytest.raises(StoreError, match="outside the store"):
        store.export(cli_store / "inside")


def test_history_shows_versions_provenance_and_comments(cli_store, capsys):
    store = CaseStore.open(cli_store)
    case = store.case_ids()[0]
    labels = store.load_label(case).array
    store.save_version(case, labels, author="unetr", source="model:unetr@abc123", is_proposal=True)
    fixed = labels.copy()
    fixed.reshape(-1)[:7] = 1
    store.save_version(case, fixed, author="alice", parent=2, note="corner")
    store.comment(case, "rad", "needs work")
    capsys.readouterr()
    assert main(["store", "history", str(cli_store), case]) == 0
    out = capsys.readouterr().out
    assert "v2" in out and "model:unetr@abc123" in out and "proposal" in out
    assert "v3" in out and "alice" in out and "from v2" in out and "7 voxels changed" in out
    assert "Dice vs proposal" in out and "note: corner" in out and "comment needs work" in out


def test_check_reports_and_cleans_leftovers_of_an_interrupted_save(cli_store, capsys):
    store = CaseStore.open(cli_store)
    case = store.case_ids()[0]
    vdir = cli_store / ".medseg" / "versions" / case
    (vdir / "2.nii.gz").write_bytes(b"orphan")
    (vdir / ".tmp-abc.nii.gz").write_bytes(b"partial")
    assert main(["store", "check", str(cli_store)]) == 1
    out = capsys.readouterr().out
    assert "orphan version file" in out and "temporary file" in out
    assert main(["store", "check", str(cli_store), "--clean"]) == 0
    assert not (vdir / ".tmp-abc.nii.gz").exists() and not (vdir / "2.nii.gz").exists()
    assert store.check().ok
    assert file_sha256(store.version(case, 1).path) == store.version(case, 1).file_sha256


@pytest.mark.parametrize("action", ["init", "import", "list", "history", "status", "export", "check"])
def test_every_store_command_has_readable_help(action, capsys):
    with pytest.raises(SystemExit) as done:
        main(["store", action, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: napari-medseg store " + action) and len(out.splitlines()) > 4


def test_bad_label_list_on_init_is_explained(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["store", "init", str(tmp_path / "s"), "--labels", "background,1=Tumour"])
    assert "VALUE=NAME" in capsys.readouterr().err


def test_cli_imports_single_files_with_their_labels_as_approved(tmp_path, hippo_cases):
    root = tmp_path / "s"
    assert main(["store", "init", str(root), "--labels", "0=background,1=Anterior,2=Posterior"]) == 0
    (img1, lab1), (img2, lab2) = hippo_cases[:2]
    args = [
        "store",
        "import",
        str(root),
        str(img1),
        str(img2),
        "--labels",
        str(lab1),
        str(lab2),
        "--approved",
    ]
    assert main(args) == 0
    store = CaseStore.open(root)
    assert [c.status for c in store.cases()] == ["approved", "approved"]
    assert len(load_decathlon_datalist(str(root / "dataset.json"), True, "training")) == 2
    assert main(["store", "import", str(root), str(hippo_cases[2][0]), "--labels", str(lab1), str(lab2)]) == 2
