"""Synthetic boundary noise changes only voxels near the label boundary, by the stated amounts."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_medseg.training.noise import corrupt_labels, dilate_erode, drop_end_slices, shift_slices


@pytest.fixture(scope="module")
def label(hippo_cases) -> np.ndarray:
    return np.rint(np.asarray(nib.load(hippo_cases[0][1]).dataobj)).astype(np.int64)


def _distance_to_boundary(label: np.ndarray, metric: str) -> np.ndarray:
    """Distance of every voxel to the nearest voxel whose 6-neighbourhood holds another label."""
    changes = np.zeros(label.shape, dtype=bool)
    for ax in range(3):
        d = np.diff(label, axis=ax) != 0
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        changes[tuple(lo)] |= d
        changes[tuple(hi)] |= d
    if metric == "euclidean":
        return ndimage.distance_transform_edt(~changes)
    return ndimage.distance_transform_cdt(~changes, metric="chessboard").astype(float)


@pytest.mark.parametrize("seed", range(4))
def test_dilate_erode_moves_the_boundary_by_at_most_two_voxels(label, seed):
    noisy = dilate_erode(label, np.random.default_rng(seed), max_radius=2)
    changed = noisy != label
    assert changed.any()
    assert _distance_to_boundary(label, "euclidean")[changed].max() <= 2.0 + 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_shifted_slices_change_only_voxels_within_the_shift(label, seed):
    noisy = shift_slices(label, np.random.default_rng(seed), max_shift=2)
    changed = noisy != label
    assert _distance_to_boundary(label, "chessboard")[changed].max(initial=0) <= 2


@pytest.mark.parametrize("seed", range(4))
def test_dropped_end_slices_remove_at_most_two_end_caps_of_one_class(label, seed):
    noisy = drop_end_slices(label, np.random.default_rng(seed), max_slices=2)
    changed = noisy != label
    assert changed.any()
    assert (noisy[changed] == 0).all()
    assert len(np.unique(label[changed])) == 1
    assert _distance_to_boundary(label, "chessboard")[changed].max() <= 2


def test_corrupt_labels_touches_the_seeded_fraction_of_cases(hippo_cases):
    labels = {p.name: np.rint(np.asarray(nib.load(p).dataobj)).astype(np.int64) for _, p in hippo_cases}
    noisy, used = corrupt_labels(labels, 0.5, seed=3)
    again, _ = corrupt_labels(labels, 0.5, seed=3)
    assert len(noisy) == 4 and set(noisy) == set(used) == set(again)
    assert all(np.array_equal(noisy[c], again[c]) for c in noisy)
    assert all(not np.array_equal(noisy[c], labels[c]) for c in noisy)
