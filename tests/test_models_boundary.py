"""Boundary targets and boundary band on real hippocampus labels, against a scipy reference."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_medseg.models.boundary import boundary_band, boundary_targets


@pytest.fixture(scope="module")
def real_label(hippo_cases) -> np.ndarray:
    return np.rint(np.asarray(nib.load(hippo_cases[0][1]).dataobj)).astype(np.int64)


def neighbourhood_changes(label: np.ndarray) -> np.ndarray:
    """Brute force: True where any voxel of the 3x3x3 neighbourhood (inside the volume) differs."""
    padded = np.pad(label, 1, mode="edge")  # edge copies never differ from the centre's row
    out = np.zeros(label.shape, bool)
    d, h, w = label.shape
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                out |= padded[dz : dz + d, dy : dy + h, dx : dx + w] != label
    return out


def test_boundary_voxels_are_exactly_where_the_label_changes_in_the_3x3x3_neighbourhood(real_label):
    bnd = boundary_targets(torch.from_numpy(real_label)[None])
    assert bnd.shape == (1, 1, *real_label.shape) and bnd.dtype == torch.float32
    expected = neighbourhood_changes(real_label)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(bnd[0, 0].numpy().astype(bool), expected)


def test_boundary_includes_both_sides_and_the_anterior_posterior_interface(real_label):
    bnd = boundary_targets(torch.from_numpy(real_label)[None])[0, 0].numpy().astype(bool)
    for value in (0, 1, 2):
        assert (bnd & (real_label == value)).any()
    # an anterior voxel touching posterior is a boundary voxel although it is not next to background
    touches_posterior = ndimage.binary_dilation(real_label == 2, np.ones((3, 3, 3))) & (real_label == 1)
    assert bnd[touches_posterior].all()


def test_uniform_labels_and_volume_edges_are_not_boundaries():
    labels = torch.ones(2, 5, 6, 7, dtype=torch.long)
    assert boundary_targets(labels).sum() == 0
    assert boundary_targets(labels[:, None]).shape == (2, 1, 5, 6, 7)


def test_band_of_width_zero_is_the_boundary_and_wider_bands_dilate_it(real_label):
    labels = torch.from_numpy(real_label)[None]
    bnd = boundary_targets(labels)[0, 0].numpy().astype(bool)
    band0, band2 = boundary_band(labels, 0), boundary_band(labels, 2)
    assert band0.dtype == torch.bool and band0.shape == (1, 1, *real_label.shape)
    np.testing.assert_array_equal(band0[0, 0].numpy(), bnd)
    np.testing.assert_array_equal(band2[0, 0].numpy(), ndimage.binary_dilation(bnd, np.ones((5, 5, 5))))


def test_negative_band_width_and_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="band width"):
        boundary_band(torch.zeros(1, 4, 4, 4, dtype=torch.long), -1)
    with pytest.raises(ValueError, match=r"\(B, D, H, W\)"):
        boundary_targets(torch.zeros(4, 4, 4, dtype=torch.long))
