"""Validation of case ids and user-supplied names.

A case id becomes part of file names inside the store (``imagesTr/<id>.nii.gz``,
``.medseg/versions/<id>/<n>.nii.gz``), so it must never be able to point outside it: only
letters, digits, ``_``, ``-`` and ``.``, starting with a letter or digit, no ``..``, at most
128 characters. Anything else raises :class:`~napari_medseg.errors.StoreError`.
"""

from __future__ import annotations

import re
from pathlib import Path

from napari_medseg.errors import StoreError

CASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

#: File-name endings stripped to derive a case id from an image file name.
_IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


def validate_case_id(case_id: object) -> str:
    """Return ``case_id`` if it is a safe case id, else raise ``StoreError``."""
    if not isinstance(case_id, str) or not CASE_ID_RE.fullmatch(case_id) or ".." in case_id:
        raise StoreError(
            f"invalid case id {case_id!r}: use 1-128 letters, digits, '_', '-' or '.' "
            "(no slashes, no '..', not starting with '.' or '-')"
        )
    return case_id


def validate_person(name: object, what: str = "author") -> str:
    """Return a non-empty, single-line, stripped person name (author, lock owner)."""
    if not isinstance(name, str) or not name.strip() or "\n" in name or len(name) > 200:
        raise StoreError(f"invalid {what} {name!r}: give a non-empty name on one line")
    return name.strip()


def case_id_from_path(path: str | Path) -> str:
    """Derive a case id from an image path: ``hippocampus_001.nii.gz`` -> ``hippocampus_001``.

    The nnU-Net channel suffix ``_0000`` is dropped; a DICOM folder gives its folder name.
    """
    name = Path(path).name
    for ending in _IMAGE_ENDINGS:
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
            break
    if re.search(r"_\d{4}$", name):
        name = name[:-5]
    return validate_case_id(name)
