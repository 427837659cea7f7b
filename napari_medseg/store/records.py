"""Plain records returned by the case store (no behaviour, safe to pass to the UI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class VersionInfo:
    """One saved label version and its provenance.

    Attributes:
        number: version number, 1, 2, ... per case (never reused).
        author: who saved it.
        created_utc: UTC ISO 8601 time of the save.
        source: ``"human"`` or ``"model:<model_id>@<checkpoint_hash>"``.
        parent: the version it was edited from (``None`` for the first).
        note: free text given at save time.
        changed_vs_parent: voxels whose label differs from ``parent`` (``None`` without parent).
        changed_vs_proposal: voxels differing from the latest model proposal saved before it.
        dice_vs_proposal: Dice(proposal, this version), mean over foreground classes present in either.
        image_checksum: checksum of the image the labels were drawn on.
        path: absolute path of the label file (NIfTI on the image grid).
        is_proposal: ``True`` for a model proposal.
        label_checksum: :func:`napari_medseg.io.volume.array_checksum` of the label array.
        file_sha256: sha256 of the label file's bytes.
    """

    number: int
    author: str
    created_utc: str
    source: str
    parent: int | None
    note: str
    changed_vs_parent: int | None
    changed_vs_proposal: int | None
    dice_vs_proposal: float | None
    image_checksum: str
    path: Path
    is_proposal: bool
    label_checksum: str = ""
    file_sha256: str = ""


@dataclass(frozen=True)
class CaseInfo:
    """Summary of one case for lists and review queues."""

    case_id: str
    status: str
    n_versions: int
    last_editor: str | None
    lock_owner: str | None
    uncertainty: float | None
    image_path: Path
    lock_since: str | None = None
    approved_version: int | None = None


@dataclass(frozen=True)
class Event:
    """One audit-trail entry (``kind``: import, save, status, comment, lock, unlock, lock_broken)."""

    id: int
    case_id: str | None
    time_utc: str
    author: str
    kind: str
    detail: str


@dataclass
class ImportReport:
    """What a batch import did: new case ids, ids skipped (already there, same image), and
    ``(file, message)`` for each scan that could not be imported."""

    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
