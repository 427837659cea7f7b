"""Per-case locks so two annotators never edit the same case unknowingly.

A lock is a row in ``locks`` (case, owner, since, and the process id + host name of the session
that took it). Taking a lock held by someone else raises :class:`~napari_medseg.errors.LockedError`
naming the owner and since when; ``force=True`` breaks it and records a ``lock_broken`` event. A
lock whose process no longer exists on this host (a crashed or killed session) is released by the
next writer that meets it, with a ``lock_released_stale`` event. The lock functions run inside the
caller's transaction.

Also here: who holds SQLite's *write* lock. Each writer notes its process in
``.medseg/writer.json`` right after it gets the lock (:func:`note_writer`), so a process that waited
in vain can say who kept the database busy (:func:`describe_writer`).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sqlite3
import sys
from pathlib import Path

from napari_medseg.errors import LockedError
from napari_medseg.store.schema import utc_now

HOST = socket.gethostname()
WRITER_FILE = "writer.json"


def process_alive(pid: int) -> bool:
    """True unless no process ``pid`` exists on this host (a process of another user counts as alive)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError, ValueError):
        return True
    return True


def release_if_dead(conn: sqlite3.Connection, case_id: str, by: str) -> bool:
    """Release the lock on ``case_id`` if the process that took it no longer exists on this host.

    Records a ``lock_released_stale`` event by ``by``; returns whether a lock was released.
    """
    row = conn.execute(
        "SELECT owner, since_utc, pid, host FROM locks WHERE case_id = ?", (case_id,)
    ).fetchone()
    if row is None or row["pid"] is None or row["host"] != HOST or row["pid"] == os.getpid():
        return False
    if process_alive(row["pid"]):
        return False
    conn.execute("DELETE FROM locks WHERE case_id = ?", (case_id,))
    conn.execute(
        "INSERT INTO events(case_id, time_utc, author, kind, detail) VALUES (?, ?, ?, 'lock_released_stale', ?)",
        (
            case_id,
            utc_now(),
            by,
            f"released the lock of {row['owner']} held since {row['since_utc']}: its process "
            f"{row['pid']} on {row['host']} no longer exists",
        ),
    )
    return True


def note_writer(medseg_dir: Path) -> None:
    """Record this process as the holder of the database write lock (best effort, not synced)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    note = {
        "pid": os.getpid(),
        "host": HOST,
        "user": user,
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200],
        "since_utc": utc_now(),
    }
    with contextlib.suppress(OSError):
        (medseg_dir / WRITER_FILE).write_text(json.dumps(note))


def describe_writer(medseg_dir: Path) -> str:
    """``"process 123 on host h (user u, 'napari-medseg store import ...') since T"`` or ``""`` if unknown."""
    try:
        note = json.loads((medseg_dir / WRITER_FILE).read_text())
        pid, host = int(note["pid"]), str(note["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if pid == os.getpid() or (host == HOST and not process_alive(pid)):
        return ""
    return (
        f"process {pid} on {host} (user {note.get('user', '?')}, '{note.get('command', '')}') "
        f"since {note.get('since_utc', '?')} UTC"
    )


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
    release_if_dead(conn, case_id, owner)
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
        "INSERT OR REPLACE INTO locks(case_id, owner, since_utc, pid, host) VALUES (?, ?, ?, ?, ?)",
        (case_id, owner, now, os.getpid(), HOST),
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
    """Raise ``LockedError`` if ``case_id`` is locked by someone other than ``who`` (a dead process's
    lock is released first, see :func:`release_if_dead`)."""
    release_if_dead(conn, case_id, who)
    held = lock_holder(conn, case_id)
    if held and held[0] != who:
        raise locked_error(case_id, held[0], held[1], action)
