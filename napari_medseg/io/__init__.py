"""Volume I/O: NIfTI files and DICOM series in, NIfTI out, geometry kept exactly.

Public API::

    load_volume(path, series_uid=None) -> Volume      # NIfTI file or DICOM folder
    load_labels(path, reference=None) -> Volume       # integer labels, GeometryError on grid mismatch
    save_labels(labels, reference, path) -> Path      # NIfTI on reference's grid (atomic)
    save_volume(vol, path) -> Path
    list_series(folder) -> list[SeriesInfo]           # DICOM series in a folder
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari_medseg.io.loaders import load_labels, load_volume, save_labels, save_volume
from napari_medseg.io.volume import Volume, array_checksum

if TYPE_CHECKING:
    from napari_medseg.io.dicom import SeriesInfo


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """DICOM series in ``folder`` (see :func:`napari_medseg.io.dicom.list_series`; pydicom loads lazily)."""
    from napari_medseg.io.dicom import list_series as _list_series

    return _list_series(folder)


__all__ = [
    "Volume",
    "array_checksum",
    "list_series",
    "load_labels",
    "load_volume",
    "save_labels",
    "save_volume",
]
