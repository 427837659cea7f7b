"""Fill between slices (napari_medseg.editing.interpolate) on real hippocampus labels."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.editing import interpolate_slices, labelled_slices
from napari_medseg.errors import InputError


def _labels(path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj).astype(np.uint8)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("class_id", [1, 2])
def test_deleted_slices_are_recovered_between_two_key_slices(hippo_cases, class_id):
    for _, label_path in hippo_cases[:4]:
        original = _labels(label_path)
        erased = original.copy()
        block = erased[10:15]  # slices 10..14 along axis 0
        block[block == class_id] = 0
        before = erased.copy()

        new, changed = interpolate_slices(erased, class_id, axis=0, start=9, stop=15)

        assert np.array_equal(erased, before), "the input array must not be modified"
        assert changed == np.count_nonzero(new != erased) > 0
        assert _dice(new[10:15] == class_id, original[10:15] == class_id) > 0.8
        # nothing outside the gap and no other class is touched
        assert np.array_equal(new[:10], erased[:10]) and np.array_equal(new[15:], erased[15:])
        other = erased != 0
        assert np.array_equal(new[other], erased[other])


def test_all_gaps_between_sparse_key_slices_are_filled(hippo_cases):
    original = _labels(hippo_cases[0][1])
    axis, class_id = 2, 1
    present = labelled_slices(original, class_id, axis)
    sparse = original.copy()
    for s in present[1:-1]:
        if (s - present[0]) % 3:
            plane = sparse[:, :, s]
            plane[plane == class_id] = 0
    assert labelled_slices(sparse, class_id, axis).size < present.size

    new, changed = interpolate_slices(sparse, class_id, axis=axis)

    assert changed > 0
    assert np.array_equal(labelled_slices(new, class_id, axis), present)
    assert _dice(new == class_id, original == class_id) > 0.9


def test_interpolation_reproduces_the_key_shape_between_identical_slices():
    labels = np.zeros((7, 20, 20), dtype=np.int16)
    labels[0, 5:12, 4:15] = 3
    labels[6, 5:12, 4:15] = 3
    new, changed = interpolate_slices(labels, 3, axis=0)
    assert changed == 5 * 7 * 11
    assert np.all(new[1:6, 5:12, 4:15] == 3)
    assert new.dtype == labels.dtype


def test_overwrite_lets_the_shape_replace_other_classes():
    labels = np.zeros((5, 10, 10), dtype=np.uint8)
    labels[0, 2:8, 2:8] = 1
    labels[4, 2:8, 2:8] = 1
    labels[2, 4:6, 4:6] = 2
    kept, _ = interpolate_slices(labels, 1, axis=0)
    replaced, _ = interpolate_slices(labels, 1, axis=0, overwrite=True)
    assert np.all(kept[2, 4:6, 4:6] == 2)
    assert np.all(replaced[2, 4:6, 4:6] == 1)


def test_a_bounding_slice_without_the_class_is_refused(hippo_cases):
    labels = _labels(hippo_cases[0][1])
    present = labelled_slices(labels, 1, 0)
    with pytest.raises(InputError, match="no voxel of class 1"):
        interpolate_slices(labels, 1, axis=0, start=int(present[0]) - 1, stop=int(present[-1]))
    with pytest.raises(InputError, match="both"):
        interpolate_slices(labels, 1, axis=0, start=int(present[0]))
    with pytest.raises(InputError, match="background"):
        interpolate_slices(labels, 0, axis=0)
    with pytest.raises(InputError, match="Axis 3"):
        interpolate_slices(labels, 1, axis=3)
