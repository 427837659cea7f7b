"""Review queue order: the cases a reviewer should look at first come first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from napari_medseg.store.records import CaseInfo

#: Sort keys the queue accepts.
ORDERS = ("uncertainty", "case", "status")


def queue_order(
    cases: Iterable[CaseInfo], order: str = "uncertainty", statuses: Sequence[str] | None = None
) -> list[CaseInfo]:
    """Cases sorted for review, optionally keeping only some statuses.

    Args:
        cases: from :meth:`CaseStore.cases`.
        order: ``"uncertainty"`` (most uncertain first; unscored cases last, by id), ``"case"`` (by id)
            or ``"status"`` (workflow order new → approved, then by id).
        statuses: keep only cases whose status is in this list (``None`` = all).
    """
    from napari_medseg.store.schema import STATUSES

    if order not in ORDERS:
        raise ValueError(f"unknown queue order {order!r}; use one of {', '.join(ORDERS)}")
    kept = [c for c in cases if statuses is None or c.status in statuses]
    if order == "uncertainty":
        return sorted(kept, key=lambda c: (c.uncertainty is None, -(c.uncertainty or 0.0), c.case_id))
    if order == "status":
        return sorted(kept, key=lambda c: (STATUSES.index(c.status), c.case_id))
    return sorted(kept, key=lambda c: c.case_id)


def neighbour(queue: Sequence[str], current: str | None, step: int) -> str | None:
    """The case ``step`` places after ``current`` in ``queue`` (ids), or ``None`` past either end.

    With no current case (or one not in the queue), ``step > 0`` gives the first case and
    ``step < 0`` the last.
    """
    if not queue:
        return None
    if current not in queue:
        return queue[0] if step > 0 else queue[-1]
    i = list(queue).index(current) + step
    return queue[i] if 0 <= i < len(queue) else None
