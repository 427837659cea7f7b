"""Label smoothing (napari_medseg.editing.smooth) on real hippocampus labels."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_medseg.editing import smooth_labels
from napari_medseg.errors import InputError


def _labels(path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def test_majority_smoothing_keeps_class_ids_and_volumes(hippo_cases):
    for _, label_path in hippo_cases[:4]:
        original = _labels(label_path)  # some cases store labels as float32: dtype must be kept
        before = original.copy()

        smoothed, changed = smooth_labels(original, "majority", radius=1)

        assert np.array_equal(original, before), "the input array must not be modified"
        assert smoothed.dtype == original.dtype
        assert 0 < changed == np.count_nonzero(smoothed != original)
        assert set(np.unique(smoothed)) <= set(np.unique(original))
        for class_id in (1, 2):
            v0 = np.count_nonzero(original == class_id)
            v1 = np.count_nonzero(smoothed == class_id)
            assert abs(v1 - v0) / v0 < 0.03


def test_majority_removes_a_one_voxel_spur(hippo_cases):
    original = _labels(hippo_cases[0][1]).astype(np.uint8)
    smoothed, _ = smooth_labels(original, "majority", radius=1)
    # a background voxel with exactly one class-2 face neighbour and background on its other five faces
    cross = ndimage.generate_binary_structure(3, 1)
    n_class2 = ndimage.correlate((smoothed == 2).astype(int), cross.astype(int), mode="constant")
    n_background = ndimage.correlate((smoothed == 0).astype(int), cross.astype(int), mode="constant")
    candidates = np.argwhere((smoothed == 0) & (n_class2 == 1) & (n_background == 6))
    assert len(candidates) > 0
    i, j, k = candidates[0]
    spurred = smoothed.copy()
    spurred[i, j, k] = 2
    again, _ = smooth_labels(spurred, "majority", radius=1)
    assert again[i, j, k] == 0


def test_opening_and_closing_change_only_their_own_direction(hippo_cases):
    original = _labels(hippo_cases[1][1]).astype(np.uint8)
    opened, n_open = smooth_labels(original, "opening", radius=1)
    closed, n_closed = smooth_labels(original, "closing", radius=1)
    assert n_open > 0 and n_closed > 0
    diff_open = opened != original
    assert np.all(opened[diff_open] == 0), "opening only removes voxels"
    diff_closed = closed != original
    assert np.all(original[diff_closed] == 0), "closing only paints background"
    for class_id in (1, 2):
        v0 = np.count_nonzero(original == class_id)
        assert np.count_nonzero(opened == class_id) < v0 <= np.count_nonzero(closed == class_id)


def test_smoothing_restricted_to_one_class_leaves_the_other_alone(hippo_cases):
    original = _labels(hippo_cases[2][1]).astype(np.uint8)
    smoothed, changed = smooth_labels(original, "majority", radius=1, classes=[1])
    assert changed > 0
    assert np.array_equal(smoothed == 2, original == 2)


def test_unknown_method_and_bad_radius_are_refused():
    labels = np.zeros((4, 4, 4), dtype=np.uint8)
    with pytest.raises(InputError, match="Unknown smoothing method"):
        smooth_labels(labels, "gaussian")
    with pytest.raises(InputError, match="radius"):
        smooth_labels(labels, "majority", radius=0)
