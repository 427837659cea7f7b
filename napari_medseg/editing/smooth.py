"""Smooth label boundaries per class while keeping the set of class ids unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.morphology import ball, disk

from napari_medseg.editing.result import EditResult, check_labels, resolve_classes
from napari_medseg.errors import InputError

SmoothMethod = Literal["majority", "opening", "closing"]
SMOOTH_METHODS: tuple[str, ...] = ("majority", "opening", "closing")


def footprint(ndim: int, radius: int) -> np.ndarray:
    """Boolean ball (3D, ``(2r+1,)*3``) or disk (2D) of ``radius`` voxels from scikit-image."""
    if radius < 1:
        raise InputError(f"The smoothing radius must be at least 1 voxel, got {radius}.")
    if ndim == 3:
        return ball(radius).astype(bool)
    if ndim == 2:
        return disk(radius).astype(bool)
    raise InputError(f"Smoothing works on 2D or 3D label maps, got {ndim} dimensions.")


def _majority(arr: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Per-voxel most frequent label within the footprint (a median filter for categorical labels).

    One class at a time: a running best score keeps memory at two float volumes however many
    classes there are. A tiny bonus for the voxel's current label makes ties keep it.
    """
    weights = fp.astype(np.float32) / fp.sum()
    best_score = np.full(arr.shape, -1.0, dtype=np.float32)
    best_label = arr.copy()
    for class_id in np.unique(arr):
        mask = arr == class_id
        score = ndimage.correlate(mask.astype(np.float32), weights, mode="nearest")
        score[mask] += 1e-4
        better = score > best_score
        best_score[better] = score[better]
        best_label[better] = class_id
    return best_label


def smooth_labels(
    labels: np.ndarray,
    method: SmoothMethod = "majority",
    radius: int = 1,
    classes: int | Sequence[int] | None = None,
) -> EditResult:
    """Smooth class boundaries with a ball of ``radius`` voxels; output ids are a subset of input ids.

    Parameters
    ----------
    labels:
        Label map ``(Z, Y, X)`` (or 2D ``(Y, X)``), integer ids.
    method:
        ``"majority"``: each voxel takes the most frequent label in its neighbourhood (categorical
        median; removes jags and one-voxel spurs, keeps volumes nearly unchanged).
        ``"opening"``: per class, erode then dilate; voxels lost become background (removes thin
        protrusions). ``"closing"``: per class, dilate then erode, painting only background voxels
        (closes small gaps and notches).
    radius:
        Neighbourhood radius in voxels (>= 1).
    classes:
        Class id(s) allowed to change; None means all. With ``"majority"`` a voxel only changes when
        both its old and its new label are among these classes or background.

    Returns
    -------
    EditResult
        New array (same dtype) and the number of voxels whose label changed.
    """
    arr = check_labels(labels)
    if method not in SMOOTH_METHODS:
        raise InputError(f"Unknown smoothing method {method!r}; choose one of {', '.join(SMOOTH_METHODS)}.")
    fp = footprint(arr.ndim, int(radius))
    ids = resolve_classes(arr, classes)
    out = arr.copy()
    if method == "majority":
        voted = _majority(arr, fp)
        allowed = np.array(sorted({0, *ids}))
        editable = np.isin(arr, allowed) & np.isin(voted, allowed)
        out[editable] = voted[editable]
    elif method == "opening":
        for class_id in ids:
            mask = arr == class_id
            out[mask & ~ndimage.binary_opening(mask, structure=fp)] = 0
    else:
        background = arr == 0
        for class_id in ids:
            mask = arr == class_id
            pad = [(radius, radius)] * arr.ndim
            closed = ndimage.binary_closing(np.pad(mask, pad), structure=fp)
            closed = closed[tuple(slice(radius, -radius) for _ in range(arr.ndim))]
            out[closed & ~mask & background & (out == 0)] = class_id
    return EditResult.between(arr, out)
