"""Fill holes (napari_medseg.editing.holes) on real hippocampus labels."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from napari_medseg.editing import fill_holes


def _labels(path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj).astype(np.uint8)


def _interior(mask: np.ndarray) -> np.ndarray:
    """Voxels whose full 3x3x3 neighbourhood lies inside ``mask``."""
    return ndimage.binary_erosion(mask, structure=np.ones((3, 3, 3), bool))


def test_planted_holes_are_filled_with_the_enclosing_class(hippo_cases):
    for _, label_path in hippo_cases[:4]:
        original = _labels(label_path)
        holed = original.copy()
        planted = np.zeros(original.shape, dtype=bool)
        for class_id in (1, 2):
            inner = np.argwhere(_interior(original == class_id))
            assert len(inner) > 0
            for i, j, k in inner[:: max(1, len(inner) // 3)][:3]:
                planted[i, j, k] = True
                holed[i, j, k] = 0
        before = holed.copy()

        filled, changed = fill_holes(holed)

        assert np.array_equal(holed, before), "the input array must not be modified"
        assert np.array_equal(filled[planted], original[planted])
        assert changed >= np.count_nonzero(planted)
        # only background voxels may change, and only into a foreground class
        diff = filled != holed
        assert np.all(holed[diff] == 0) and np.all(filled[diff] > 0)


def test_enclosed_other_class_is_kept_unless_overwrite():
    labels = np.zeros((9, 9, 9), dtype=np.uint8)
    labels[1:8, 1:8, 1:8] = 1
    labels[3:6, 3:6, 3:6] = 0
    labels[4, 4, 4] = 2
    filled, changed = fill_holes(labels, classes=1)
    assert changed == 26 and filled[4, 4, 4] == 2
    swallowed, changed = fill_holes(labels, classes=1, overwrite=True)
    assert changed == 27 and swallowed[4, 4, 4] == 1


def test_slicewise_filling_closes_a_tunnel_that_3d_filling_leaves_open():
    labels = np.zeros((8, 12, 12), dtype=np.int16)
    labels[1:7, 2:10, 2:10] = 2
    labels[:, 5:7, 5:7] = 0  # a tunnel along axis 0, open at both ends
    _, changed_3d = fill_holes(labels)
    assert changed_3d == 0
    filled, changed = fill_holes(labels, axis=0)
    assert changed == 6 * 4
    assert np.all(filled[1:7, 5:7, 5:7] == 2) and np.all(filled[0] == 0)
    _, changed_other_axis = fill_holes(labels, axis=1)
    assert changed_other_axis == 0
