"""Per-case locks so two annotators never edit the same case unknowingly.

A lock is a row in ``locks`` (case, owner, since). Taking a lock held by someone else raises
:class:`~napari_medseg.errors.LockedError` naming the owner and since when; ``force=True`` breaks
it (for a stale lock left by a crashed session) and records a ``lock_broken`` event. All functions
run inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3

from napari_medseg.errors import LockedError
from napari_medseg.store.schema import utc_now


def lock_holder(conn: sqlite3.Connection, case_id: str) -> tuple[str, str] | None:
    """``(owner, since_utc)`` of the lock on ``case_id``, or ``None``."""
    row = conn.execute("SELECT owner, since_utc FROM locks WHERE case_id = ?", (case_id,)).fetchone()
    return (row["owner"], row["since_utc"]) if row else None


def locked_error(case_id: str, owner: str, since: str, action: str) -> LockedError:
    return LockedError(
        f"case {case_id} is locked by {owner} since {since} UTC; cannot {action} "
        "(ask them to release it, or force-break a stale lock)"
    )


def acquire(conn: sqlite3.Connection, case_id: str, owner: str, force: bool = False) -> None:
    """Lock ``case_id`` for ``owner`` (re-locking by the same owner refreshes the time)."""
    held = lock_holder(conn, case_id)
    now = utc_now()
    if held and held[0] != owner:
        if not force:
            raise locked_error(case_id, held[0], held[1], "lock it")
        conn.execute(
            "INSERT INTO events(case_id, time_utc, author, kind, detail) VALUES (?, ?, ?, 'lock_broken', ?)",
            (case_id, now, owner, f"broke the lock of {held[0]} held since {held[1]}"),
        )
    conn.execute(
        "INSERT OR REPLACE INTO locks(case_id, owner, since_utc) VALUES (?, ?, ?)", (case_id, owner, now)
    )
    conn.execute(
        "INSERT INTO events(case_id, time_utc, author, kind, detail) VALUES (?, ?, ?, 'lock', '')",
        (case_id, now, owner),
    )


def release(conn: sqlite3.Connection, case_id: str, owner: str) -> None:
    """Release ``owner``'s lock; releasing an unlocked case does nothing."""
    held = lock_holder(conn, case_id)
    if held is None:
        return
    if held[0] != owner:
        raise locked_error(case_id, held[0], held[1], "unlock it")
    conn.execute("DELETE FROM locks WHERE case_id = ?", (case_id,))
    conn.execute(
        "INSERT INTO events(case_id, time_utc, author, kind, detail) VALUES (?, ?, ?, 'unlock', '')",
        (case_id, utc_now(), owner),
    )


def require_not_locked_by_other(conn: sqlite3.Connection, case_id: str, who: str, action: str) -> None:
    """Raise ``LockedError`` if ``case_id`` is locked by someone other than ``who``."""
    held = lock_holder(conn, case_id)
    if held and held[0] != who:
        raise locked_error(case_id, held[0], held[1], action)
