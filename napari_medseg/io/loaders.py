"""Format dispatch: one entry point for NIfTI files and DICOM series folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_medseg.errors import InputError
from napari_medseg.io import nifti
from napari_medseg.io.volume import Volume


def load_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """Load a 3D image from a NIfTI file (``.nii``/``.nii.gz``) or a folder holding a DICOM series.

    Args:
        path: NIfTI file or DICOM folder.
        series_uid: for a folder with several series, the SeriesInstanceUID to load (see
            :func:`napari_medseg.io.dicom.list_series`).

    Returns:
        Volume with ``array (I, J, K)`` in the source's voxel order and ``affine`` voxel → RAS+ mm.

    Raises:
        InputError: unreadable input, or several series in a folder and none chosen.
    """
    path = Path(path)
    if path.is_dir():
        from napari_medseg.io import dicom

        return dicom.load_series(path, series_uid=series_uid)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if nifti.is_nifti_path(path):
        return nifti.load_nifti(path)
    raise InputError(f"{path.name} is neither a NIfTI file (.nii, .nii.gz) nor a DICOM folder")


def load_labels(path: str | Path, reference: Volume | None = None) -> Volume:
    """Load an integer label map ``(I, J, K)``; with ``reference`` its grid must match (GeometryError)."""
    path = Path(path)
    if path.is_dir() or not nifti.is_nifti_path(path):
        if not path.exists():
            raise InputError(f"file not found: {path}")
        raise InputError(f"{path.name} is not a NIfTI label file (.nii, .nii.gz)")
    return nifti.load_nifti_labels(path, reference=reference)


def save_labels(labels: np.ndarray, reference: Volume, path: str | Path) -> Path:
    """Write ``labels (I, J, K)`` as NIfTI on exactly ``reference``'s grid (atomic; uint8/uint16/int32)."""
    return nifti.save_nifti_labels(labels, reference, path)


def save_volume(vol: Volume, path: str | Path) -> Path:
    """Write ``vol`` as NIfTI (atomic), keeping dtype, affine and, for NIfTI sources, qform/sform codes."""
    return nifti.save_nifti_volume(vol, path)
