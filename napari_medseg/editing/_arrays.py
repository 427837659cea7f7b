"""Shared argument checks and per-class bounding boxes for the editing tools."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_medseg.errors import InputError


def check_labels(labels: np.ndarray, min_ndim: int = 2) -> np.ndarray:
    """Validate a label map (integer ids, or a float array holding whole numbers) and return it as ndarray."""
    arr = np.asarray(labels)
    if arr.ndim < min_ndim:
        raise InputError(f"The label map must have at least {min_ndim} dimensions, got shape {arr.shape}.")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError("The label map holds non-integer values; label ids must be whole numbers.")
    elif arr.dtype.kind not in "iub":
        raise InputError(f"The label map must be an integer array, got dtype {arr.dtype}.")
    return arr


def check_axis(axis: int, ndim: int) -> int:
    """Normalise ``axis`` (negative allowed) for an array of ``ndim`` dimensions."""
    if not -ndim <= axis < ndim:
        raise InputError(f"Axis {axis} does not exist in a {ndim}-dimensional label map.")
    return axis % ndim


def resolve_classes(labels: np.ndarray, classes: int | list[int] | tuple[int, ...] | None) -> list[int]:
    """Foreground class ids to work on: ``classes`` as a list, or every non-zero id present when None."""
    if classes is None:
        return [int(c) for c in np.unique(labels) if c != 0]
    ids = [int(classes)] if np.isscalar(classes) else [int(c) for c in classes]
    if any(c == 0 for c in ids):
        raise InputError("Class 0 is the background; choose a foreground class id.")
    return ids


def class_boxes(labels: np.ndarray, ids: Sequence[int], margin: int = 0) -> dict[int, tuple[slice, ...]]:
    """Bounding box (tuple of slices) of each class in ``ids`` grown by ``margin`` voxels, clipped to the array.

    Classes absent from ``labels`` are left out. Per-class work on these boxes gives the same result
    as on the whole volume (the class has no voxel outside its box) at a fraction of the cost on
    large scans with small structures.
    """
    arr = np.asarray(labels)
    wanted = [int(c) for c in ids]
    if not wanted:
        return {}
    full = tuple(slice(0, n) for n in arr.shape)
    boxes: dict[int, tuple[slice, ...]] = {}
    positive = [c for c in wanted if c > 0]
    if positive:
        top = max(positive)
        clipped = np.where((arr > 0) & (arr <= top), arr, 0).astype(np.intp, copy=False)
        found = ndimage.find_objects(clipped, max_label=top)
        for c in positive:
            box = found[c - 1]
            if box is not None:
                boxes[c] = tuple(
                    slice(max(0, s.start - margin), min(n, s.stop + margin))
                    for s, n in zip(box, arr.shape, strict=True)
                )
    for c in wanted:
        if c <= 0 and np.any(arr == c):
            boxes[c] = full
    return boxes
