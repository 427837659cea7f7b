"""The value every editing tool returns: a new label array and how many voxels it changed."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from napari_medseg.errors import InputError


class EditResult(NamedTuple):
    """Outcome of one correction tool.

    Attributes
    ----------
    labels:
        A new array, same shape and dtype as the input label map; the input is never modified.
    changed:
        Number of voxels whose label differs from the input.

    Being a tuple, it unpacks: ``new, n = fill_holes(labels)``.
    """

    labels: np.ndarray
    changed: int

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray) -> EditResult:
        """Result for ``after`` (a new array) with the count of voxels that differ from ``before``."""
        return cls(after, int(np.count_nonzero(after != before)))


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
