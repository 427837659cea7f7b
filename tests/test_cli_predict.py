"""``napari-medseg predict``: files on the source grid, and proposals with provenance in a case store."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from napari_medseg.cli import main
from napari_medseg.models.factory import build_network
from napari_medseg.models.pair import ModelPair


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A random-init pair with the real architectures, small widths, saved like a trained one."""
    torch.manual_seed(0)
    nets = {
        "unetr": build_network(
            "unetr",
            {"img_size": (48, 64, 48), "feature_size": 4, "hidden_size": 32, "mlp_dim": 64, "num_heads": 2},
        ),
        "bsnet": build_network("bsnet", {"filters": (4, 8, 16)}),
    }
    return ModelPair.from_nets(nets, "tiny-cli").save(tmp_path_factory.mktemp("model"))


def test_predict_writes_labels_uncertainty_and_regions_on_the_source_grid(
    tmp_path, tiny_model_dir, hippo_cases, capsys
):
    image = hippo_cases[0][0]
    out = tmp_path / "out"
    rc = main(["predict", str(image), "--model", str(tiny_model_dir), "--out", str(out), "--device", "cpu"])
    assert rc == 0
    case = image.name.removesuffix(".nii.gz")
    src = nib.load(image)
    for suffix in ("label", "uncertainty"):
        img = nib.load(out / f"{case}_{suffix}.nii.gz")
        assert img.shape == src.shape
        np.testing.assert_allclose(img.affine, src.affine, atol=1e-5)
    info = json.loads((out / f"{case}_regions.json").read_text())
    assert info["model_id"] == "tiny-cli" and info["net"] == "pair" and info["method"] == "entropy"
    scores = [r["score"] for r in info["regions"]]
    assert scores == sorted(scores, reverse=True)
    assert case in capsys.readouterr().out
    # the positions say what they are, and ITK (LPS) puts each region's voxel where the LPS centroid says
    assert "RAS" in info["coordinate_systems"]["centroid_mm"]
    assert "LPS" in info["coordinate_systems"]["centroid_lps_mm"]
    itk = sitk.ReadImage(str(out / f"{case}_uncertainty.nii.gz"))
    assert info["regions"]
    for region in info["regions"]:
        lps = itk.TransformContinuousIndexToPhysicalPoint([float(v) for v in region["centroid_voxel"]])
        np.testing.assert_allclose(region["centroid_lps_mm"], lps, atol=1e-3)
        ras = np.array(region["centroid_mm"])
        np.testing.assert_allclose(region["centroid_lps_mm"], ras * [-1, -1, 1], atol=1e-9)


def test_predict_with_one_net_writes_entropy_uncertainty(tmp_path, tiny_model_dir, hippo_cases):
    image = hippo_cases[1][0]
    rc = main(
        ["predict", str(image), "--model", str(tiny_model_dir), "--net", "bsnet", "--out", str(tmp_path)]
    )
    assert rc == 0
    info = json.loads(next(tmp_path.glob("*_regions.json")).read_text())
    assert info["net"] == "bsnet" and info["method"] == "entropy"


def test_predict_without_model_or_output_is_a_clear_error(tmp_path, hippo_cases, capsys):
    assert main(["predict", str(hippo_cases[0][0]), "--model", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no model pair" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path)]) == 2
    assert main(["predict", str(hippo_cases[0][0]), "--model", str(tmp_path)]) == 2


def test_predict_store_proposes_every_case_without_a_proposal(tmp_path, tiny_model_dir, hippo_cases):
    from napari_medseg.store import CaseStore

    store = CaseStore.init(tmp_path / "store", labels={0: "background", 1: "anterior", 2: "posterior"})
    ids = [store.import_case(img) for img, _lab in hippo_cases[:2]]
    store.import_case(hippo_cases[2][0], hippo_cases[2][1], approved=True)  # approved, no proposal yet
    rc = main(
        ["predict", "--store", str(tmp_path / "store"), "--model", str(tiny_model_dir), "--device", "cpu"]
    )
    assert rc == 0

    store = CaseStore.open(tmp_path / "store")
    pair = ModelPair.load(tiny_model_dir)
    for case in ids:
        versions = store.versions(case)
        assert len(versions) == 1
        v = versions[0]
        assert v.is_proposal and v.author == "model"
        assert v.source == f"model:tiny-cli@{pair.checkpoint_hash}"
        info = store.case(case)
        assert info.status == "proposed"
        assert info.uncertainty is not None and info.uncertainty >= 0.0
        label = store.load_label(case)
        assert label.shape == store.load_image(case).shape
    approved = store.case_ids()[2]
    assert store.case(approved).status == "approved"
    assert store.proposal(approved) is None  # a person's label stays the case's label: no proposal over it

    before = {c: len(store.versions(c)) for c in store.case_ids()}
    assert main(["predict", "--store", str(tmp_path / "store"), "--model", str(tiny_model_dir)]) == 0
    store = CaseStore.open(tmp_path / "store")
    assert {c: len(store.versions(c)) for c in store.case_ids()} == before  # nothing left to propose


def test_predict_refuses_a_ct_for_a_hippocampus_model_unless_insisted_and_prints_json(
    tmp_path, tiny_model_dir, capsys
):
    from conftest import SHARED_DATA

    from napari_medseg.io import load_volume, save_volume
    from napari_medseg.io.volume import Volume

    ct = SHARED_DATA / "ibsi-sts-ct" / "imagesTr" / "sts_002.nii.gz"
    if not ct.exists():
        pytest.skip(f"real data not found at {ct}")
    full = load_volume(ct)  # a corner of the real CT keeps the run short
    corner = save_volume(
        Volume(np.ascontiguousarray(full.array[:64, :64, :16]), full.affine.copy(), modality="CT"),
        tmp_path / "ct.nii.gz",
    )
    args = ["predict", str(corner), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o")]
    model = ModelPair.load(tiny_model_dir)
    model.card["domain"] = {"modality": "MR", "spacing_mm": [1, 1], "fov_mm": [[24, 41], [32, 47], [40, 59]]}
    (tiny_model_dir / "pair.json").write_text(json.dumps(model.card))
    try:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "outside tiny-cli's training domain (CT image, trained on MR" in err[0]
        assert "--outside-domain" in err[0]
        assert main([*args, "--outside-domain", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        (case,) = out["cases"]
        assert case["inside_domain"] is False and set(case["voxels"]) == {"anterior", "posterior"}
    finally:
        del model.card["domain"]
        (tiny_model_dir / "pair.json").write_text(json.dumps(model.card))
