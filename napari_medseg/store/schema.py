"""SQLite schema of the case store (``.medseg/store.sqlite``) and how to open it.

Tables:

* ``meta``     key/value: dataset ``name``, ``labels`` (JSON ``{"0": "background", ...}``),
  ``modality``, ``schema_version``.
* ``cases``    one row per case: image file (relative to the store root), image checksum and
  shape, review ``status``, ``approved_version`` (the version in ``labelsTr``), uncertainty score.
* ``versions`` one row per saved label version; append-only (triggers refuse UPDATE/DELETE).
  A version file under ``.medseg/versions`` without a row is an orphan and is ignored.
* ``locks``    at most one lock per case: owner and since when (UTC ISO).
* ``events``   audit trail: imports, saves, status changes, comments, locks, broken locks.

The database runs in WAL mode so readers never block a writer; a writer takes the write lock
with ``BEGIN IMMEDIATE`` before it writes any file, so saves are serialised across processes.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

SCHEMA_VERSION = 1

STATUSES = ("new", "proposed", "in_review", "corrected", "approved")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    case_id          TEXT PRIMARY KEY,
    image_file       TEXT NOT NULL,
    image_checksum   TEXT NOT NULL,
    shape            TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'new'
                     CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    approved_version INTEGER,
    uncertainty      REAL,
    created_utc      TEXT NOT NULL,
    imported_from    TEXT
);
CREATE TABLE IF NOT EXISTS versions (
    case_id             TEXT NOT NULL REFERENCES cases(case_id),
    number              INTEGER NOT NULL,
    author              TEXT NOT NULL,
    created_utc         TEXT NOT NULL,
    source              TEXT NOT NULL,
    parent              INTEGER,
    note                TEXT NOT NULL DEFAULT '',
    is_proposal         INTEGER NOT NULL DEFAULT 0,
    changed_vs_parent   INTEGER,
    changed_vs_proposal INTEGER,
    dice_vs_proposal    REAL,
    image_checksum      TEXT NOT NULL,
    label_checksum      TEXT NOT NULL,
    file_sha256         TEXT NOT NULL,
    file                TEXT NOT NULL,
    PRIMARY KEY (case_id, number)
);
CREATE TRIGGER IF NOT EXISTS versions_are_append_only_update BEFORE UPDATE ON versions
BEGIN SELECT RAISE(ABORT, 'label versions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS versions_are_append_only_delete BEFORE DELETE ON versions
BEGIN SELECT RAISE(ABORT, 'label versions are append-only'); END;
CREATE TABLE IF NOT EXISTS locks (
    case_id   TEXT PRIMARY KEY REFERENCES cases(case_id),
    owner     TEXT NOT NULL,
    since_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id  TEXT,
    time_utc TEXT NOT NULL,
    author   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_by_case ON events(case_id, id);
"""


def utc_now() -> str:
    """Current time as UTC ISO 8601 with milliseconds, e.g. ``2026-11-23T19:40:01.123+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def connect(db_path: Path, create: bool = False) -> sqlite3.Connection:
    """Open the store database in WAL mode with autocommit (transactions are explicit).

    ``busy_timeout`` makes a second writer wait (up to 30 s) instead of failing at once.
    """
    conn = sqlite3.connect(db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    if create:
        conn.executescript(SCHEMA)
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
    return conn
