"""Predictions land on the source grid: same shape, affine and voxel order as the scan they came from."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from napari_medseg.inference.engine import predict_volume
from napari_medseg.inference.prediction import write_prediction
from napari_medseg.io import load_volume
from napari_medseg.models.pair import ModelPair
from napari_medseg.models.preprocessing import normalize_intensity


class ThresholdNet(nn.Module):
    """Class 1 where the (normalised) input is above ``level``, else class 0: an exact spatial probe."""

    def __init__(self, level: float = 0.0) -> None:
        super().__init__()
        self.level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 20.0 * (x - self.level)
        return torch.cat([torch.zeros_like(z), z, torch.full_like(z, -50.0)], 1)


def threshold_pair(patch: tuple[int, int, int]) -> ModelPair:
    card = {
        "model_id": "threshold-probe",
        "nets": ["unetr", "bsnet"],
        "classes": {"0": "background", "1": "bright", "2": "unused"},
        "patch_size": list(patch),
        "preprocessing": {"scheme": "zscore"},
        "weights": {"unetr": "0" * 64, "bsnet": "1" * 64},
    }
    return ModelPair({"unetr": ThresholdNet(0.0), "bsnet": ThresholdNet(0.1)}, card)


def expected_labels(array: np.ndarray) -> np.ndarray:
    """The pair's mean foreground probability exceeds 1/2 exactly where z > 0.05 (midway of the levels)."""
    return normalize_intensity(array, "zscore") > 0.05


def check_written(paths, source_shape, source_affine, labels_expected, sform_code=None):
    lab = nib.load(paths["labels"])
    unc = nib.load(paths["uncertainty"])
    for img in (lab, unc):
        assert img.shape == source_shape
        np.testing.assert_allclose(img.affine, source_affine, atol=1e-4)
        if sform_code is not None:
            assert int(img.header["sform_code"]) == sform_code
    assert np.asarray(lab.dataobj).dtype == np.uint8
    got = np.asarray(lab.dataobj)
    agree = (got > 0) == labels_expected
    assert agree.mean() > 0.9999  # only voxels with z within float error of 0.05 may differ
    u = np.asarray(unc.dataobj)
    assert 0.0 <= u.min() and u.max() <= 1.0
    info = json.loads(paths["regions"].read_text())
    assert info["model_id"] == "threshold-probe" and info["shape"] == list(source_shape)


def test_prediction_for_lps_mr_crop_lands_on_its_grid(tmp_path, totalseg_dir):
    src = nib.load(totalseg_dir / "example_mr_sm.nii.gz")
    crop = src.slicer[30:90, 20:61, 4:16]  # 60 x 41 x 12, affine shifted accordingly (still LPS)
    crop_path = tmp_path / "mr_crop.nii.gz"
    nib.save(crop, crop_path)
    source = nib.load(crop_path)
    vol = load_volume(crop_path)
    assert vol.orientation == "LPS"
    pred = predict_volume(vol, threshold_pair((32, 32, 16)), overlap=0.25, device="cpu")
    paths = write_prediction(pred, vol, tmp_path / "out", "mr_crop")
    assert pred.labels.shape == vol.shape
    check_written(
        paths,
        source.shape,
        source.affine,
        expected_labels(np.asarray(source.dataobj)),
        sform_code=int(source.header["sform_code"]),
    )


@pytest.mark.slow
def test_prediction_for_dicom_series_lands_on_the_series_grid(tmp_path, totalseg_dir):
    vol = load_volume(totalseg_dir / "ct_dicom")
    assert vol.shape == (512, 512, 20)
    pred = predict_volume(vol, threshold_pair((256, 256, 32)), overlap=0.25, device="cpu", keep_probs=False)
    paths = write_prediction(pred, vol, tmp_path / "out", "ct")
    reference = nib.load(totalseg_dir / "example_seg_dicom.nii.gz")  # a label map known to be on this grid
    check_written(paths, reference.shape, reference.affine, expected_labels(vol.array))
