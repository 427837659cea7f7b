"""The validation cases of a retraining round: approved cases chosen by a stable hash of their id.

A case is in the validation set when ``sha256(case_id)`` mapped to ``[0, 1)`` is below the fraction,
so the choice does not depend on which other cases exist or on a random seed: a case that was used
for validation once stays a validation case in every later round (no leakage into training as the
store grows). At least one approved case is always held out (the one with the smallest hash).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from napari_medseg.errors import InputError


def case_hash(case_id: str) -> float:
    """A number in ``[0, 1)`` fixed by ``case_id`` alone (first 8 bytes of its SHA-256)."""
    digest = hashlib.sha256(case_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass
class RoundSplit:
    """Store items (``CaseStore.training_items()`` dicts) split into training and validation."""

    train: list[dict[str, Any]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    fraction: float = 0.2

    @staticmethod
    def tags(items: Sequence[dict[str, Any]]) -> list[str]:
        """``"<case>:<version>"`` of each item (what the registry records)."""
        return [f"{it['case_id']}:{it['version']}" for it in items]


def split_for_round(items: Sequence[dict[str, Any]], fraction: float = 0.2) -> RoundSplit:
    """Hold out approved cases whose id hashes below ``fraction`` (at least one); train on the rest.

    Raises:
        InputError: no approved case to validate on, or nothing left to train on.
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"the validation fraction must be between 0 and 1, not {fraction}")
    approved = sorted((it for it in items if it["approved"]), key=lambda it: case_hash(it["case_id"]))
    if not approved:
        raise InputError(
            "no approved case to validate on: approve at least two cases before retraining "
            "(one is held out to check that the new model is better)"
        )
    val = [it for it in approved if case_hash(it["case_id"]) < fraction] or approved[:1]
    val_ids = {it["case_id"] for it in val}
    train = [it for it in items if it["case_id"] not in val_ids]
    if not train:
        raise InputError(
            f"all {len(val)} labelled cases are held out for validation; label or approve more cases to train on"
        )
    by_id = lambda it: it["case_id"]  # noqa: E731
    return RoundSplit(sorted(train, key=by_id), sorted(val, key=by_id), fraction)
