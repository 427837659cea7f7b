"""NIfTI-1/2 volumes and label maps (nibabel), geometry kept exactly.

* Arrays are returned in the file's voxel order ``(I, J, K)``; nothing is reoriented.
* ``Volume.affine`` is nibabel's ``img.affine`` (sform when ``sform_code > 0``, else qform), voxel →
  RAS+ mm. The header's qform/sform matrices and codes go into ``Volume.meta`` so that
  :func:`save_labels` writes a file on *exactly* the source grid (same shape, qform, sform, codes).
* Every failure a user can cause (missing, truncated or non-NIfTI file, 2D/4D data, NaN, absurd header
  dims, mismatched label grid) raises a one-line :class:`~napari_medseg.errors.InputError`.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_medseg.errors import InputError
from napari_medseg.io.atomic import atomic_write_with
from napari_medseg.io.dataset_json import modality_hint
from napari_medseg.io.validate import as_3d, as_label_array, check_dims, check_intensities, check_same_grid
from napari_medseg.io.volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: meta keys that describe the NIfTI grid; :func:`save_labels` reuses them.
GEOMETRY_KEYS = ("qform", "qform_code", "sform", "sform_code", "xyz_units")


def is_nifti_path(path: str | Path) -> bool:
    """``True`` when the file name ends in ``.nii`` or ``.nii.gz``."""
    name = Path(path).name.lower()
    return name.endswith(NIFTI_SUFFIXES)


def _read_image(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a NIfTI file")
    try:
        with nib.imageglobals.LoggingOutputSuppressor():  # header fix-up notes would be extra stderr lines
            img = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError) as err:
        raise InputError(f"{path.name} is not a readable NIfTI file ({err})") from None
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as err:
        raise InputError(f"{path.name} is truncated or corrupt ({err})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"{path.name} is a {type(img).__name__}, not a NIfTI file")
    return img


def _read_array(img: nib.Nifti1Image, path: Path) -> np.ndarray:
    check_dims(img.shape, path.name)
    try:
        arr = _read_gzip_fast(img, path)
        if arr is None:
            arr = np.asanyarray(img.dataobj)
    except (EOFError, OSError, zlib.error, ValueError) as err:
        raise InputError(f"{path.name} is truncated or corrupt ({err})") from None
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    if (slope, inter) != (1.0, 0.0) and np.issubdtype(img.get_data_dtype(), np.integer):
        arr = _compact_scaled(arr)
    return as_3d(arr, path.name)


def _read_gzip_fast(img: nib.Nifti1Image, path: Path) -> np.ndarray | None:
    """The voxels of an unscaled ``.nii.gz``, decompressed with ISA-L (``isal``; about 3x faster than
    nibabel's zlib stream: 0.5 s vs 1.3-2.2 s for a 512x512x300 int16 CT) straight into the array, in
    the file's (Fortran) order and byte order, as nibabel gives them. ``None`` when the fast path does
    not apply (not gzip, scaled data, no ``isal``): the caller reads through nibabel.
    """
    try:
        from isal import igzip, isal_zlib
    except ImportError:
        return None
    proxy = img.dataobj
    if not path.name.lower().endswith(".gz") or (proxy.slope, proxy.inter) != (1.0, 0.0):
        return None
    if getattr(proxy, "order", "F") != "F":
        return None
    dtype = np.dtype(img.get_data_dtype())
    shape = tuple(int(n) for n in img.shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    flat = np.empty(nbytes, dtype=np.uint8)
    view = memoryview(flat)
    try:
        with igzip.open(path, "rb") as stream:
            stream.seek(int(proxy.offset))
            got = 0
            while got < nbytes:
                n = stream.readinto(view[got:])
                if not n:
                    raise EOFError(f"the voxel data ends after {got} of {nbytes} bytes")
                got += n
    except isal_zlib.error as err:  # ISA-L's own error type for a broken deflate stream
        raise ValueError(str(err)) from None
    return flat.view(dtype).reshape(shape, order="F")


def _compact_scaled(arr: np.ndarray) -> np.ndarray:
    """Scaled integer data (``scl_slope``/``scl_inter``) comes back from nibabel as float64 or a wide int:
    use int16/int32 when the values are integral and fit, else float32 (the DICOM loader's convention)."""
    if arr.size and np.all(np.isfinite(arr)) and np.array_equal(arr, np.round(arr)):
        lo, hi = float(arr.min()), float(arr.max())
        for dtype in (np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return arr.astype(dtype)
    return arr.astype(np.float32)


def _geometry_meta(img: nib.Nifti1Image) -> dict[str, Any]:
    hdr = img.header
    qform, qcode = hdr.get_qform(coded=True)
    sform, scode = hdr.get_sform(coded=True)
    return {
        "format": "nifti",
        "qform": None if qform is None else np.asarray(qform, np.float64),
        "qform_code": int(qcode),
        "sform": None if sform is None else np.asarray(sform, np.float64),
        "sform_code": int(scode),
        "xyz_units": hdr.get_xyzt_units()[0],
        "file_dtype": str(img.get_data_dtype()),
    }


def guess_modality(path: Path, array: np.ndarray | None = None) -> str:
    """Best guess of the modality of a NIfTI file (NIfTI headers do not store it).

    Order: an MSD ``dataset.json`` two folders up (``"modality": {"0": "MRI"}``), then a ``ct``/``mr``
    token in the file name, then CT when the intensities look like Hounsfield units (min < -500),
    else ``"unknown"``.
    """
    for folder in (path.parent, path.parent.parent):
        value = modality_hint(folder).upper()
        if value:
            return "MR" if value.startswith("MR") else value
    tokens = set(re.split(r"[^a-z0-9]+", path.name.lower()))
    if tokens & {"ct"}:
        return "CT"
    if tokens & {"mr", "mri", "t1", "t2", "flair"}:
        return "MR"
    if (
        array is not None
        and array.size
        and np.issubdtype(array.dtype, np.number)
        and float(array.min()) < -500
    ):
        return "CT"
    return "unknown"


def load_nifti(path: str | Path) -> Volume:
    """Read a 3D NIfTI image (a 4D file with one volume is squeezed).

    Returns:
        Volume with ``array (I, J, K)`` in the stored dtype (float when the header has a scale slope),
        ``affine`` voxel → RAS+ mm, ``meta`` with the qform/sform matrices and codes.

    Raises:
        InputError: missing, truncated or non-NIfTI file; not 3D; empty; NaN/Inf voxels; absurd dims.
    """
    path = Path(path)
    img = _read_image(path)
    arr = _read_array(img, path)
    check_intensities(arr, path.name)
    affine = np.asarray(img.affine, np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path.name} has a degenerate or non-finite affine in its header")
    meta = _geometry_meta(img)
    return Volume(array=arr, affine=affine, modality=guess_modality(path, arr), source=str(path), meta=meta)


def load_nifti_labels(path: str | Path, reference: Volume | None = None) -> Volume:
    """Read a NIfTI label map as an integer ``(I, J, K)`` array (uint8/uint16/int32).

    Float files whose values are exact integers are cast; fractional values, NaN or negative labels
    raise :class:`InputError`. With ``reference`` the grid must match it (GeometryError otherwise).
    """
    path = Path(path)
    img = _read_image(path)
    arr = as_label_array(_read_array(img, path), f"label map {path.name}")
    affine = np.asarray(img.affine, np.float64)
    if reference is not None:
        check_same_grid(arr.shape, affine, reference.shape, reference.affine, f"label map {path.name}")
    meta = _geometry_meta(img)
    return Volume(array=arr, affine=affine, modality="SEG", source=str(path), meta=meta)


def _header_for(reference: Volume, dtype: np.dtype) -> nib.Nifti1Header:
    """A NIfTI-1 header on the reference grid, reusing its qform/sform (and codes) when they match its affine."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(dtype)
    hdr.set_data_shape(reference.shape)
    meta = reference.meta
    sform, qform = meta.get("sform"), meta.get("qform")
    scode, qcode = int(meta.get("sform_code", 0) or 0), int(meta.get("qform_code", 0) or 0)
    header_affine = sform if scode > 0 and sform is not None else qform if qcode > 0 else None
    if header_affine is not None and np.allclose(header_affine, reference.affine, atol=1e-6):
        hdr.set_qform(qform if qform is not None else reference.affine, code=qcode)
        hdr.set_sform(sform if sform is not None else reference.affine, code=scode)
    else:  # an in-memory or DICOM volume: its affine is in scanner coordinates
        hdr.set_qform(reference.affine, code=1)
        hdr.set_sform(reference.affine, code=1)
    hdr.set_xyzt_units(xyz=meta.get("xyz_units") or "mm")
    return hdr


def _write(array: np.ndarray, reference: Volume, path: Path) -> Path:
    hdr = _header_for(reference, array.dtype)
    img = nib.Nifti1Image(array, affine=None, header=hdr)
    img.header.set_slope_inter(np.nan, np.nan)  # raw voxel values, no scaling
    atomic_write_with(path, lambda tmp: nib.save(img, str(tmp)))
    return path


def save_nifti_labels(labels: np.ndarray, reference: Volume, path: str | Path) -> Path:
    """Write ``labels (I, J, K)`` as NIfTI on exactly ``reference``'s grid, atomically.

    The dtype is uint8 when the largest label is below 256, else uint16 (or int32). Shape must equal
    ``reference.shape`` (GeometryError otherwise); non-integer values raise InputError.
    """
    path = Path(path)
    arr = as_label_array(np.asarray(labels), "label map")
    check_same_grid(arr.shape, reference.affine, reference.shape, reference.affine, "label map")
    return _write(
        arr, reference, path
    )  # nibabel writes any memory order (NIfTI's is Fortran: no copy for it)


def save_nifti_volume(vol: Volume, path: str | Path) -> Path:
    """Write ``vol`` as NIfTI in its own dtype, with its affine (and source qform/sform codes), atomically."""
    return _write(np.asarray(vol.array), vol, Path(path))
