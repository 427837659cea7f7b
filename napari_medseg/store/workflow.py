"""Review workflow: the statuses a case goes through and which moves are allowed.

::

    new ──▶ proposed ──▶ in_review ──▶ corrected ──▶ approved
     │         │  ▲          │  ▲          │   ▲        │
     │         │  └─(needs   │  └──────────┘   │        │ (reopen / edit)
     │         │    work)    └─────────────────┤        ▼
     └─────────┴──▶ corrected / in_review      │   in_review, corrected
                    proposed ──▶ approved ─────┘   (accept a proposal as is)

Allowed explicit moves (:data:`ALLOWED`):

* ``new``       → ``proposed``, ``in_review``, ``corrected``
* ``proposed``  → ``in_review``, ``corrected``, ``approved``
* ``in_review`` → ``proposed`` (needs work), ``corrected``, ``approved``
* ``corrected`` → ``in_review``, ``approved``
* ``approved``  → ``in_review``, ``corrected`` (reopen)

Approving needs at least one label version and writes that case's latest version to
``labelsTr/<case>.nii.gz``. Saving a version moves the status automatically
(:func:`status_after_save`): a model proposal moves ``new`` to ``proposed``; a human save moves
any status to ``corrected`` (so an approved case that is edited again must be re-approved; its
``labelsTr`` file keeps the previously approved version until then).
"""

from __future__ import annotations

from napari_medseg.errors import StoreError
from napari_medseg.store.schema import STATUSES

ALLOWED: dict[str, frozenset[str]] = {
    "new": frozenset({"proposed", "in_review", "corrected"}),
    "proposed": frozenset({"in_review", "corrected", "approved"}),
    "in_review": frozenset({"proposed", "corrected", "approved"}),
    "corrected": frozenset({"in_review", "approved"}),
    "approved": frozenset({"in_review", "corrected"}),
}


def check_transition(case_id: str, current: str, new: str) -> None:
    """Raise ``StoreError`` unless ``current -> new`` is an allowed move."""
    if new not in STATUSES:
        raise StoreError(f"unknown status {new!r}: use one of {', '.join(STATUSES)}")
    if new not in ALLOWED[current]:
        allowed = ", ".join(sorted(ALLOWED[current]))
        raise StoreError(f"case {case_id} is '{current}' and cannot become '{new}' (allowed: {allowed})")


def status_after_save(current: str, is_proposal: bool) -> str:
    """Status of a case after a new version is saved (see module docstring)."""
    if is_proposal:
        return "proposed" if current == "new" else current
    return "corrected"
