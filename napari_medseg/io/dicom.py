"""DICOM series folders (pydicom) → :class:`Volume`.

Voxel-order convention: the one dcm2niix writes (and dicom2nifti, hence TotalSegmentator's
``example_seg_dicom.nii.gz`` on the ``ct_dicom`` grid):

* ``i`` = DICOM column index (along ImageOrientationPatient's row direction),
* ``j`` = DICOM row index **reversed** (last row first), so an axial series is LAS/RAS-like, not LPS,
* ``k`` = slices sorted by position along the slice normal ``row_dir × col_dir`` (ascending).

For both shipped DICOM CTs, ``load_series`` gives exactly dcm2niix's array and affine (tested in
``tests/test_dicom_geometry_itk.py``), so label maps made on dcm2niix / TotalSegmentator NIfTIs pair with
ours index by index. ITK/SimpleITK (``ImageSeriesReader``) keeps the DICOM row order instead (LPS), so
its array is ours with ``j`` reversed; dcm2niix and ITK disagree with each other here, and no one order
matches both. The affine is exact either way: every file written from a series, read by SimpleITK,
lies voxel for voxel on ITK's own reading of the series (same test file). Compare arrays from the two
families through their affines (or resample), never by bare index.

``affine`` maps ``(i, j, k)`` to RAS+ mm: it is built from ImagePositionPatient / ImageOrientationPatient /
PixelSpacing in DICOM's LPS frame and then converted (x and y negated).

Slice spacing comes from the slice positions. Gaps that deviate from the median by at most
``max(0.01 mm, 1 %)`` are fine; up to 10 % the volume loads with ``meta["warnings"]`` saying so; larger
deviations (missing slices, mixed stacks) and duplicate positions raise :class:`InputError`.

Several series in one folder are grouped by SeriesInstanceUID (files whose UID is empty are grouped by
series number and description); :func:`list_series` lists them and :func:`load_series` needs
``series_uid`` to pick one.

Files are found in the folder *and its sub-folders* (PACS/CD exports nest them, e.g.
``PATIENT/STUDY/SERIES/IM0001``), walked in sorted order; hidden files and folders (name starting with
``.``) and ``DICOMDIR`` index files are skipped, and so is any file pydicom cannot read as DICOM.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from napari_medseg.errors import InputError
from napari_medseg.io.validate import check_dims, check_intensities
from napari_medseg.io.volume import Volume

#: Relative deviation of a slice gap from the median gap that is accepted silently / with a warning.
GAP_RTOL_OK = 0.01
GAP_RTOL_WARN = 0.10
GAP_ATOL_MM = 0.01
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder: ``uid`` (SeriesInstanceUID or a stand-in), ``n_slices`` files."""

    uid: str
    description: str
    n_slices: int
    modality: str
    series_number: int | None
    rows: int
    columns: int

    def line(self) -> str:
        """One readable line, e.g. ``1.2.3 (#2, CT, 'CT Body 3.0', 20 slices of 512x512)``."""
        num = f"#{self.series_number}, " if self.series_number is not None else ""
        return (
            f"{self.uid} ({num}{self.modality}, '{self.description}', {self.n_slices} slices of "
            f"{self.rows}x{self.columns})"
        )


def _series_key(ds: pydicom.Dataset) -> str:
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if uid:
        return uid
    number = ds.get("SeriesNumber", None)
    desc = str(ds.get("SeriesDescription", "") or "").strip()
    return "no-uid:" + ":".join(str(v) for v in (number, desc) if v not in (None, ""))


def _is_image(ds: pydicom.Dataset) -> bool:
    return (
        "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds and "Rows" in ds and "Columns" in ds
    )


def iter_candidate_files(folder: Path, max_depth: int | None = None) -> Iterator[Path]:
    """Files under ``folder`` that may be DICOM, folder by folder (each folder's files sorted, then its
    sorted sub-folders, at most ``max_depth`` levels down); hidden entries and DICOMDIR index files are
    skipped. Symbolic links to folders are not followed (no cycles); links to files are yielded.
    """
    for root, dirs, files in os.walk(folder, followlinks=False):
        depth = len(Path(root).relative_to(folder).parts)
        keep_going = max_depth is None or depth < max_depth
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if keep_going else []
        for name in sorted(files):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            path = Path(root) / name
            if path.is_file():
                yield path


def _scan(folder: Path) -> dict[str, list[tuple[Path, pydicom.Dataset]]]:
    """Headers (no pixels) of every DICOM image file under ``folder`` (sub-folders included) grouped by
    series, each group in sorted path order; other files are skipped."""
    if not folder.exists():
        raise InputError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for f in sorted(iter_candidate_files(folder)):
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not DICOM (README, DICOMDIR junk, truncated header...)
        if _is_image(ds):
            groups.setdefault(_series_key(ds), []).append((f, ds))
    if not groups:
        raise InputError(f"no DICOM images found in {folder}")
    return groups


