"""Pull one image series from a PACS into a case store (WADO-RS), optionally de-identified.

The instances are retrieved one by one into a private temporary folder, written as DICOM files and then
imported with the store's own DICOM import (:meth:`CaseStore.import_case` → :func:`load_series`), so the
case image has exactly the geometry that reading the same files from disk gives. The temporary copy is
deleted afterwards: the store keeps the NIfTI image (no header fields) plus a
:class:`~napari_medseg.pacs.records.PacsSource` record of the UIDs, never the DICOM headers. With
``deidentify`` the instances are de-identified in memory before anything touches the disk.

Case ids are derived from the series UID, never from patient data: ``<modality>_<10 hex digits of
sha256(SeriesInstanceUID)>`` (e.g. ``ct_1f0c9a5e27``), so pulling the same series again finds the same
case. The audit trail gets a ``pacs_pull`` event naming the PACS URL and the UIDs.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom

from napari_medseg.errors import PacsError, StoreError
from napari_medseg.io.dicom import sorted_series
from napari_medseg.pacs.client import PacsClient, SeriesInfo
from napari_medseg.pacs.deidentify import deidentify, remap_uid
from napari_medseg.pacs.records import PacsSource, read_source, store_salt, write_source
from napari_medseg.store import CaseStore
from napari_medseg.store.ids import validate_case_id
from napari_medseg.store.schema import utc_now

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PullResult:
    """``case_id`` in the store; ``already`` when the series had been pulled before (nothing retrieved)."""

    case_id: str
    source: PacsSource
    already: bool = False

    def line(self) -> str:
        src = self.source
        what = "already in the store as" if self.already else "pulled into"
        deid = ", de-identified" if src.deidentified else ""
        return f"series {src.series_uid} ({src.n_instances} {src.modality} instances{deid}) {what} case {self.case_id}"


def case_id_for(series_uid: str, modality: str) -> str:
    """``<modality>_<10 hex of sha256(series UID)>``, a safe case id without patient data."""
    prefix = re.sub(r"[^a-z0-9]", "", modality.lower()) or "img"
    return validate_case_id(f"{prefix}_{hashlib.sha256(series_uid.encode()).hexdigest()[:10]}")


def choose_series(client: PacsClient, study_uid: str, series_uid: str | None) -> SeriesInfo:
    """The series to pull: ``series_uid``, else the study's only image series.

    Raises:
        PacsError: unknown study/series, a series that is not an image, no or several image series.
    """
    found = client.search_series(study_uid, series_uid=series_uid)
    if series_uid:
        found = [s for s in found if s.series_uid == series_uid]
        if not found:
            raise PacsError(f"series {series_uid} of study {study_uid} is not on the PACS at {client.name}")
        if not found[0].is_image:
            raise PacsError(
                f"series {series_uid} is a {found[0].modality} series, not an image series to segment"
            )
        return found[0]
    if not found:
        raise PacsError(f"study {study_uid} is not on the PACS at {client.name} (or has no series)")
    images = [s for s in found if s.is_image]
    if not images:
        mods = ", ".join(sorted({s.modality for s in found}))
        raise PacsError(f"study {study_uid} has no image series (only {mods})")
    if len(images) > 1:
        listing = "; ".join(f"{s.series_uid} ({s.modality} '{s.description}')" for s in images)
        raise PacsError(
            f"study {study_uid} has {len(images)} image series, choose one with --series: {listing}"
        )
    return images[0]


def save_instance(ds: pydicom.Dataset, path: Path) -> None:
    """Write one retrieved instance as a DICOM Part 10 file; PacsError when it cannot be encoded."""
    try:
        ds.save_as(str(path), enforce_file_format=True)
    except (ValueError, AttributeError, TypeError) as err:
        raise PacsError(
            f"instance {ds.get('SOPInstanceUID', '?')} cannot be written as DICOM ({err})"
        ) from None


def pull_series(
    client: PacsClient,
    store: CaseStore,
    study_uid: str,
    series_uid: str | None = None,
    *,
    author: str,
    deidentify_data: bool = False,
    case_id: str | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], None] | None = None,
) -> PullResult:
    """Retrieve one series into ``store`` as a new case (see the module docstring).

    Args:
        client: the PACS.
        store: an open case store.
        study_uid: StudyInstanceUID on the PACS.
        series_uid: SeriesInstanceUID; default the study's only image series.
        author: store user recorded in the events.
        deidentify_data: de-identify the instances (PS3.15 basic profile) before they are stored.
        case_id: the case id to use instead of the derived one.
        progress: ``progress(done, total)`` after each retrieved instance.
        cancel: called between instances; raises :class:`~napari_medseg.errors.Cancelled` to stop.

    Raises:
        PacsError: the PACS failed, or the series is not a loadable image series.
        StoreError: the case id is taken by another case.
        InputError: the retrieved series is not one evenly spaced 3D stack.
    """
    info = choose_series(client, study_uid, series_uid)
    salt = store_salt(store.root) if deidentify_data else b""
    local_series = remap_uid(info.series_uid, salt) if deidentify_data else info.series_uid
    local_study = remap_uid(study_uid, salt) if deidentify_data else study_uid
    case_id = validate_case_id(case_id) if case_id else case_id_for(local_series, info.modality)
    if case_id in store.case_ids():
        known = read_source(store.root, case_id)
        if known is not None and known.series_uid == local_series:
            return PullResult(case_id, known, already=True)
        raise StoreError(
            f"case {case_id} is already in the store and holds another image; choose another case id"
        )

    total = info.n_instances or 0
    with tempfile.TemporaryDirectory(prefix="medseg-pull-") as tmp:
        folder = Path(tmp) / case_id
        folder.mkdir(mode=0o700)
        n = 0
        for ds in client.iter_series(study_uid, info.series_uid):
            if cancel is not None:
                cancel()
            if deidentify_data:
                deidentify(ds, salt)
            save_instance(ds, folder / f"{n:06d}.dcm")
            n += 1
            if progress is not None:
                progress(n, max(total, n))
        if n == 0:
            raise PacsError(f"the PACS at {client.name} returned no instance of series {info.series_uid}")
        if cancel is not None:
            cancel()
        series = sorted_series(folder)
        store.import_case(folder, case_id=case_id, author=author)
    first = series.headers[0]
    source = PacsSource(
        case_id=case_id,
        url=client.name,
        study_uid=local_study,
        series_uid=local_series,
        sop_uids=[str(d.SOPInstanceUID) for d in series.headers],
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "") or ""),
        modality=info.modality,
        deidentified=deidentify_data,
        pulled_utc=utc_now(),
        pulled_by=author,
    )
    write_source(store.root, source)
    deid = " (de-identified, UIDs remapped)" if deidentify_data else ""
    store.record_event(
        case_id,
        author,
        "pacs_pull",
        f"{n} instances of series {local_series} of study {local_study} from {client.name}{deid}",
    )
    return PullResult(case_id, source)
