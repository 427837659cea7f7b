"""Fill holes: background pockets fully enclosed by one class, in 3D or slice by slice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_medseg.editing._arrays import check_axis, check_labels, class_boxes, resolve_classes
from napari_medseg.editing.result import EditResult


def _filled(mask: np.ndarray, axis: int | None) -> np.ndarray:
    """``mask`` with its enclosed holes filled, in nD or independently in each slice along ``axis``."""
    if axis is None:
        return ndimage.binary_fill_holes(mask)
    out = np.moveaxis(np.zeros_like(mask), axis, 0)
    for s, plane in enumerate(np.moveaxis(mask, axis, 0)):
        if plane.any():
            out[s] = ndimage.binary_fill_holes(plane)
    return np.moveaxis(out, 0, axis)


def fill_holes(
    labels: np.ndarray,
    classes: int | Sequence[int] | None = None,
    axis: int | None = None,
    overwrite: bool = False,
) -> EditResult:
    """Fill the holes of each class: voxels enclosed by the class (not connected to the outside).

    Parameters
    ----------
    labels:
        Label map, ``(Z, Y, X)`` or any shape with >= 2 dims, integer ids.
    classes:
        Class id(s) to fill; None means every foreground class present.
    axis:
        None fills holes in full 3D (a hole must be enclosed in every direction); an axis index
        fills the 2D holes of each slice along that axis (catches holes open at the slab's ends).
    overwrite:
        If False (default) only background voxels are filled; if True a hole also swallows other
        classes enclosed by the class.

    Returns
    -------
    EditResult
        New array (same dtype) and the number of voxels filled.

    Notes
    -----
    Classes are processed from the largest filled region to the smallest, so a hole enclosed by
    two nested classes goes to the inner (smaller) one.
    """
    arr = check_labels(labels)
    if axis is not None:
        axis = check_axis(axis, arr.ndim)
    holes = []
    for class_id, box in class_boxes(arr, resolve_classes(arr, classes)).items():
        region = arr[box]
        mask = region == class_id
        filled = _filled(mask, axis)
        hole = filled & ~mask
        if not overwrite:
            hole &= region == 0
        holes.append((int(np.count_nonzero(filled)), class_id, box, hole))
    out = arr.copy()
    for _, class_id, box, hole in sorted(holes, key=lambda h: -h[0]):
        out[box][hole] = class_id
    return EditResult.between(arr, out)
