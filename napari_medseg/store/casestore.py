"""``CaseStore``: a dataset folder with versioned, reviewed label maps.

Layout of a store folder (MSD / nnU-Net naming, readable by nnU-Net and MONAI)::

    ROOT/
      dataset.json                    MSD index of the cases with an approved label
      imagesTr/<case>.nii.gz          the images (copied in on import, never modified)
      labelsTr/<case>.nii.gz          the latest *approved* label version of each case
      .medseg/store.sqlite            cases, versions + provenance, statuses, locks, events (WAL)
      .medseg/versions/<case>/<n>.nii.gz   every saved label version, append-only
      .medseg/orphans/                files moved aside by ``store check --clean``

Guarantees:

* Nothing is overwritten: a save creates version ``n + 1``; version files are written with
  ``atomic_path(exclusive=True)`` and the ``versions`` table refuses UPDATE/DELETE.
* A save is atomic: the writer takes SQLite's write lock (``BEGIN IMMEDIATE``), writes the label
  file (temp + fsync + hard link), then inserts its row and commits. Killed in between, the file is
  an orphan without a row: readers ignore it and the next save (or ``store check --clean``) moves
  it aside.
* ``labelsTr`` and ``dataset.json`` are rewritten atomically (temp + rename) when a case is
  approved.
* Concurrency: per-case locks (:mod:`~napari_medseg.store.locking`) and stale-save detection
  (``parent`` must be the latest version, else :class:`~napari_medseg.errors.StaleSaveError`).

Label arrays are ``(I, J, K)`` integer maps on the case image's voxel grid (see
:class:`~napari_medseg.io.volume.Volume`); values must be declared labels of the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_medseg.errors import (
    GeometryError,
    InputError,
    MedsegError,
    ReadOnlyStoreError,
    StaleSaveError,
    StoreBusyError,
    StoreDamagedError,
    StoreError,
    user_message,
)
from napari_medseg.io.atomic import TMP_PREFIX, atomic_path, fsync_dir
from napari_medseg.io.dataset_json import read_dataset_json
from napari_medseg.io.validate import label_dtype
from napari_medseg.io.volume import Volume, array_checksum
from napari_medseg.store import locking, msd, schema, sidecar
from napari_medseg.store.check import CheckReport
from napari_medseg.store.ids import case_id_from_path, validate_case_id, validate_person
from napari_medseg.store.provenance import changed_voxels, file_sha256, mean_foreground_dice, validate_source
from napari_medseg.store.records import CaseInfo, Event, ImportReport, VersionInfo
from napari_medseg.store.schema import STATUSES, check_database, connect, utc_now
from napari_medseg.store.workflow import check_transition, status_after_save

MEDSEG_DIR = ".medseg"
DB_NAME = "store.sqlite"
DEFAULT_LABELS = {0: "background", 1: "foreground"}
#: Images kept in memory after their case was read: the most recent one always (the open case's, which its
#: session holds anyway, and which every save of it needs), older ones while they take at most
#: ``IMAGE_CACHE_EXTRA_BYTES`` together, :data:`IMAGE_CACHE_ENTRIES` in all. A count alone kept four whole
#: CTs (150 MiB each) for a reviewer who had moved on (bench/RESULTS.md, session 9).
IMAGE_CACHE_ENTRIES = 4
IMAGE_CACHE_EXTRA_BYTES = 256 * 2**20


def labels_checksum(labels: np.ndarray) -> str:
    """Checksum of a label map independent of its integer dtype and memory order (values as int32).

    Equal to ``array_checksum(labels.astype(np.int32))``, hashed in C-ordered slabs
    (:func:`~napari_medseg.io.volume.c_order_chunks`), so a Fortran-ordered map (as loaded from NIfTI)
    is never copied whole.
    """
    return array_checksum(labels, np.int32)


def _like(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``other`` in the memory order of ``reference`` (a copy only when C and Fortran orders differ).

    Comparing a C-ordered with a Fortran-ordered 512x512x300 map elementwise takes seconds.
    """
    other = np.asarray(other)
    if reference.flags.f_contiguous and not reference.flags.c_contiguous and not other.flags.f_contiguous:
        return np.asfortranarray(other)
    if reference.flags.c_contiguous and not reference.flags.f_contiguous and not other.flags.c_contiguous:
        return np.ascontiguousarray(other)
    return other


def _present_values(arr: np.ndarray) -> np.ndarray:
    """Distinct values of an integer array; one counting pass for 8/16-bit unsigned labels (no sort)."""
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) < 256:
        top = int(arr.max())  # one fast pass; a value is then looked for only when it is not 0 or the max
        rest = [v for v in range(1, top) if np.any(arr == v)] if top > 1 else []
        return np.array(sorted({0, *rest, top} if np.any(arr == 0) else {*rest, top}))
    return np.unique(arr)


def _readable(path: Path) -> None:
    """Give store files the usual rw-r--r-- mode (temporary files are created owner-only)."""
    os.chmod(path, 0o644)


def can_write(root: Path) -> bool:
    """Whether this user may write the store's folders and database files (a read-only mount counts)."""
    medseg = root / MEDSEG_DIR
    paths = [root, root / "imagesTr", root / "labelsTr", medseg, medseg / "versions", medseg / DB_NAME]
    paths += [medseg / f"{DB_NAME}{s}" for s in ("-wal", "-shm")]
    return all(os.access(p, os.W_OK) for p in paths if p.exists())


def _stamp() -> str:
    return utc_now().replace(":", "").replace("+0000", "Z")


