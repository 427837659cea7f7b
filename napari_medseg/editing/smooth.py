"""Smooth label boundaries per class while keeping the set of class ids unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.morphology import ball, disk

from napari_medseg.editing._arrays import check_labels, class_boxes, resolve_classes
from napari_medseg.editing.result import EditResult
from napari_medseg.errors import InputError

SmoothMethod = Literal["majority", "opening", "closing"]
SMOOTH_METHODS: tuple[str, ...] = ("majority", "opening", "closing")
_TIE_BONUS = np.float32(1e-4)


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

    Foreground classes are scored one at a time on their bounding box grown by the footprint
    radius; background's share is what the foreground shares leave (the window fractions of all
    labels sum to 1). Memory stays at a few volumes however many classes there are. A tiny bonus
    for the voxel's current label makes ties keep it.
    """
    weights = fp.astype(np.float32) / np.float32(fp.sum())
    radius = fp.shape[0] // 2
    best_score = np.full(arr.shape, -1.0, dtype=np.float32)
    best_label = arr.copy()
    foreground_share = np.zeros(arr.shape, dtype=np.float32)
    for class_id, box in class_boxes(arr, [c for c in np.unique(arr) if c != 0], margin=radius).items():
        mask = arr[box] == class_id
        score = ndimage.correlate(mask.astype(np.float32), weights, mode="nearest")
        foreground_share[box] += score
        score[mask] += _TIE_BONUS
        box_score, box_label = best_score[box], best_label[box]  # views into the full arrays
        better = score > box_score
        box_score[better] = score[better]
        box_label[better] = class_id
    background = 1.0 - foreground_share
    background[arr == 0] += _TIE_BONUS
    best_label[background > best_score] = 0
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
        for class_id, box in class_boxes(arr, ids, margin=radius).items():
            mask = arr[box] == class_id
            out[box][mask & ~ndimage.binary_opening(mask, structure=fp)] = 0
    else:
        for class_id, box in class_boxes(arr, ids, margin=radius).items():
            region = arr[box]
            mask = region == class_id
            pad = [(radius, radius)] * arr.ndim
            closed = ndimage.binary_closing(np.pad(mask, pad), structure=fp)
            closed = closed[tuple(slice(radius, -radius) for _ in range(arr.ndim))]
            target = out[box]
            target[closed & ~mask & (region == 0) & (target == 0)] = class_id
    return EditResult.between(arr, out)
