"""Where a pulled case came from, and what was pushed back: ``<store>/.medseg/pacs/<case>.json``.

One JSON file per case pulled from a PACS, rewritten atomically. It holds UIDs, counts, times and
store-local user names only, never anything from a DICOM header that identifies the patient:

* ``url``: the DICOMweb base URL without credentials or query;
* ``study_uid``, ``series_uid``, ``sop_uids`` (SOPInstanceUIDs in slice order ``k`` of the case image),
  ``frame_of_reference_uid``, ``modality``, ``n_instances``;
* ``deidentified``: the UIDs above are the store's remapped ones, not the PACS's (no push possible);
* ``pulled_utc``, ``pulled_by``;
* ``pushed``: ``{"<version>": {"seg_series_uid", "seg_instance_uid", "utc", "by", "url"}}``.

The store's de-identification salt (``.medseg/pacs/deid.salt``, 32 random bytes, owner-only) lives
beside them so UIDs are remapped the same way on every pull into this store.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from napari_medseg.errors import StoreError
from napari_medseg.io.atomic import atomic_write_with
from napari_medseg.store.ids import validate_case_id

PACS_DIR = Path(".medseg") / "pacs"
SALT_NAME = "deid.salt"


@dataclass
class PacsSource:
    """The record of one pulled case (see the module docstring)."""

    case_id: str
    url: str
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    frame_of_reference_uid: str
    modality: str
    deidentified: bool
    pulled_utc: str
    pulled_by: str
    pushed: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def n_instances(self) -> int:
        return len(self.sop_uids)


def record_path(store_root: Path, case_id: str) -> Path:
    return Path(store_root) / PACS_DIR / f"{validate_case_id(case_id)}.json"


def read_source(store_root: Path, case_id: str) -> PacsSource | None:
    """The record of ``case_id``, ``None`` when the case was not pulled from a PACS."""
    path = record_path(store_root, case_id)
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
        content.pop("n_instances", None)
        return PacsSource(**content)
    except (ValueError, TypeError) as err:
        raise StoreError(f"the PACS record of case {case_id} ({path}) is damaged ({err})") from None


def write_source(store_root: Path, source: PacsSource) -> Path:
    """Write (or replace) the record of ``source.case_id`` atomically."""
    content = asdict(source)
    content["n_instances"] = source.n_instances
    text = json.dumps(content, indent=1) + "\n"
    path = record_path(store_root, source.case_id)
    atomic_write_with(path, lambda tmp: Path(tmp).write_text(text))
    return path


def store_salt(store_root: Path) -> bytes:
    """The store's de-identification secret, created on first use (owner-only file)."""
    path = Path(store_root) / PACS_DIR / SALT_NAME
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
                fh.flush()
                os.fsync(fh.fileno())
    salt = path.read_bytes()
    if len(salt) < 16:
        raise StoreError(f"the de-identification salt {path} is damaged (fewer than 16 bytes)")
    return salt
