"""Provenance sidecars: the facts of the index kept beside the files, so the index can be rebuilt.

* ``.medseg/versions/<case>/<n>.json`` beside each version file ``<n>.nii.gz``: its ``versions`` row
  (author, time, source, parent, note, proposal flag, changed voxels, Dice, checksums, file).
* ``.medseg/cases/<case>.json``: the case's ``cases`` row as imported (image file, image checksum,
  shape, time, where from).
* ``.medseg/store.json``: the store's name, labels and modality.

Each sidecar is written atomically (temp + fsync + rename) right after the file it describes and
before the database row is committed, so a committed version always has its sidecar; a sidecar
without a committed row is an orphan like its version file. ``napari-medseg store rebuild``
(:mod:`napari_medseg.store.rebuild`) recreates ``store.sqlite`` from them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from napari_medseg.io.atomic import atomic_path

SIDECAR_VERSION = 1


def version_sidecar(version_file: Path) -> Path:
    """``.../<n>.json`` for the version file ``.../<n>.nii.gz``."""
    return version_file.with_name(version_file.name.removesuffix(".nii.gz") + ".json")


def case_sidecar(medseg_dir: Path, case_id: str) -> Path:
    return medseg_dir / "cases" / f"{case_id}.json"


def store_sidecar(medseg_dir: Path) -> Path:
    return medseg_dir / "store.json"


def write_sidecar(path: Path, content: dict[str, Any]) -> Path:
    """Write ``content`` (plus ``sidecar_version``) as JSON to ``path`` atomically (mode 0644)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"sidecar_version": SIDECAR_VERSION, **content}, indent=1) + "\n")
        os.chmod(tmp, 0o644)
    return path


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's content, or ``None`` if it is missing or unreadable (never raises)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None
