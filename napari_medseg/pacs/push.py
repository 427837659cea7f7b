"""Push a reviewed label version of a pulled case back to its PACS as a DICOM SEG (STOW-RS).

Steps: find the version (the approved one unless a number is given) → retrieve the source series from
the PACS into a private temporary folder (the store keeps no DICOM headers) → check that it is still the
series that was pulled (same SOPInstanceUIDs in the same slice order, same voxel grid as the case image)
→ write the SEG with :func:`napari_medseg.io.dicom_seg.write_dicom_seg` → store it → confirm with
QIDO-RS that the SEG series is there.

Idempotent per version: the SEG's SeriesInstanceUID and SOPInstanceUID are derived from (source series
UID, case id, version number, label checksum), so pushing the same version twice names the same series
(and when QIDO-RS already finds it, nothing is sent again), while a new version is a new SEG series.
Cases pulled with ``--deidentify`` cannot be pushed: their UIDs are not the PACS's.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from napari_medseg.errors import GeometryError, PacsError, StoreError
from napari_medseg.pacs.client import PacsClient
from napari_medseg.pacs.deidentify import uid_from_digest
from napari_medseg.pacs.pull import Progress, save_instance
from napari_medseg.pacs.records import PacsSource, read_source, write_source
from napari_medseg.store import CaseStore
from napari_medseg.store.records import VersionInfo
from napari_medseg.store.schema import utc_now

#: How close the retrieved series' affine must be to the case image's (mm; NIfTI stores float32).
AFFINE_ATOL_MM = 1e-3


@dataclass(frozen=True)
class PushResult:
    """The SEG that is on the PACS for ``version`` of ``case_id``; ``already``: it was there before."""

    case_id: str
    version: int
    study_uid: str
    seg_series_uid: str
    seg_instance_uid: str
    n_segments: int
    already: bool = False

    def line(self) -> str:
        if self.already:
            return (
                f"version {self.version} of case {self.case_id} is already on the PACS as SEG series "
                f"{self.seg_series_uid} (nothing sent)"
            )
        return (
            f"pushed version {self.version} of case {self.case_id} as SEG series {self.seg_series_uid} "
            f"({self.n_segments} segment(s)) to study {self.study_uid}"
        )


def seg_uids(source: PacsSource, version: VersionInfo) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the SEG of ``version``: the same for the same version."""
    key = "|".join([source.series_uid, source.case_id, str(version.number), version.label_checksum])
    return (
        uid_from_digest(hashlib.sha256(f"seg-series|{key}".encode()).digest()),
        uid_from_digest(hashlib.sha256(f"seg-instance|{key}".encode()).digest()),
    )


def pushed_source(store: CaseStore, case_id: str) -> PacsSource:
    """The PACS record of a case that can be pushed back; StoreError/PacsError otherwise."""
    source = read_source(store.root, store.case(case_id).case_id)
    if source is None:
        raise StoreError(
            f"case {case_id} was not pulled from a PACS, so there is no series to attach a SEG to "
            "(export it with 'napari-medseg dicom-seg' instead)"
        )
    if source.deidentified:
        raise PacsError(
            f"case {case_id} was pulled de-identified: its UIDs are not the PACS's, so a SEG cannot be pushed back"
        )
    return source


def version_to_push(store: CaseStore, case_id: str, number: int | None) -> VersionInfo:
    """Version ``number``, else the case's approved version; StoreError when there is none."""
    if number is not None:
        return store.version(case_id, number)
    case = store.case(case_id)
    if case.approved_version is None:
        raise StoreError(f"case {case_id} has no approved version: approve it first or give --version N")
    return store.version(case_id, case.approved_version)


def _algorithm(store: CaseStore, case_id: str, version: VersionInfo) -> tuple[str | None, str | None]:
    """(model id, algorithm type) for the SEG: unedited proposal = AUTOMATIC, corrected = SEMIAUTOMATIC."""
    if version.source.startswith("model:"):
        return version.source[len("model:") :].split("@")[0], "AUTOMATIC"
    proposals = [v for v in store.versions(case_id) if v.is_proposal and v.number < version.number]
    if proposals and proposals[-1].source.startswith("model:"):
        return proposals[-1].source[len("model:") :].split("@")[0], "SEMIAUTOMATIC"
    return None, None


