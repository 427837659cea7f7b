"""Remove islands (napari_medseg.editing.islands) on real hippocampus labels."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from napari_medseg.editing import remove_islands
from napari_medseg.editing.islands import component_sizes


def _labels(path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj).astype(np.uint8)


def _far_background(labels: np.ndarray, margin: int = 3) -> np.ndarray:
    """Background voxels at least ``margin`` voxels from any foreground and from the volume border."""
    far = ndimage.distance_transform_edt(labels == 0) > margin
    far[:margin] = far[-margin:] = False
    far[:, :margin] = far[:, -margin:] = False
    far[:, :, :margin] = far[:, :, -margin:] = False
    return far


def test_planted_small_islands_are_removed_and_large_structures_kept(hippo_cases):
    for _, label_path in hippo_cases[:3]:
        original = _labels(label_path)
        planted = original.copy()
        spots = np.argwhere(_far_background(original))
        rng = np.random.default_rng(0)
        chosen = spots[rng.choice(len(spots), size=6, replace=False)]
        island = np.zeros_like(planted, dtype=bool)
        for n, (i, j, k) in enumerate(chosen):
            island[i, j : j + 2, k] = True  # a 2-voxel island
            planted[i, j : j + 2, k] = 1 + n % 2
        before = planted.copy()

        cleaned, changed = remove_islands(planted, min_size=5)

        assert np.array_equal(planted, before), "the input array must not be modified"
        assert np.all(cleaned[island] == 0)
        assert changed >= np.count_nonzero(island)
        for class_id in (1, 2):
            ids, sizes = component_sizes(original == class_id)
            sizes[0] = 0
            big = (sizes >= 5)[ids]
            assert big.any()
            assert np.all(cleaned[big] == class_id), "components of >= 5 voxels must survive"


def test_keep_largest_leaves_one_component_per_class(hippo_cases):
    original = _labels(hippo_cases[1][1])
    planted = original.copy()
    far = np.argwhere(_far_background(original))
    i, j, k = far[len(far) // 2]
    planted[i - 1 : i + 2, j - 1 : j + 2, k - 1 : k + 2] = 2  # a 27-voxel second component

    kept, changed = remove_islands(planted, min_size=0, keep_largest=True)

    assert changed >= 27
    for class_id in (1, 2):
        _, n = ndimage.label(kept == class_id)
        assert n == 1
        ids, sizes = component_sizes(original == class_id)
        sizes[0] = 0
        largest = ids == np.argmax(sizes)
        assert np.all(kept[largest] == class_id)


def test_only_the_chosen_class_is_cleaned():
    labels = np.zeros((10, 10, 10), dtype=np.int32)
    labels[1, 1, 1] = 1
    labels[8, 8, 8] = 2
    cleaned, changed = remove_islands(labels, min_size=2, classes=[2])
    assert changed == 1
    assert cleaned[1, 1, 1] == 1 and cleaned[8, 8, 8] == 0