def _info(uid: str, files: list[tuple[Path, pydicom.Dataset]]) -> SeriesInfo:
    ds = files[0][1]
    number = ds.get("SeriesNumber", None)
    return SeriesInfo(
        uid=uid,
        description=str(ds.get("SeriesDescription", "") or ""),
        n_slices=len(files),
        modality=str(ds.get("Modality", "") or "unknown"),
        series_number=int(number) if number not in (None, "") else None,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
    )


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """The image series in ``folder`` (non-DICOM files ignored), sorted by series number then UID.

    Raises:
        InputError: the folder does not exist or holds no DICOM image.
    """
    groups = _scan(Path(folder))
    infos = [_info(uid, files) for uid, files in groups.items()]
    return sorted(infos, key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.uid))


def _geometry(
    files: list[tuple[Path, pydicom.Dataset]], name: str
) -> tuple[list, np.ndarray, dict[str, Any]]:
    """Sort slices along the normal; return (sorted files, LPS affine for (col, row, slice), extra meta)."""
    ds0 = files[0][1]
    try:
        iop = np.array([float(v) for v in ds0.ImageOrientationPatient], np.float64)
        row_sp, col_sp = (float(v) for v in ds0.PixelSpacing)
    except (AttributeError, ValueError, TypeError):
        raise InputError(f"series {name} lacks a usable ImageOrientationPatient/PixelSpacing") from None
    if not all(np.isfinite(v) and v > 0 for v in (row_sp, col_sp)):
        raise InputError(
            f"series {name} has an invalid PixelSpacing {[row_sp, col_sp]} (must be positive mm)"
        )
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise InputError(f"series {name} has an invalid ImageOrientationPatient {iop.tolist()}")
    shapes = {(int(d.Rows), int(d.Columns)) for _, d in files}
    orients = {tuple(np.round([float(v) for v in d.ImageOrientationPatient], 4)) for _, d in files}
    if len(shapes) > 1 or len(orients) > 1:
        raise InputError(f"series {name} mixes image sizes or orientations; it is not one 3D stack")
    if any(int(d.get("NumberOfFrames", 1) or 1) > 1 for _, d in files):
        raise InputError(f"series {name} is multi-frame DICOM, which is not supported; export single frames")
    try:
        ipp = np.array([[float(v) for v in d.ImagePositionPatient] for _, d in files], np.float64)
    except (AttributeError, ValueError, TypeError):
        raise InputError(f"series {name} has a slice without a usable ImagePositionPatient") from None
    if ipp.shape != (len(files), 3) or not np.all(np.isfinite(ipp)):
        raise InputError(f"series {name} has a slice without a usable ImagePositionPatient")
    dist = ipp @ normal
    order = np.argsort(dist, kind="stable")
    files = [files[i] for i in order]
    ipp, dist = ipp[order], dist[order]
    meta: dict[str, Any] = {"warnings": []}
    n = len(files)
    if n == 1:
        step = float(ds0.get("SpacingBetweenSlices", 0) or ds0.get("SliceThickness", 0) or 1.0)
        slice_vec = normal * step
    else:
        gaps = np.diff(dist)
        if np.any(gaps < GAP_ATOL_MM):
            raise InputError(
                f"series {name} has {int(np.sum(gaps < GAP_ATOL_MM))} duplicate slice position(s)"
            )
        med = float(np.median(gaps))
        dev = float(np.max(np.abs(gaps - med)))
        if dev > max(GAP_ATOL_MM, GAP_RTOL_WARN * med):
            missing = int(np.sum(np.round(gaps / med) - 1).clip(min=0))
            hint = f"about {missing} slice(s) missing" if missing else "uneven slice positions"
            raise InputError(
                f"series {name} is not evenly spaced ({hint}: gaps from {gaps.min():.3g} to {gaps.max():.3g} mm)"
            )
        if dev > max(GAP_ATOL_MM, GAP_RTOL_OK * med):
            meta["warnings"].append(f"slice spacing varies by up to {dev:.3g} mm around {med:.4g} mm")
        slice_vec = (ipp[-1] - ipp[0]) / (n - 1)
    rows = int(ds0.Rows)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_sp  # i: along a row (column index)
    affine[:3, 1] = -col_dir * row_sp  # j: row index reversed
    affine[:3, 2] = slice_vec
    affine[:3, 3] = ipp[0] + col_dir * row_sp * (rows - 1)
    meta["slice_spacing_mm"] = float(np.linalg.norm(slice_vec))
    return files, affine, meta


def _pixels(path: Path, ds_header: pydicom.Dataset, name: str) -> tuple[np.ndarray, float, float]:
    try:
        with warnings.catch_warnings():  # a truncated file warns, then fails: the error says it all
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path))
            pix = ds.pixel_array
    except Exception as err:  # noqa: BLE001 - decoders raise many types; the user needs one line
        raise InputError(f"cannot decode the pixels of {path.name} in series {name} ({err})") from None
    if pix.ndim != 2:
        raise InputError(f"{path.name} in series {name} is not a single 2D image (pixels {pix.shape})")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    inter = float(ds.get("RescaleIntercept", 0) or 0)
    return pix, slope, inter


