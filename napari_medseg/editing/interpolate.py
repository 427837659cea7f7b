"""Fill between slices: shape-based interpolation of one class along one axis.

An annotator draws a class on a few key slices; the slices in between are filled by blending the
signed distance maps of the two nearest labelled slices (Raya & Udupa's shape-based interpolation):
for a slice at fraction ``t`` of the way from slice ``a`` to slice ``b`` the class covers the voxels
where ``(1 - t) * sd_a + t * sd_b < 0`` (``sd`` negative inside the shape, in mm when ``spacing`` is
given). The shape therefore morphs smoothly from one key slice to the next.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_medseg.editing._arrays import check_axis, check_labels
from napari_medseg.editing.result import EditResult
from napari_medseg.errors import InputError


def labelled_slices(labels: np.ndarray, class_id: int, axis: int) -> np.ndarray:
    """Indices (ascending, int) of the slices along ``axis`` that contain at least one ``class_id`` voxel."""
    arr = check_labels(labels)
    axis = check_axis(axis, arr.ndim)
    other = tuple(d for d in range(arr.ndim) if d != axis)
    return np.flatnonzero(np.any(arr == class_id, axis=other))


def signed_distance(mask: np.ndarray, sampling: Sequence[float] | None = None) -> np.ndarray:
    """Signed distance (float64, same shape as ``mask``): negative inside, positive outside, in voxels or mm.

    Inside voxels get minus their distance to the nearest outside voxel and vice versa, so the zero
    level lies on the boundary. The mask is padded by one background voxel so that a shape touching
    or filling the whole slice still has a finite distance map.
    """
    padded = np.pad(mask.astype(bool), 1, constant_values=False)
    inside = ndimage.distance_transform_edt(padded, sampling=sampling)
    outside = ndimage.distance_transform_edt(~padded, sampling=sampling)
    core = tuple(slice(1, -1) for _ in range(padded.ndim))
    return (outside - inside)[core]


def interpolate_slices(
    labels: np.ndarray,
    class_id: int,
    axis: int = 0,
    start: int | None = None,
    stop: int | None = None,
    overwrite: bool = False,
    spacing: Sequence[float] | None = None,
) -> EditResult:
    """Fill the slices of ``class_id`` between labelled slices along ``axis`` by shape interpolation.

    Parameters
    ----------
    labels:
        Label map, any shape with >= 2 dims (e.g. ``(Z, Y, X)`` in display order), integer ids.
    class_id:
        Foreground class to interpolate (not 0).
    axis:
        Axis along which slices are taken (the slider axis in napari).
    start, stop:
        Two slice indices that both contain ``class_id``: only the slices strictly between them are
        filled. Leave both None to fill every gap between consecutive labelled slices.
    overwrite:
        If False (default) only background (0) voxels are painted, so other classes are never
        touched; if True the interpolated shape also replaces other classes' voxels.
    spacing:
        Voxel size per axis (mm), used for the in-plane distance maps; None means isotropic.

    Returns
    -------
    EditResult
        New array (same dtype) and the number of voxels painted. Interpolation only adds
        ``class_id`` voxels; it never erases existing ones.

    Raises
    ------
    InputError
        Bad axis/class, only one of start/stop given, or a bounding slice without the class.
    """
    arr = check_labels(labels)
    axis = check_axis(axis, arr.ndim)
    class_id = int(class_id)
    if class_id == 0:
        raise InputError("Class 0 is the background; choose a foreground class to interpolate.")
    if spacing is not None and len(spacing) != arr.ndim:
        raise InputError(f"Spacing needs {arr.ndim} values (one per axis), got {len(spacing)}.")
    sampling = None if spacing is None else [float(s) for i, s in enumerate(spacing) if i != axis]

    present = labelled_slices(arr, class_id, axis)
    if start is None and stop is None:
        if present.size < 2:
            raise InputError(
                f"Class {class_id} is drawn on {present.size} slice(s) along axis {axis}; "
                "fill between slices needs at least two."
            )
        pairs = [(int(a), int(b)) for a, b in zip(present[:-1], present[1:], strict=True) if b - a > 1]
    elif start is None or stop is None:
        raise InputError("Give both the first and the last slice to fill between, or neither.")
    else:
        a, b = sorted((int(start), int(stop)))
        n = arr.shape[axis]
        for s in (a, b):
            if not 0 <= s < n:
                raise InputError(f"Slice {s} is outside the volume (axis {axis} has {n} slices).")
            if s not in present:
                raise InputError(f"Slice {s} along axis {axis} contains no voxel of class {class_id}.")
        pairs = [(a, b)] if b - a > 1 else []

    out = arr.copy()
    moved = np.moveaxis(out, axis, 0)  # a view: writing into it writes into ``out``
    original = np.moveaxis(arr, axis, 0)
    for a, b in pairs:
        key_a, key_b = original[a] == class_id, original[b] == class_id
        # the blended shape never leaves the bounding box of the two key shapes: work there only
        (box,) = ndimage.find_objects((key_a | key_b).astype(np.int8))
        sd_a = signed_distance(key_a[box], sampling)
        sd_b = signed_distance(key_b[box], sampling)
        for s in range(a + 1, b):
            t = (s - a) / (b - a)
            shape = (1.0 - t) * sd_a + t * sd_b < 0
            target = shape if overwrite else shape & (original[s][box] == 0)
            moved[s][box][target] = class_id
    return EditResult.between(arr, out)
