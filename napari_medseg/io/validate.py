"""Checks that turn unusable arrays into one-line :class:`~napari_medseg.errors.InputError` messages.

All functions work on plain numpy arrays of shape ``(I, J, K)`` (after :func:`as_3d`) and never
modify their input.
"""

from __future__ import annotations

import numpy as np

from napari_medseg.errors import GeometryError, InputError

#: Largest accepted size along one axis (voxels); a header claiming more is corrupt.
MAX_DIM = 16384
#: Largest accepted number of voxels in one volume (2**31: 8 GiB of float32).
MAX_VOXELS = 2**31
#: Affines of two grids that agree within this many mm (per matrix entry) are the same grid.
AFFINE_ATOL_MM = 1e-3


def check_dims(shape: tuple[int, ...], name: str) -> None:
    """Reject header dimensions that are empty or absurdly large before any data is read."""
    if any(int(s) <= 0 for s in shape):
        raise InputError(f"{name} is empty: its shape is {tuple(int(s) for s in shape)}")
    if (
        any(int(s) > MAX_DIM for s in shape)
        or int(np.prod([int(s) for s in shape], dtype=np.float64)) > MAX_VOXELS
    ):
        raise InputError(
            f"{name} claims an implausible size {tuple(int(s) for s in shape)}; the header is corrupt"
        )


def as_3d(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array`` as a 3D ``(I, J, K)`` array, squeezing trailing singleton axes (4D with one volume).

    Raises:
        InputError: the array is 2D, truly 4D (several volumes) or higher, or empty.
    """
    arr = np.asarray(array)
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise InputError(f"{name} must be a 3D volume, got {arr.ndim}D data of shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise InputError(f"{name} is empty: its shape is {tuple(arr.shape)}")
    return arr


def check_intensities(array: np.ndarray, name: str) -> None:
    """Reject voxels that are not real, finite numbers.

    Accepted: integer, boolean and floating arrays without NaN or Inf. Rejected with one line: complex
    values (e.g. MR phase or k-space data saved as NIfTI complex64), RGB or other structured voxel types,
    and NaN / infinite voxels.
    """
    dtype = array.dtype
    if np.issubdtype(dtype, np.complexfloating):
        raise InputError(
            f"{name} holds complex values (e.g. MR phase or k-space data); a scan must have real-valued voxels"
        )
    if not (
        np.issubdtype(dtype, np.bool_)
        or np.issubdtype(dtype, np.integer)
        or np.issubdtype(dtype, np.floating)
    ):
        kind = "colour (RGB) voxels" if dtype.names else f"voxels of data type {dtype}"
        raise InputError(f"{name} holds {kind}; a scan must have one grey value per voxel")
    if np.issubdtype(dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InputError(f"{name} has {bad} NaN or infinite voxel(s)")


def label_dtype(max_label: int) -> np.dtype:
    """Smallest integer dtype for labels ``0..max_label``: uint8, uint16 or int32."""
    if max_label < 2**8:
        return np.dtype(np.uint8)
    if max_label < 2**16:
        return np.dtype(np.uint16)
    if max_label < 2**31:
        return np.dtype(np.int32)
    raise InputError(f"label value {max_label} is too large (labels must be below 2**31)")


def as_label_array(array: np.ndarray, name: str) -> np.ndarray:
    """Cast a label map to its smallest integer dtype (see :func:`label_dtype`).

    Float arrays are accepted only when every value is an exact non-negative integer
    (e.g. MSD hippocampus labels stored as float32).

    Raises:
        InputError: NaN/Inf, fractional or negative values.
    """
    arr = np.asarray(array)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        check_intensities(arr, name)
        if not np.array_equal(arr, np.round(arr)):
            raise InputError(f"{name} holds non-integer values, so it is not a label map")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} has data type {arr.dtype}, which cannot hold labels")
    if arr.size and arr.min() < 0:
        raise InputError(f"{name} holds negative label values (min {arr.min()})")
    max_label = int(arr.max()) if arr.size else 0
    dtype = label_dtype(max_label)
    return arr if arr.dtype == dtype else arr.astype(dtype)


def check_same_grid(
    shape: tuple[int, ...], affine: np.ndarray, ref_shape: tuple[int, ...], ref_affine: np.ndarray, name: str
) -> None:
    """Raise :class:`GeometryError` unless ``shape``/``affine`` equal the reference grid (affine within 1e-3 mm)."""
    if tuple(shape) != tuple(ref_shape):
        raise GeometryError(f"{name} has shape {tuple(shape)} but its image has shape {tuple(ref_shape)}")
    diff = float(np.max(np.abs(np.asarray(affine, float) - np.asarray(ref_affine, float))))
    if diff > AFFINE_ATOL_MM:
        raise GeometryError(
            f"{name} is not on its image's voxel grid (affines differ by up to {diff:.4g} mm)"
        )