def _stack(files: list[tuple[Path, pydicom.Dataset]], name: str) -> np.ndarray:
    """Pixel data as ``(I=columns, J=rows reversed, K=slices)`` with rescale slope/intercept applied.

    int16 when every slope/intercept is integral and the values fit, else float32.
    """
    slices = [_pixels(p, d, name) for p, d in files]
    integral = all(float(s).is_integer() and float(b).is_integer() for _, s, b in slices)
    raw = np.stack([pix for pix, _, _ in slices], axis=-1)  # (rows, cols, K)
    slopes = np.array([s for _, s, _ in slices])
    inters = np.array([b for _, _, b in slices])
    if integral:
        lo = min(
            float(raw[..., k].min()) * s + b for k, (s, b) in enumerate(zip(slopes, inters, strict=True))
        )
        hi = max(
            float(raw[..., k].max()) * s + b for k, (s, b) in enumerate(zip(slopes, inters, strict=True))
        )
        dtype = np.int16 if -(2**15) <= min(lo, hi) and max(lo, hi) < 2**15 else np.int32
        vol = raw.astype(np.int32) * slopes.astype(np.int32) + inters.astype(np.int32)
        vol = vol.astype(dtype)
    else:
        vol = (raw.astype(np.float32) * slopes.astype(np.float32) + inters.astype(np.float32)).astype(
            np.float32
        )
    return np.ascontiguousarray(vol.transpose(1, 0, 2)[:, ::-1, :])


def _select(folder: Path, series_uid: str | None) -> tuple[str, list[tuple[Path, pydicom.Dataset]]]:
    """The (uid, files) of the chosen series; InputError when it is ambiguous or unknown."""
    groups = _scan(folder)
    if series_uid is None:
        if len(groups) > 1:
            listing = "; ".join(s.line() for s in list_series(folder))
            raise InputError(f"{folder} holds {len(groups)} series, choose one by its UID: {listing}")
        series_uid = next(iter(groups))
    if series_uid not in groups:
        raise InputError(f"series {series_uid} is not in {folder}; found: {', '.join(sorted(groups))}")
    return series_uid, groups[series_uid]


@dataclass(frozen=True)
class SortedSeries:
    """The files of one series in the slice order :func:`load_series` uses, headers only (no pixels).

    ``files[k]`` / ``headers[k]`` is the DICOM instance of slice ``k`` of ``load_series(...).array``,
    whose shape is ``shape = (I=columns, J=rows, K=len(files))``; ``affine`` is the same voxel → RAS+ mm
    matrix (see the module docstring for the voxel order).
    """

    uid: str
    files: list[Path]
    headers: list[pydicom.Dataset]
    affine: np.ndarray
    shape: tuple[int, int, int]


def sorted_series(folder: str | Path, series_uid: str | None = None) -> SortedSeries:
    """Read the headers of one series and sort its slices exactly as :func:`load_series` does.

    For writers that must address the source instances (e.g. DICOM SEG export) without decoding pixels.

    Raises:
        InputError: as :func:`load_series` (no series, ambiguous or unknown ``series_uid``, uneven slices).
    """
    folder = Path(folder)
    series_uid, files = _select(folder, series_uid)
    info = _info(series_uid, files)
    check_dims((info.columns, info.rows, info.n_slices), f"series {series_uid}")
    files, affine_lps, _ = _geometry(files, series_uid)
    return SortedSeries(
        uid=series_uid,
        files=[p for p, _ in files],
        headers=[d for _, d in files],
        affine=LPS_TO_RAS @ affine_lps,
        shape=(info.columns, info.rows, len(files)),
    )


def load_series(folder: str | Path, series_uid: str | None = None) -> Volume:
    """Load one DICOM series from ``folder`` as a Volume (see the module docstring for the voxel order).

    Returns:
        Volume: ``array (I, J, K)`` int16 (or float32 when the rescale is fractional) in modality units
        (HU for CT), ``affine`` voxel → RAS+ mm, ``modality`` from the DICOM header, ``meta`` with
        ``series_uid``, ``series_description``, ``n_slices``, ``slice_spacing_mm``, ``warnings``.

    Raises:
        InputError: no DICOM images, several series and ``series_uid`` not given (or unknown),
            uneven/missing slices, undecodable pixels.
    """
    folder = Path(folder)
    series_uid, files = _select(folder, series_uid)
    info = _info(series_uid, files)
    check_dims((info.columns, info.rows, info.n_slices), f"series {series_uid}")
    files, affine_lps, meta = _geometry(files, series_uid)
    arr = _stack(files, series_uid)
    check_intensities(arr, f"series {series_uid}")
    meta.update(
        format="dicom",
        series_uid=series_uid,
        series_description=info.description,
        series_number=info.series_number,
        n_slices=info.n_slices,
        files=[str(p) for p, _ in files],
    )
    return Volume(
        array=arr, affine=LPS_TO_RAS @ affine_lps, modality=info.modality, source=str(folder), meta=meta
    )
