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
with ``BEGIN IMMEDIATE`` before it writes any file, so saves are serialised across processes. A
writer waits at most :data:`DB_WAIT_S` seconds for another one (``MEDSEG_DB_WAIT_S`` overrides it).

A store the user cannot write is opened read-only (``mode=ro``; if SQLite cannot even create its
shared-memory file there, ``immutable=1``), so listing, history, export and evaluation still work.
:func:`check_database` refuses a damaged file at open with one sentence pointing to
``napari-medseg store rebuild``.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from napari_medseg.errors import StoreDamagedError

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
CREATE TRIGGER IF NOT EXISTS events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""

#: Columns added after schema version 1 (``ALTER TABLE`` on open, for stores made before them).
_ADDED_COLUMNS = {"locks": {"pid": "INTEGER", "host": "TEXT"}}

#: Tables a store database must hold.
TABLES = ("meta", "cases", "versions", "locks", "events")

#: Seconds a writer waits for another process's write transaction before giving up.
DB_WAIT_S = float(os.environ.get("MEDSEG_DB_WAIT_S", "30"))

_SQLITE_HEADER = b"SQLite format 3\x00"


def utc_now() -> str:
    """Current time as UTC ISO 8601 with milliseconds, e.g. ``2026-11-23T19:40:01.123+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def connect(db_path: Path, create: bool = False, readonly: bool = False) -> sqlite3.Connection:
    """Open the store database with autocommit (transactions are explicit).

    Read-write: WAL mode, ``synchronous=FULL``, foreign keys, the schema (re)applied (idempotent:
    adds the triggers and columns of newer versions to an older store). ``busy_timeout`` makes a
    second writer wait up to :data:`DB_WAIT_S` instead of failing at once. ``readonly``: ``mode=ro``
    (no write can happen through this connection).
    """
    if readonly:
        conn = _connect_readonly(db_path)
    else:
        conn = sqlite3.connect(db_path, timeout=DB_WAIT_S, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            if create or (_has_tables(conn) and not _schema_current(conn)):
                conn.executescript(SCHEMA)
                _add_columns(conn)
            if create:
                conn.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
        except BaseException:
            conn.close()
            raise
    return conn


def _connect_readonly(db_path: Path) -> sqlite3.Connection:
    uri = Path(db_path).resolve().as_uri()
    for params in ("mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(
            f"{uri}?{params}", uri=True, timeout=DB_WAIT_S, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            # WAL database in a folder we cannot write, without a -shm file: only immutable reads work
            conn.close()
            if params != "mode=ro":
                raise
    raise AssertionError("unreachable")


def _has_tables(conn: sqlite3.Connection) -> bool:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set(TABLES) <= names


def _schema_current(conn: sqlite3.Connection) -> bool:
    """True when the newest triggers and columns exist (so opening needs no write at all)."""
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    if "events_are_append_only_delete" not in triggers:
        return False
    for table, columns in _ADDED_COLUMNS.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if not set(columns) <= have:
            return False
    return True


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def check_database(db_path: Path, conn: sqlite3.Connection | None, root: Path) -> None:
    """Refuse a damaged store database with one sentence pointing to ``store rebuild``.

    Checks the file header, that every table of :data:`TABLES` exists and SQLite's
    ``PRAGMA quick_check`` (milliseconds for a store index). With ``conn=None`` only the file is checked.

    Raises:
        StoreDamagedError: empty, truncated, not SQLite, missing tables, or failed quick_check.
    """

    def damaged(what: str) -> StoreDamagedError:
        return StoreDamagedError(
            f"the case store database {db_path} is damaged ({what}); run 'napari-medseg store rebuild "
            f"{root}' to recreate it from the saved versions (nothing in versions/ is lost)"
        )

    with open(db_path, "rb") as fh:
        head = fh.read(len(_SQLITE_HEADER))
    if not head:
        raise damaged("the file is empty")
    if head != _SQLITE_HEADER:
        raise damaged("it is not an SQLite database")
    if conn is None:
        return
    try:
        if not _has_tables(conn):
            raise damaged("tables are missing")
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as err:
        if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
            raise
        raise damaged(str(err)) from None
    if result != "ok":
        raise damaged(f"integrity check: {result[:120]}")