def push_version(
    client: PacsClient,
    store: CaseStore,
    case_id: str,
    version: int | None = None,
    *,
    author: str,
    progress: Progress | None = None,
    cancel: Callable[[], None] | None = None,
) -> PushResult:
    """Push ``version`` (default: the approved one) of ``case_id`` to ``client`` as a DICOM SEG.

    Args:
        progress: ``progress(done, total)`` while the source series is retrieved (total + 1 steps; the
            last one is the store).
        cancel: called between steps; raises :class:`~napari_medseg.errors.Cancelled` to stop (nothing is
            sent once the store request started).

    Raises:
        StoreError: the case was not pulled from a PACS, or has no such / no approved version.
        PacsError: de-identified case, PACS failures, or the series on the PACS changed since the pull.
        GeometryError: the retrieved series is not on the case image's grid.
    """
    from napari_medseg.io.dicom import sorted_series
    from napari_medseg.io.dicom_seg import write_dicom_seg

    source = pushed_source(store, case_id)
    case_id = source.case_id
    info = version_to_push(store, case_id, version)
    seg_series, seg_instance = seg_uids(source, info)
    labels = store.load_label(case_id, info.number).array
    n_segments = int(np.count_nonzero(np.unique(labels)))

    if client.search_series(source.study_uid, series_uid=seg_series):
        result = PushResult(
            case_id, info.number, source.study_uid, seg_series, seg_instance, n_segments, True
        )
        _remember(store, source, result, client, author)
        return result

    total = source.n_instances + 1
    with tempfile.TemporaryDirectory(prefix="medseg-push-") as tmp:
        folder = Path(tmp) / "series"
        folder.mkdir(mode=0o700)
        n = 0
        for ds in client.iter_series(source.study_uid, source.series_uid):
            if cancel is not None:
                cancel()
            save_instance(ds, folder / f"{n:06d}.dcm")
            n += 1
            if progress is not None:
                progress(n, max(total, n + 1))
        if n == 0:
            raise PacsError(f"series {source.series_uid} is no longer on the PACS at {client.name}")
        series = sorted_series(folder)
        if [str(d.SOPInstanceUID) for d in series.headers] != source.sop_uids:
            raise PacsError(
                f"series {source.series_uid} on the PACS at {client.name} is not the one pulled into case "
                f"{case_id} (its instances changed); pull it again as a new case"
            )
        image = store.load_image(case_id)
        if tuple(series.shape) != image.shape or not np.allclose(
            series.affine, image.affine, atol=AFFINE_ATOL_MM
        ):
            raise GeometryError(
                f"series {source.series_uid} on the PACS is no longer on the grid of case {case_id}"
            )
        model_id, algo_type = _algorithm(store, case_id, info)
        seg_path = Path(tmp) / "seg.dcm"
        write_dicom_seg(
            labels,
            folder,
            seg_path,
            store.labels,
            series_uid=source.series_uid,
            author=info.author,
            algorithm=model_id,
            algorithm_type=algo_type,
            series_description=f"napari-medseg {case_id} v{info.number}"[:64],
            seg_series_uid=seg_series,
            seg_instance_uid=seg_instance,
        )
        if cancel is not None:
            cancel()
        seg = pydicom.dcmread(str(seg_path))
        client.store([seg], study_uid=source.study_uid)
    if progress is not None:
        progress(total, total)
    if not client.search_series(source.study_uid, series_uid=seg_series):
        raise PacsError(f"the PACS at {client.name} accepted the SEG but does not list series {seg_series}")
    result = PushResult(case_id, info.number, source.study_uid, seg_series, seg_instance, n_segments)
    _remember(store, source, result, client, author)
    return result


def _remember(
    store: CaseStore, source: PacsSource, result: PushResult, client: PacsClient, author: str
) -> None:
    """Record the push in the case's PACS record and audit trail (once per version and URL)."""
    key = str(result.version)
    entry = source.pushed.get(key)
    if entry and entry.get("seg_series_uid") == result.seg_series_uid and entry.get("url") == client.name:
        return
    source.pushed[key] = {
        "seg_series_uid": result.seg_series_uid,
        "seg_instance_uid": result.seg_instance_uid,
        "utc": utc_now(),
        "by": author,
        "url": client.name,
    }
    write_source(store.root, source)
    store.record_event(
        result.case_id,
        author,
        "pacs_push",
        f"version {result.version} as SEG series {result.seg_series_uid} to {client.name}",
    )
