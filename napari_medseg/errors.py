"""User-facing error types, and the one sentence shown for any fault a user can cause.

Every error a clinician can trigger (bad file, stale save, missing model...) is a
``MedsegError`` whose message is one readable sentence. Faults of the environment (disk full,
permission denied, a path that is a file instead of a folder, a database another process keeps
locked or a damaged one) arrive as ``OSError``/``sqlite3.Error``; :func:`user_message` turns them
into one sentence too. The CLI prints ``error: <message>`` and exits with code 2; the napari widgets
show it as a notification. Anything else is a bug: the CLI prints one line naming a file that holds
the traceback and exits with code 3.

Exit codes of ``napari-medseg``: 0 done; 1 done, but problems were found or some cases failed (listed
above the exit); 2 nothing (more) was done because of an error in the input or the environment (one
``error:`` line); 3 internal error (a bug); 130 interrupted (Ctrl-C) or cancelled.
"""

from __future__ import annotations

import sqlite3


class MedsegError(Exception):
    """Base class: ``str(err)`` is a complete, one-line message for the user."""

    exit_code = 2


class InputError(MedsegError):
    """A file, folder or array given by the user cannot be used (corrupt, wrong shape, NaNs...)."""


class GeometryError(InputError):
    """Two volumes that must share a voxel grid do not (shape or affine mismatch)."""


class StoreError(MedsegError):
    """The case store refused an operation (unknown case, invalid id, locked case...)."""


class StaleSaveError(StoreError):
    """A save was based on a label version that is no longer the latest one."""


class LockedError(StoreError):
    """The case is locked by another annotator."""


class CheckpointError(MedsegError):
    """A model checkpoint is missing, tampered with, or does not match its card."""


class Cancelled(MedsegError):
    """A long-running operation was cancelled by the user."""

    exit_code = 130


class StoreBusyError(StoreError):
    """Another process kept the store's database locked for longer than the bounded wait."""


class StoreDamagedError(StoreError):
    """The store's database file is corrupt, truncated or not a store database (see ``store rebuild``)."""


class ReadOnlyStoreError(StoreError):
    """A write was asked of a store opened read-only (the user cannot write to its folder)."""


#: What to do about each operating-system error, keyed by ``errno`` name.
_OS_ADVICE = {
    "ENOSPC": "no space left on the disk; free some space or choose a folder on another disk",
    "EDQUOT": "disk quota exceeded; free some space or choose a folder on another disk",
    "EACCES": "permission denied; choose a folder you can write to, or ask its owner for access",
    "EPERM": "operation not permitted; choose a folder you can write to, or ask its owner for access",
    "EROFS": "the file system is read-only; choose a folder on a writable disk",
    "ENOTDIR": "a part of this path is a file, not a folder; give a folder path",
    "EISDIR": "this is a folder, but a file was expected; give a file path",
    "ENOENT": "no such file or folder; check the path",
    "EEXIST": "it already exists; choose a new name",
    "ENOTEMPTY": "the folder is not empty; choose a new or empty folder",
    "ENAMETOOLONG": "the path is too long; choose a shorter one",
    "EIO": "input/output error (failing disk or network share?); copy your data elsewhere and retry",
    "EMFILE": "too many open files; close other programs and retry",
    "ELOOP": "too many symbolic links; give the real path",
}


def os_error_message(err: OSError) -> str:
    """One sentence for an operating-system error that names the path and what to do, e.g.
    ``"cannot write /data/out/x.csv: no space left on the disk; free some space ..."``."""
    import errno as _errno

    name = _errno.errorcode.get(err.errno or 0, "")
    advice = _OS_ADVICE.get(name) or (err.strerror or str(err) or type(err).__name__)
    paths = [p for p in (err.filename, err.filename2) if p]
    where = " -> ".join(str(p) for p in paths)
    return f"{where}: {advice}" if where else advice


def user_message(err: BaseException) -> str | None:
    """The one-line message for a fault a user can cause, or ``None`` for a bug.

    ``MedsegError`` gives its own sentence; ``OSError`` names the path and what to do
    (:func:`os_error_message`); SQLite errors that reach here (outside the store's own checks) say
    whether the database was busy or damaged; ``MemoryError`` says the input is too large.
    """
    if isinstance(err, MedsegError):
        return str(err)
    if isinstance(err, OSError):
        return os_error_message(err)
    if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
        return "the case store is busy: another process kept its database locked; retry when it has finished"
    if isinstance(err, sqlite3.OperationalError) and "readonly" in str(err).replace(" ", ""):
        return "the case store cannot be written (read-only file or folder); ask its owner for write access"
    if isinstance(err, sqlite3.DatabaseError):
        return (
            f"the case store database is damaged ({err}); run 'napari-medseg store rebuild DIR' to recreate "
            "it from the saved versions"
        )
    if isinstance(err, MemoryError):
        return "not enough memory for this input; try a smaller scan or close other programs"
    return None


class PacsError(MedsegError):
    """A PACS could not be reached, refused a request, or answered with something that is not DICOM."""