@dataclass
class _PreparedVersion:
    """A label version written (fsync-ed temp file) and counted, before its database row exists."""

    latest: int | None
    parent: int | None
    proposal: int | None = None
    changed_parent: int | None = None
    changed_prop: int | None = None
    dice: float | None = None
    label_checksum: str = ""
    file_sha: str = ""
    tmp: Path | None = None

    def publish(self, dest: Path) -> None:
        """Hard-link the temp file to ``dest`` (never replacing a file) and make the link durable."""
        assert self.tmp is not None
        try:
            os.link(self.tmp, dest)
        except FileExistsError:
            raise StoreError(f"refusing to overwrite existing file {dest}") from None
        fsync_dir(dest.parent)

    def discard(self) -> None:
        """Remove the temp file (after publishing, ``dest`` keeps the data)."""
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


class CaseStore:
    """A case store folder; open with :meth:`init` (new) or :meth:`open` (existing).

    One instance holds one SQLite connection and may be used from several threads; several
    processes may open the same folder at once.
    """

    def __init__(self, root: str | Path, write: bool | None = None) -> None:
        """Use :meth:`open` or :meth:`init` instead."""
        self.root = Path(root).resolve()
        self._db_path = self.root / MEDSEG_DIR / DB_NAME
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is a file, not a case store folder")
        if not self._db_path.is_file():
            raise StoreError(
                f"{self.root} is not a case store (no {MEDSEG_DIR}/{DB_NAME}); run 'store init' first"
            )
        #: Whether this user may change the store (folders and database file writable).
        self.writable = can_write(self.root)
        if write and not self.writable:
            raise ReadOnlyStoreError(
                f"you cannot write to the case store {self.root} (no write permission on its files); "
                "ask its owner for write access, or work on a copy"
            )
        #: Opened read-only (``mode=ro``): every write raises :class:`ReadOnlyStoreError`.
        self.read_only = not self.writable if write is None else not write
        check_database(self._db_path, None, self.root)
        try:
            self._conn = connect(self._db_path, readonly=self.read_only)
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
                raise self._busy_error() from None
            check_database(self._db_path, None, self.root)
            raise StoreDamagedError(
                f"the case store database {self._db_path} is damaged ({err}); run 'napari-medseg store "
                f"rebuild {self.root}' to recreate it from the saved versions"
            ) from None
        try:
            check_database(self._db_path, self._conn, self.root)
        except BaseException:
            self._conn.close()
            raise
        self._lock = threading.RLock()
        self._images: OrderedDict[str, Volume] = OrderedDict()
        #: Cases whose ``labelsTr`` file was repaired when the store was opened.
        self.repaired: list[str] = []
        if not self.read_only:
            self._repair_published()

    # ------------------------------------------------------------------ opening
    @classmethod
    def init(
        cls,
        root: str | Path,
        name: str = "",
        labels: dict[int, str] | None = None,
        modality: str = "MRI",
    ) -> CaseStore:
        """Create a new, empty store in ``root`` (a new or empty folder, or one without a store)."""
        root = Path(root).resolve()
        if (root / MEDSEG_DIR / DB_NAME).exists():
            raise StoreError(f"{root} already holds a case store; open it instead")
        labels = dict(DEFAULT_LABELS if labels is None else labels)
        if 0 not in labels or any(not isinstance(k, int) or k < 0 for k in labels):
            raise StoreError("labels must map non-negative integers to names and include 0 (background)")
        label_dtype(max(labels))  # refuses values no label file can hold (2**31 and above)
        for sub in ("imagesTr", "labelsTr", f"{MEDSEG_DIR}/versions"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        conn = connect(root / MEDSEG_DIR / DB_NAME, create=True)
        meta = {"name": name or root.name, "labels": json.dumps(labels), "modality": modality}
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
        conn.close()
        store = cls(root)
        store._write_store_sidecar()
        store._refresh_dataset_json()
        return store

    @classmethod
    def open(cls, root: str | Path, write: bool | None = None) -> CaseStore:
        """Open an existing store.

        ``write=None``: read-write if this user can write the store, else read-only (see
        :attr:`writable`); ``False``: read-only (``mode=ro``, for commands that only read);
        ``True``: read-write or :class:`ReadOnlyStoreError`.

        Raises:
            StoreError: not a store; StoreDamagedError: the database is damaged (see ``store rebuild``).
        """
        return cls(root, write=write)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ metadata
    def _meta(self, key: str) -> str:
        row = self._read_one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else ""

    @property
    def name(self) -> str:
        return self._meta("name")

    @property
    def modality(self) -> str:
        return self._meta("modality")

    @property
    def labels(self) -> dict[int, str]:
        """Declared label values and their names, e.g. ``{0: "background", 1: "Anterior"}``."""
        return {int(k): v for k, v in json.loads(self._meta("labels")).items()}

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Hold SQLite's write lock (all processes) for the body; commit on success."""
        if self.read_only:
            raise ReadOnlyStoreError(
                f"the case store {self.root} is open read-only"
                + ("" if self.writable else " (you have no write permission on it)")
                + "; nothing was changed"
            )
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as err:
                if "locked" in str(err) or "busy" in str(err):
                    raise self._busy_error() from None
                raise
            locking.note_writer(self.root / MEDSEG_DIR)
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # keep the original error, not ROLLBACK's
                        self._conn.execute("ROLLBACK")
                raise

    def _busy_error(self) -> StoreBusyError:
        holder = locking.describe_writer(self.root / MEDSEG_DIR)
        return StoreBusyError(
            f"the case store {self.root} stayed locked by another process for {schema.DB_WAIT_S:g} s"
            + (f" ({holder})" if holder else "")
            + "; nothing was changed - retry when it has finished"
        )

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """Run a read query under the instance lock (the connection is shared between threads)."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _read_one(self, sql: str, params: tuple = ()) -> sqlite3.Row | None:
        rows = self._read(sql, params)
        return rows[0] if rows else None

    def _case_row(self, case_id: str, conn: sqlite3.Connection | None = None) -> sqlite3.Row:
        case_id = validate_case_id(case_id)
        sql = "SELECT * FROM cases WHERE case_id = ?"
        row = conn.execute(sql, (case_id,)).fetchone() if conn else self._read_one(sql, (case_id,))
        if row is None:
            raise StoreError(f"no case {case_id!r} in the store {self.root}")
        return row

    # ------------------------------------------------------------------ paths
    def image_path(self, case_id: str) -> Path:
        return self.root / self._case_row(case_id)["image_file"]

    def approved_label_path(self, case_id: str) -> Path:
        """``labelsTr/<case>.nii.gz`` (exists once the case has been approved)."""
        return self.root / "labelsTr" / f"{validate_case_id(case_id)}.nii.gz"

    def _version_rel(self, case_id: str, number: int) -> str:
        return f"{MEDSEG_DIR}/versions/{case_id}/{number}.nii.gz"

    def _quarantine(self, path: Path) -> Path:
        """Move a file without a database row aside to ``.medseg/orphans`` (never deleted); a version
        file's sidecar goes with it."""
        if path.name.endswith(".nii.gz") and sidecar.version_sidecar(path).exists():
            self._quarantine(sidecar.version_sidecar(path))
        rel = path.relative_to(self.root)
        dest = self.root / MEDSEG_DIR / "orphans" / rel.parent / f"{_stamp()}-{rel.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        path.rename(dest)
        return dest

    # ------------------------------------------------------------------ cases
    def case_ids(self) -> list[str]:
        """All case ids, sorted."""
        return [r[0] for r in self._read("SELECT case_id FROM cases ORDER BY case_id")]

    def cases(self) -> list[CaseInfo]:
        """One :class:`CaseInfo` per case, sorted by case id."""
        rows = self._read(
            """
            SELECT c.case_id, c.status, c.uncertainty, c.image_file, c.approved_version,
                   (SELECT COUNT(*) FROM versions v WHERE v.case_id = c.case_id) AS n_versions,
                   (SELECT author FROM versions v WHERE v.case_id = c.case_id
                    ORDER BY number DESC LIMIT 1) AS last_editor,
                   l.owner, l.since_utc
            FROM cases c LEFT JOIN locks l ON l.case_id = c.case_id
            ORDER BY c.case_id
            """
        )
        return [
            CaseInfo(
                case_id=r["case_id"],
                status=r["status"],
                n_versions=r["n_versions"],
                last_editor=r["last_editor"],
                lock_owner=r["owner"],
                uncertainty=r["uncertainty"],
                image_path=self.root / r["image_file"],
                lock_since=r["since_utc"],
                approved_version=r["approved_version"],
            )
            for r in rows
        ]

    def case(self, case_id: str) -> CaseInfo:
        """The :class:`CaseInfo` of one case."""
        case_id = self._case_row(case_id)["case_id"]
        return next(c for c in self.cases() if c.case_id == case_id)

    def import_case(
        self,
        image_path: str | Path,
        label_path: str | Path | None = None,
        case_id: str | None = None,
        author: str = "import",
        approved: bool = False,
    ) -> str:
        """Copy an image (NIfTI file or DICOM folder) and optionally its labels into the store.

        The image goes to ``imagesTr/<case>.nii.gz``. Labels (on the image grid, else
        ``GeometryError``) become version 1 with source ``human``; the case is then ``approved``
        (``labelsTr`` written) if ``approved`` else ``proposed`` (awaiting review). Returns the case id.
        """
        case_id, _ = self._import_one(image_path, label_path, case_id, author, approved)
        if approved:
            self.publish_approved([case_id])
        return case_id

    def import_many(
        self,
        pairs: Iterable[tuple[str | Path, str | Path | None]],
        author: str = "import",
        approved: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Import ``(image, label or None)`` pairs, stopping at the first error; ``dataset.json`` is written
        once at the end. ``progress(done, total)`` is called after each case. Returns the new case ids."""
        return self.import_batch(pairs, author, approved, progress, keep_going=False).imported

    def import_batch(
        self,
        pairs: Iterable[tuple[str | Path, str | Path | None]],
        author: str = "import",
        approved: bool = False,
        progress: Callable[[int, int], None] | None = None,
        skip_existing: bool = False,
        case_ids: list[str] | None = None,
        keep_going: bool = True,
    ) -> ImportReport:
        """Import ``(image, label or None)`` pairs; one bad case does not stop the others.

        ``case_ids`` gives each pair's case id (default: from its file name, see
        :func:`~napari_medseg.store.ids.case_id_from_path`). ``skip_existing`` skips a case already in
        the store with the same image (so an interrupted import can be run again); the same id with
        another image is a failure. With ``keep_going`` a case that fails (unreadable file, labels off
        the grid...) is recorded in :attr:`ImportReport.failed` and the next one is tried; without it
        the first error is raised. ``labelsTr``/``dataset.json`` are published once at the end.
        """
        pairs = list(pairs)
        if case_ids is not None and len(case_ids) != len(pairs):
            raise InputError(f"got {len(case_ids)} case ids for {len(pairs)} scans; give one per scan")
        report = ImportReport()
        try:
            for i, (image, label) in enumerate(pairs):
                try:
                    case_id, imported = self._import_one(
                        image,
                        label,
                        None if case_ids is None else case_ids[i],
                        author,
                        approved,
                        skip_existing,
                    )
                except (MedsegError, OSError) as err:
                    if not keep_going or isinstance(err, ReadOnlyStoreError | StoreBusyError):
                        raise
                    report.failed.append((str(image), user_message(err) or str(err)))
                else:
                    (report.imported if imported else report.skipped).append(case_id)
                if progress is not None:
                    progress(i + 1, len(pairs))
        except BaseException:
            # publish what was imported, but never let this hide the error that stopped us
            if report.imported:
                with contextlib.suppress(Exception):
                    self.publish_approved(report.imported if approved else [])
            raise
        self.publish_approved(report.imported if approved else [])
        return report

    def import_msd_folder(
        self,
        folder: str | Path,
        limit: int | None = None,
        author: str = "import",
        approved: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Import the training cases of an MSD folder (``dataset.json`` + ``imagesTr``).

        ``limit`` takes the first N cases in ``dataset.json`` order. An empty store adopts the
        folder's label names.
        """
        index = read_dataset_json(folder)
        pairs = index.training[:limit] if limit is not None else index.training
        if not self.case_ids() and index.labels:
            self.adopt_labels(index.labels, author)
        return self.import_batch(pairs, author, approved, progress, keep_going=False).imported

    def adopt_labels(self, labels: dict[int, str], author: str) -> None:
        """Declare ``labels`` (``{value: name}``, with 0) for a store that has no case yet."""
        author = validate_person(author)
        if 0 not in labels or any(not isinstance(k, int) or k < 0 for k in labels):
            raise StoreError("labels must map non-negative integers to names and include 0 (background)")
        label_dtype(max(labels))
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM cases LIMIT 1").fetchone():
                raise StoreError(f"the store {self.root} already holds cases; its labels cannot change")
            text = json.dumps({str(k): v for k, v in sorted(labels.items())})
            conn.execute("UPDATE meta SET value = ? WHERE key = 'labels'", (text,))
            self._event(conn, None, author, "labels", text)
        self._write_store_sidecar()

    def _import_one(
        self,
        image_path: str | Path,
        label_path: str | Path | None,
        case_id: str | None,
        author: str,
        approved: bool,
        skip_existing: bool = False,
    ) -> tuple[str, bool]:
        """Import one case; returns ``(case_id, imported)`` (``False``: skipped, already there)."""
        from napari_medseg.io import load_labels, load_volume, save_volume

        author = validate_person(author)
        case_id = validate_case_id(case_id) if case_id is not None else case_id_from_path(image_path)
        image_path = Path(image_path)
        image = load_volume(image_path)
        labels = load_labels(label_path, reference=image).array if label_path is not None else None
        if labels is not None:
            labels = self._check_labels(case_id, labels, image.shape)
        rel = f"imagesTr/{case_id}.nii.gz"
        dest = self.root / rel
        with self._write() as conn:
            existing = conn.execute(
                "SELECT image_checksum FROM cases WHERE case_id = ?", (case_id,)
            ).fetchone()
            if existing is not None:
                if skip_existing and existing[0] == image.checksum:
                    return case_id, False
                raise StoreError(
                    f"case {case_id} is already in the store"
                    + (" with a different image" if skip_existing else "")
                    + "; give it another id with --case-id"
                    + ("" if skip_existing else ", or resume an interrupted import with --skip-existing")
                )
            if dest.exists():  # left by an import that was killed before its commit
                self._quarantine(dest)
            if image_path.is_file() and image_path.name.lower().endswith(".nii.gz"):
                with atomic_path(dest, exclusive=True) as tmp:
                    shutil.copyfile(image_path, tmp)
                    _readable(tmp)
                checksum = image.checksum
            else:
                with atomic_path(dest, exclusive=True) as tmp:
                    save_volume(image, tmp)
                    _readable(tmp)
                    checksum = load_volume(tmp).checksum
            now = utc_now()
            row = dict(
                case_id=case_id,
                image_file=rel,
                image_checksum=checksum,
                shape=json.dumps(list(image.shape)),
                created_utc=now,
                imported_from=str(image_path.resolve()),
            )
            sidecar.write_sidecar(sidecar.case_sidecar(self.root / MEDSEG_DIR, case_id), row)
            conn.execute(
                f"INSERT INTO cases({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
            self._event(conn, case_id, author, "import", f"image {image_path}")
            if labels is not None:
                self._insert_version(
                    conn, case_id, labels, image, author, "human", None, f"imported from {label_path}", False
                )
                conn.execute(
                    "UPDATE cases SET status = ? WHERE case_id = ?",
                    ("approved" if approved else "proposed", case_id),
                )
                if approved:  # labelsTr/ is written by publish_approved, after the commit
                    conn.execute("UPDATE cases SET approved_version = 1 WHERE case_id = ?", (case_id,))
        return case_id, True

    # ------------------------------------------------------------------ loading
    def load_image(self, case_id: str) -> Volume:
        """The case's image as a :class:`Volume` (``(I, J, K)``, affine voxel -> RAS+ mm)."""
        from napari_medseg.io import load_volume

        case_id = validate_case_id(case_id)
        with self._lock:
            if case_id in self._images:
                self._images.move_to_end(case_id)
                return self._images[case_id]
        row = self._case_row(case_id)
        path = self.root / row["image_file"]
        if not path.is_file():
            raise StoreDamagedError(
                f"the image of case {case_id} is missing ({path}); run 'napari-medseg store check'"
            )
        vol = load_volume(path)
        if vol.checksum != row["image_checksum"]:
            raise StoreDamagedError(
                f"the image of case {case_id} ({path}) is not the one imported (its checksum differs); "
                "it was not used - restore the original file (run 'napari-medseg store check')"
            )
        with self._lock:
            self._images[case_id] = vol
            self._trim_image_cache()
        return vol

    def _trim_image_cache(self) -> None:
        """Drop the least recently read images beyond :data:`IMAGE_CACHE_ENTRIES` or the byte budget."""
        older = list(self._images.values())[:-1]  # the most recent one always stays
        extra = sum(int(v.array.nbytes) for v in older)
        while older and (len(self._images) > IMAGE_CACHE_ENTRIES or extra > IMAGE_CACHE_EXTRA_BYTES):
            extra -= int(older.pop(0).array.nbytes)
            self._images.popitem(last=False)

    def load_label(self, case_id: str, version: int | None = None) -> Volume | None:
        """A label version (default: the latest) as a :class:`Volume`, ``None`` if the case has none."""
        from napari_medseg.io import load_labels

        info = self.latest_version(case_id) if version is None else self.version(case_id, version)
        if info is None:
            return None
        self.verify_version(info, case_id, "loaded")
        return load_labels(info.path)

    # ------------------------------------------------------------------ versions
    def _row_to_version(self, r: sqlite3.Row) -> VersionInfo:
        return VersionInfo(
            number=r["number"],
            author=r["author"],
            created_utc=r["created_utc"],
            source=r["source"],
            parent=r["parent"],
            note=r["note"],
            changed_vs_parent=r["changed_vs_parent"],
            changed_vs_proposal=r["changed_vs_proposal"],
            dice_vs_proposal=r["dice_vs_proposal"],
            image_checksum=r["image_checksum"],
            path=self.root / r["file"],
            is_proposal=bool(r["is_proposal"]),
            label_checksum=r["label_checksum"],
            file_sha256=r["file_sha256"],
        )

    def versions(self, case_id: str) -> list[VersionInfo]:
        """All versions of a case, oldest first."""
        case_id = self._case_row(case_id)["case_id"]
        rows = self._read("SELECT * FROM versions WHERE case_id = ? ORDER BY number", (case_id,))
        return [self._row_to_version(r) for r in rows]

    def version(self, case_id: str, number: int) -> VersionInfo:
        """One version; ``StoreError`` if it does not exist."""
        case_id = self._case_row(case_id)["case_id"]
        r = self._read_one("SELECT * FROM versions WHERE case_id = ? AND number = ?", (case_id, int(number)))
        if r is None:
            raise StoreError(f"case {case_id} has no label version {number}")
        return self._row_to_version(r)

    def latest_version(self, case_id: str) -> VersionInfo | None:
        """The newest version (of any source), or ``None``."""
        case_id = self._case_row(case_id)["case_id"]
        r = self._read_one(
            "SELECT * FROM versions WHERE case_id = ? ORDER BY number DESC LIMIT 1", (case_id,)
        )
        return self._row_to_version(r) if r else None

    def proposal(self, case_id: str) -> VersionInfo | None:
        """The newest model proposal (``is_proposal``), or ``None``."""
        case_id = self._case_row(case_id)["case_id"]
        r = self._read_one(
            "SELECT * FROM versions WHERE case_id = ? AND is_proposal = 1 ORDER BY number DESC LIMIT 1",
            (case_id,),
        )
        return self._row_to_version(r) if r else None

    def _check_labels(self, case_id: str, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        arr = np.asarray(labels)
        if tuple(arr.shape) != tuple(shape):
            raise GeometryError(
                f"labels of shape {tuple(arr.shape)} do not match the image grid {tuple(shape)} of case {case_id}"
            )
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"labels for case {case_id} must be an integer array, got {arr.dtype}")
        top = int(arr.max()) if arr.size else 0
        declared = set(self.labels)
        if arr.size and int(arr.min()) >= 0 and declared >= set(range(top + 1)):
            unknown: list[int] = []  # every value up to the maximum is declared: nothing to look for
        else:
            unknown = sorted(set(_present_values(arr).tolist()) - declared)
        if unknown:
            raise InputError(
                f"labels for case {case_id} contain values {unknown[:5]} that are not declared labels "
                f"({', '.join(f'{k}={v}' for k, v in self.labels.items())})"
            )
        return arr.astype(label_dtype(max(self.labels)), copy=False)

    def save_version(
        self,
        case_id: str,
        labels: np.ndarray,
        author: str,
        source: str = "human",
        parent: int | None = None,
        note: str = "",
        is_proposal: bool = False,
        *,
        known_labels: Mapping[int, np.ndarray] | None = None,
    ) -> VersionInfo:
        """Save ``labels`` (``(I, J, K)`` integers on the image grid) as a new version.

        ``parent`` is the version the labels were edited from; if it is not the latest version
        the save is refused with ``StaleSaveError`` naming who saved in between (save again with
        ``parent=<latest>`` to keep your work as a new version). ``parent=None`` means "on top of
        the latest version" (no stale check). Refused with ``LockedError`` if someone else holds
        the case's lock. ``known_labels`` maps version numbers to label arrays the caller already
        holds (the opened version, the proposal): change counts use them instead of reading those
        files. Returns the new version's :class:`VersionInfo`.

        The file is compressed, written and fsync-ed *before* the database write lock is taken; the
        transaction only re-checks lock and parent, links the file in place and inserts its row, so
        other processes (comments, status changes, other cases' saves) wait milliseconds, not seconds.
        """
        author = validate_person(author)
        source = validate_source(source)
        row = self._case_row(case_id)
        case_id = row["case_id"]
        arr = self._check_labels(case_id, labels, tuple(json.loads(row["shape"])))
        image = self.load_image(case_id)
        for _attempt in range(3):
            prepared = self._prepare_version(case_id, arr, image, parent, is_proposal, known_labels)
            try:
                with self._write() as conn:
                    locking.require_not_locked_by_other(conn, case_id, author, "save a new version")
                    if not self._still_current(conn, case_id, prepared):
                        continue  # someone saved in between: recount against the new latest version
                    info = self._commit_version(conn, case_id, prepared, author, source, note, is_proposal)
                    status = conn.execute(
                        "SELECT status FROM cases WHERE case_id = ?", (case_id,)
                    ).fetchone()[0]
                    new_status = status_after_save(status, is_proposal)
                    if new_status != status:
                        conn.execute("UPDATE cases SET status = ? WHERE case_id = ?", (new_status, case_id))
                        self._event(
                            conn,
                            case_id,
                            author,
                            "status",
                            f"{status} -> {new_status} (saved version {info.number})",
                        )
                return info
            finally:
                prepared.discard()
        raise StoreError(f"case {case_id} kept changing while saving; nothing was saved - try again")

    def _insert_version(
        self,
        conn: sqlite3.Connection,
        case_id: str,
        arr: np.ndarray,
        image: Volume,
        author: str,
        source: str,
        parent: int | None,
        note: str,
        is_proposal: bool,
    ) -> VersionInfo:
        """Write version ``latest + 1`` and its row while the caller holds the write transaction (import)."""
        prepared = self._prepare_version(case_id, arr, image, parent, is_proposal, None, conn)
        try:
            return self._commit_version(conn, case_id, prepared, author, source, note, is_proposal)
        finally:
            prepared.discard()

    def _prepare_version(
        self,
        case_id: str,
        arr: np.ndarray,
        image: Volume,
        parent: int | None,
        is_proposal: bool,
        known: Mapping[int, np.ndarray] | None,
        conn: sqlite3.Connection | None = None,
    ) -> _PreparedVersion:
        """Everything slow of a save, without the write lock: counts, checksums, the fsync-ed file."""
        from napari_medseg.io import load_labels, save_labels

        known = dict(known or {})

        def read(sql: str, params: tuple) -> sqlite3.Row | None:
            return conn.execute(sql, params).fetchone() if conn is not None else self._read_one(sql, params)

        def labels_of(number: int, file: str) -> np.ndarray:
            held = known.get(number)
            if held is not None and tuple(np.shape(held)) == arr.shape:
                return _like(arr, held)
            return _like(arr, load_labels(self.root / file).array)

        latest = read("SELECT MAX(number) AS n FROM versions WHERE case_id = ?", (case_id,))["n"]
        base = latest if parent is None else parent
        prepared = _PreparedVersion(latest=latest, parent=base)
        if base is not None:
            prow = read("SELECT file FROM versions WHERE case_id = ? AND number = ?", (case_id, base))
            if prow is not None:
                prepared.changed_parent = changed_voxels(labels_of(base, prow["file"]), arr)
        if not is_proposal:
            prop = read(
                "SELECT number, file FROM versions WHERE case_id = ? AND is_proposal = 1 ORDER BY number DESC LIMIT 1",
                (case_id,),
            )
            if prop is not None:
                proposal = labels_of(prop["number"], prop["file"])
                prepared.proposal = prop["number"]
                prepared.changed_prop = changed_voxels(proposal, arr)
                prepared.dice = mean_foreground_dice(proposal, arr)
        folder = self.root / self._version_rel(case_id, 1).rsplit("/", 1)[0]
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".nii.gz", dir=folder)
        os.close(fd)
        prepared.tmp = Path(name)
        with ThreadPoolExecutor(1) as pool:  # hashing releases the GIL: overlap it with the compression
            checksum = pool.submit(labels_checksum, arr)
            save_labels(arr, image, prepared.tmp)  # gzip, written and fsync-ed
            prepared.label_checksum = checksum.result()
        _readable(prepared.tmp)
        prepared.file_sha = file_sha256(prepared.tmp)
        return prepared

    def _still_current(self, conn: sqlite3.Connection, case_id: str, prepared: _PreparedVersion) -> bool:
        """Whether the latest version and proposal are those the prepared counts were made against."""
        latest = conn.execute("SELECT MAX(number) FROM versions WHERE case_id = ?", (case_id,)).fetchone()[0]
        if latest == prepared.latest:
            return True
        if prepared.parent is not None and prepared.parent != prepared.latest:
            return True  # an explicit older parent: _commit_version refuses it as a stale save
        return False

    def _commit_version(
        self,
        conn: sqlite3.Connection,
        case_id: str,
        prepared: _PreparedVersion,
        author: str,
        source: str,
        note: str,
        is_proposal: bool,
    ) -> VersionInfo:
        """Stale check, link the prepared file as version ``latest + 1`` and insert its row (in the transaction)."""
        latest = conn.execute("SELECT MAX(number) FROM versions WHERE case_id = ?", (case_id,)).fetchone()[0]
        parent = prepared.parent
        if parent is not None and (latest is None or parent != latest):
            if latest is None or parent > latest or parent < 1:
                raise StoreError(f"case {case_id} has no label version {parent} to edit from")
            newer = conn.execute(
                "SELECT number, author, created_utc FROM versions WHERE case_id = ? AND number > ? ORDER BY number",
                (case_id, parent),
            ).fetchall()
            who = "; ".join(f"version {r['number']} by {r['author']} at {r['created_utc']}" for r in newer)
            raise StaleSaveError(
                f"case {case_id} changed since you opened version {parent}: {who}; "
                f"nothing was saved - reload, or save again on top of version {latest} to keep both"
            )
        number = (latest or 0) + 1
        rel = self._version_rel(case_id, number)
        dest = self.root / rel
        if dest.exists():  # orphan of a save killed before its commit
            self._quarantine(dest)
        image_checksum = conn.execute(
            "SELECT image_checksum FROM cases WHERE case_id = ?", (case_id,)
        ).fetchone()[0]
        prepared.publish(dest)
        values = dict(
            case_id=case_id,
            number=number,
            author=author,
            created_utc=utc_now(),
            source=source,
            parent=parent,
            note=note or "",
            is_proposal=int(bool(is_proposal)),
            changed_vs_parent=prepared.changed_parent,
            changed_vs_proposal=prepared.changed_prop,
            dice_vs_proposal=prepared.dice,
            image_checksum=image_checksum,
            label_checksum=prepared.label_checksum,
            file_sha256=prepared.file_sha,
            file=rel,
        )
        try:
            sidecar.write_sidecar(sidecar.version_sidecar(dest), values)
            conn.execute(
                f"INSERT INTO versions({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )
            self._event(conn, case_id, author, "save", f"version {number} ({source})")
            return self._row_to_version(
                conn.execute(
                    "SELECT * FROM versions WHERE case_id = ? AND number = ?", (case_id, number)
                ).fetchone()
            )
        except BaseException:
            dest.unlink(missing_ok=True)  # no row, no file (a kill here leaves an orphan for check)
            sidecar.version_sidecar(dest).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ review workflow
    def set_status(self, case_id: str, status: str, author: str, comment: str = "") -> None:
        """Move a case to ``status`` (see :mod:`~napari_medseg.store.workflow` for allowed moves).

        ``approved`` writes the latest version to ``labelsTr/<case>.nii.gz`` and updates
        ``dataset.json``. The move and ``comment`` are recorded as an event.
        """
        author = validate_person(author)
        case_id = self._case_row(case_id)["case_id"]
        if status not in STATUSES:
            raise StoreError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        with self._write() as conn:
            current = conn.execute("SELECT status FROM cases WHERE case_id = ?", (case_id,)).fetchone()[0]
            check_transition(case_id, current, status)
            locking.require_not_locked_by_other(conn, case_id, author, f"set it to {status}")
            detail = f"{current} -> {status}"
            if status == "approved":
                latest = conn.execute(
                    "SELECT * FROM versions WHERE case_id = ? ORDER BY number DESC LIMIT 1", (case_id,)
                ).fetchone()
                if latest is None:
                    raise StoreError(f"case {case_id} has no label version to approve")
                self.verify_version(self._row_to_version(latest), case_id, "approved")
                conn.execute(
                    "UPDATE cases SET approved_version = ? WHERE case_id = ?", (latest["number"], case_id)
                )
                detail += f" (version {latest['number']})"
            conn.execute("UPDATE cases SET status = ? WHERE case_id = ?", (status, case_id))
            self._event(conn, case_id, author, "status", detail + (f": {comment}" if comment else ""))
        if status == "approved":  # only what is committed is ever published
            self.publish_approved([case_id])

    def approve(self, case_id: str, author: str, comment: str = "") -> None:
        """Shortcut for ``set_status(case_id, "approved", author, comment)``."""
        self.set_status(case_id, "approved", author, comment)

    def comment(self, case_id: str, author: str, text: str) -> None:
        """Record a review comment (e.g. "needs work: posterior boundary too wide")."""
        author = validate_person(author)
        case_id = self._case_row(case_id)["case_id"]
        if not text.strip():
            raise StoreError("a comment needs some text")
        with self._write() as conn:
            self._event(conn, case_id, author, "comment", text.strip())

    def record_event(self, case_id: str, author: str, kind: str, detail: str) -> None:
        """Add an audit-trail entry of another module's ``kind`` (e.g. ``pacs_pull``, ``pacs_push``)."""
        author = validate_person(author)
        case_id = self._case_row(case_id)["case_id"]
        with self._write() as conn:
            self._event(conn, case_id, author, kind, detail)

    def events(self, case_id: str | None = None) -> list[Event]:
        """Audit trail (oldest first), of one case or of the whole store."""
        if case_id is None:
            rows = self._read("SELECT * FROM events ORDER BY id")
        else:
            case_id = self._case_row(case_id)["case_id"]
            rows = self._read("SELECT * FROM events WHERE case_id = ? ORDER BY id", (case_id,))
        return [
            Event(r["id"], r["case_id"], r["time_utc"], r["author"], r["kind"], r["detail"]) for r in rows
        ]

    def _event(
        self, conn: sqlite3.Connection, case_id: str | None, author: str, kind: str, detail: str
    ) -> None:
        conn.execute(
            "INSERT INTO events(case_id, time_utc, author, kind, detail) VALUES (?, ?, ?, ?, ?)",
            (case_id, utc_now(), author, kind, detail),
        )

    def _publish_file(self, case_id: str, file: str) -> None:
        """Copy a version file to ``labelsTr/<case>.nii.gz`` atomically."""
        with atomic_path(self.approved_label_path(case_id)) as tmp:
            shutil.copyfile(self.root / file, tmp)
            _readable(tmp)

    def published_mismatches(self, conn: sqlite3.Connection | None = None) -> list[str]:
        """Cases whose ``labelsTr`` file is not their approved version's file (missing, other bytes), and
        ``labelsTr`` files of cases without an approved version."""
        rows = (conn.execute if conn else self._read)(
            "SELECT c.case_id, v.file_sha256 FROM cases c JOIN versions v "
            "ON v.case_id = c.case_id AND v.number = c.approved_version"
        )
        expected = {r["case_id"]: r["file_sha256"] for r in rows}
        bad = []
        for case_id, sha in sorted(expected.items()):
            path = self.approved_label_path(case_id)
            if not path.is_file() or file_sha256(path) != sha:
                bad.append(case_id)
        folder = self.root / "labelsTr"
        if folder.is_dir():
            for f in sorted(folder.glob("*.nii.gz")):
                case_id = f.name.removesuffix(".nii.gz")
                if case_id not in expected and not case_id.startswith(TMP_PREFIX):
                    bad.append(case_id)
        return bad

    def publish_approved(self, case_ids: Iterable[str] | None = None) -> list[str]:
        """Make ``labelsTr/`` and ``dataset.json`` show what the database has committed.

        Runs under the write lock, after the approval's commit (so a kill in between leaves the
        database right and ``labelsTr`` old, which the next :meth:`open` repairs). ``case_ids=None``
        checks every case. A ``labelsTr`` file of a case without an approved version is moved to
        ``.medseg/orphans`` (never deleted). Returns the cases whose file was rewritten or moved.
        """
        with self._write() as conn:
            todo = self.published_mismatches(conn) if case_ids is None else list(case_ids)
            done = []
            for case_id in todo:
                r = conn.execute(
                    "SELECT v.file, v.file_sha256 FROM cases c JOIN versions v ON v.case_id = c.case_id "
                    "AND v.number = c.approved_version WHERE c.case_id = ?",
                    (case_id,),
                ).fetchone()
                path = self.approved_label_path(case_id)
                if r is None:
                    if path.is_file():
                        self._quarantine(path)
                        done.append(case_id)
                elif not path.is_file() or file_sha256(path) != r["file_sha256"]:
                    self._publish_file(case_id, r["file"])
                    done.append(case_id)
            self._write_dataset_json(conn)
        return done

    def _repair_published(self) -> None:
        """At open: put ``labelsTr``/``dataset.json`` back in line with the database (best effort: a busy
        or unwritable store is left for the next open or ``store check --clean``)."""
        try:
            bad = self.published_mismatches()
            if bad or not self._dataset_json_current():
                self.repaired = self.publish_approved(bad)
                if self.repaired:
                    with self._write() as conn:
                        self._event(
                            conn,
                            None,
                            "napari-medseg",
                            "repair",
                            "labelsTr rewritten: " + ", ".join(self.repaired),
                        )
        except (StoreBusyError, OSError):
            pass

    def _dataset_json_current(self) -> bool:
        approved = {r[0] for r in self._read("SELECT case_id FROM cases WHERE approved_version IS NOT NULL")}
        try:
            listed = read_dataset_json(self.root).training
        except InputError:
            return False
        return {img.name.removesuffix(".nii.gz") for img, _ in listed} == approved

    def verify_version(self, info: VersionInfo, case_id: str, action: str = "used") -> None:
        """Raise ``StoreDamagedError`` unless the version file's bytes match the sha256 recorded at save."""
        try:
            ok = file_sha256(info.path) == info.file_sha256
        except FileNotFoundError:
            raise StoreDamagedError(
                f"version {info.number} of case {case_id} is missing ({info.path}); it was not {action} "
                "(run 'napari-medseg store check')"
            ) from None
        if not ok:
            raise StoreDamagedError(
                f"version {info.number} of case {case_id} is damaged: {info.path} no longer matches the "
                f"checksum recorded when it was saved; it was not {action} (run 'napari-medseg store check')"
            )

    def _write_store_sidecar(self) -> None:
        sidecar.write_sidecar(
            sidecar.store_sidecar(self.root / MEDSEG_DIR),
            {
                "name": self.name,
                "labels": {str(k): v for k, v in self.labels.items()},
                "modality": self.modality,
            },
        )

    def _refresh_dataset_json(self) -> Path:
        """Rewrite ``dataset.json`` under the write lock (so two processes never interleave)."""
        with self._write() as conn:
            return self._write_dataset_json(conn)

    def _write_dataset_json(self, conn: sqlite3.Connection | None = None) -> Path:
        conn = conn or self._conn
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT case_id FROM cases WHERE approved_version IS NOT NULL ORDER BY case_id"
            )
        ]
        return msd.write_dataset_json(self.root, msd.dataset_json(self.name, self.labels, self.modality, ids))

    # ------------------------------------------------------------------ locks
    def lock(self, case_id: str, owner: str, force: bool = False) -> None:
        """Lock a case for ``owner``; ``LockedError`` if someone else holds it (unless ``force``)."""
        owner = validate_person(owner, "lock owner")
        case_id = self._case_row(case_id)["case_id"]
        with self._write() as conn:
            locking.acquire(conn, case_id, owner, force=force)

    def unlock(self, case_id: str, owner: str) -> None:
        """Release ``owner``'s lock; ``LockedError`` if someone else holds it."""
        owner = validate_person(owner, "lock owner")
        case_id = self._case_row(case_id)["case_id"]
        with self._write() as conn:
            locking.release(conn, case_id, owner)

    # ------------------------------------------------------------------ training / ranking
    def set_uncertainty(self, case_id: str, score: float, author: str = "model") -> None:
        """Record a case's uncertainty score (higher = review first), with an ``uncertainty`` event."""
        author = validate_person(author)
        case_id = self._case_row(case_id)["case_id"]
        score = float(score)
        if not np.isfinite(score):
            raise StoreError(f"uncertainty score for {case_id} must be a finite number, got {score}")
        with self._write() as conn:
            conn.execute("UPDATE cases SET uncertainty = ? WHERE case_id = ?", (score, case_id))
            self._event(conn, case_id, author, "uncertainty", f"score {score:.6g}")

    def training_items(self) -> list[dict]:
        """One item per case with a label: ``{case_id, image, label, approved, version}``.

        Approved cases give their approved version (``approved=True``, trusted); other cases give
        their latest version (``approved=False``: a proposal or an unreviewed correction).
        ``image``/``label`` are absolute path strings (MONAI ``LoadImaged`` style).
        """
        items = []
        for c in self.cases():
            if c.n_versions == 0:
                continue
            approved = c.status == "approved" and c.approved_version is not None
            v = self.version(c.case_id, c.approved_version) if approved else self.latest_version(c.case_id)
            items.append(
                {
                    "case_id": c.case_id,
                    "image": str(c.image_path),
                    "label": str(v.path),
                    "approved": approved,
                    "version": v.number,
                }
            )
        return items

    # ------------------------------------------------------------------ export / check
    def export(self, out_dir: str | Path) -> Path:
        """Write an MSD folder with every case's latest approved labels; see :mod:`.export`."""
        from napari_medseg.store.export import export_approved

        return export_approved(self, out_dir)

    def check(self, clean: bool = False) -> CheckReport:
        """Consistency report; see :func:`napari_medseg.store.check.check_store`."""
        from napari_medseg.store.check import check_store

        return check_store(self, clean=clean)

    def _temp_files(self) -> list[Path]:
        folders = [self.root, self.root / "imagesTr", self.root / "labelsTr"]
        folders += [self.root / MEDSEG_DIR, self.root / MEDSEG_DIR / "cases"]
        folders += [p for p in (self.root / MEDSEG_DIR / "versions").iterdir() if p.is_dir()]
        return sorted(p for f in folders if f.is_dir() for p in f.glob(f"{TMP_PREFIX}*"))
