"""Remove islands: connected components of a class that are too small (or not the largest)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_medseg.editing._arrays import check_labels, class_boxes, resolve_classes
from napari_medseg.editing.result import EditResult
from napari_medseg.errors import InputError


def component_sizes(mask: np.ndarray, connectivity: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of a boolean mask.

    Returns ``(component_ids, sizes)``: an int32 array shaped like ``mask`` (0 outside, 1..n inside)
    and the voxel count per id (``sizes[0]`` is the count of 0 voxels). ``connectivity`` is 1 (faces),
    2 (faces + edges) or ``mask.ndim`` (full neighbourhood), as in :func:`scipy.ndimage.generate_binary_structure`.
    """
    if not 1 <= connectivity <= mask.ndim:
        raise InputError(f"Connectivity must be between 1 and {mask.ndim}, got {connectivity}.")
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    ids, _ = ndimage.label(mask, structure=structure)
    return ids, np.bincount(ids.ravel())


def remove_islands(
    labels: np.ndarray,
    min_size: int = 10,
    classes: int | Sequence[int] | None = None,
    keep_largest: bool = False,
    connectivity: int = 1,
) -> EditResult:
    """Set to background (0) every connected component of a class smaller than ``min_size`` voxels.

    Parameters
    ----------
    labels:
        Label map (any shape, e.g. ``(Z, Y, X)``), integer ids.
    min_size:
        Components with fewer voxels than this are removed (per class, counted in voxels).
    classes:
        Class id(s) to clean; None means every foreground class present.
    keep_largest:
        Also remove every component of a class except its largest one.
    connectivity:
        Neighbourhood defining "connected": 1 = faces (6 in 3D), up to ``ndim`` = full (26 in 3D).

    Returns
    -------
    EditResult
        New array (same dtype) and the number of voxels set to background.
    """
    arr = check_labels(labels, min_ndim=1)
    if min_size < 0:
        raise InputError(f"The minimum island size must be >= 0 voxels, got {min_size}.")
    out = arr.copy()
    for class_id, box in class_boxes(arr, resolve_classes(arr, classes)).items():
        mask = arr[box] == class_id
        ids, sizes = component_sizes(mask, connectivity)
        sizes[0] = 0
        drop = sizes < min_size
        if keep_largest:
            drop |= np.arange(sizes.size) != int(np.argmax(sizes))
        drop[0] = False
        out[box][drop[ids]] = 0
    return EditResult.between(arr, out)
