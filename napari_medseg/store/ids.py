"""Validation of case ids and user-supplied names.

A case id becomes part of file names inside the store (``imagesTr/<id>.nii.gz``,
``.medseg/versions/<id>/<n>.nii.gz``), so it must never be able to point outside it: only
letters, digits, ``_``, ``-`` and ``.``, starting with a letter or digit, no ``..``, at most
128 characters. Anything else raises :class:`~napari_medseg.errors.StoreError`.

A case id derived from a file name (:func:`case_id_from_path`, used by ``store import`` unless
``--case-id`` is given) is mapped to that alphabet: accents are dropped (``Müller`` -> ``Muller``),
every other character outside it (spaces, ``+``, ``(``...) becomes ``_``, runs of ``_`` collapse to
one, ``..`` becomes ``.``, and leading ``-``, ``.`` and ``_`` are removed
(``"-scan 1 (ré).nii.gz"`` -> ``scan_1_re``).
"""

from __future__ import annotations

import re
import unicodedata
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


def id_from_name(name: str) -> str:
    """Map a file or folder name to a valid case id (see the module docstring), or raise ``StoreError``."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9_.\-]", "_", text)
    text = re.sub(r"_+", "_", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = text.lstrip("-._").rstrip("_")[:128]
    if not text:
        raise StoreError(f"cannot make a case id from the name {name!r}; give one with --case-id")
    return validate_case_id(text)


def case_id_from_path(path: str | Path) -> str:
    """Derive a case id from an image path: ``hippocampus_001.nii.gz`` -> ``hippocampus_001``.

    The nnU-Net channel suffix ``_0000`` is dropped; a DICOM folder gives its folder name; names
    outside the case-id alphabet are mapped by :func:`id_from_name`.
    """
    name = Path(path).name
    for ending in _IMAGE_ENDINGS:
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
            break
    if re.search(r"_\d{4}$", name):
        name = name[:-5]
    return id_from_name(name)
