"""``store rebuild``: recreate ``.medseg/store.sqlite`` from the files when the index is lost or damaged.

What comes back, and from where:

* store name, labels, modality: ``.medseg/store.json``, else the root ``dataset.json``;
* cases: ``.medseg/cases/<case>.json`` (as imported), else ``imagesTr/<case>.nii.gz`` itself
  (checksum and shape recomputed, import time = file time);
* versions: every ``versions/<case>/<n>.nii.gz`` whose sidecar ``<n>.json`` matches its bytes
  (full provenance); a version file without a sidecar is kept with what its bytes tell (author
  ``unknown``, note ``recovered without provenance``); a file that fails its sidecar's sha256 is left
  out and reported;
* approvals: the version whose bytes ``labelsTr/<case>.nii.gz`` holds; status from the versions
  (approved if the approved version is the latest, else proposed/corrected by the latest's source);
* events: whatever rows of the old database's ``events`` table can still be read, else one
  ``import``/``save`` event per case/version from the sidecars; then one ``rebuild`` event.

Locks, comments and status history that only the lost database held cannot come back; the report
says so. The old database is moved to ``.medseg/damaged/`` (never deleted) and the new one is
built under a temporary name and renamed into place, so an interrupted rebuild changes nothing.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from napari_medseg.errors import InputError, StoreError
from napari_medseg.store import sidecar
from napari_medseg.store.provenance import file_sha256
from napari_medseg.store.schema import check_database, connect, utc_now

_VERSION_FILE = re.compile(r"^(\d+)\.nii\.gz$")
_VERSION_COLUMNS = (
    "case_id",
    "number",
    "author",
    "created_utc",
    "source",
    "parent",
    "note",
    "is_proposal",
    "changed_vs_parent",
    "changed_vs_proposal",
    "dice_vs_proposal",
    "image_checksum",
    "label_checksum",
    "file_sha256",
    "file",
)


@dataclass
class RebuildReport:
    """What :func:`rebuild_index` recovered."""

    cases: int = 0
    versions: int = 0
    without_provenance: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    approved: int = 0
    events_salvaged: int = 0
    events_rebuilt: int = 0
    old_database: Path | None = None

    def lines(self) -> list[str]:
        out = [
            f"recovered {self.cases} case(s), {self.versions} version(s), {self.approved} approved",
            f"events: {self.events_salvaged} read back from the old database, {self.events_rebuilt} rebuilt "
            "from the sidecars",
        ]
        out += [
            f"version without provenance sidecar (kept, author unknown): {v}" for v in self.without_provenance
        ]
        out += [f"left out (damaged): {v}" for v in self.skipped]
        if self.old_database is not None:
            out.append(f"the old database was moved to {self.old_database}")
        out.append("locks, comments and status history held only by the old database are not recoverable")
        return out


def _file_time(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="milliseconds")


def _old_database_healthy(db: Path, root: Path) -> bool:
    if not db.is_file():
        return False
    try:
        check_database(db, None, root)
        conn = connect(db, readonly=True)
        try:
            check_database(db, conn, root)
        finally:
            conn.close()
    except (StoreError, sqlite3.Error):
        return False
    return True


def _salvage_events(db: Path) -> list[sqlite3.Row]:
    """Rows of the old ``events`` table that can still be read (none if the file is beyond reading)."""
    rows: list[sqlite3.Row] = []
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            for r in conn.execute("SELECT case_id, time_utc, author, kind, detail FROM events ORDER BY id"):
                rows.append(r)
        finally:
            conn.close()
    except sqlite3.Error:
        pass
    return rows


def _meta(root: Path, medseg: Path) -> dict[str, str]:
    from napari_medseg.io.dataset_json import read_dataset_json

    content = sidecar.read_sidecar(sidecar.store_sidecar(medseg))
    if content and isinstance(content.get("labels"), dict):
        return {
            "name": str(content.get("name", root.name)),
            "labels": json.dumps({str(k): str(v) for k, v in content["labels"].items()}),
            "modality": str(content.get("modality", "")),
        }
    try:
        index = read_dataset_json(root)
        labels = index.labels or {0: "background", 1: "foreground"}
        return {"name": index.name or root.name, "labels": json.dumps(labels), "modality": index.modality}
    except InputError:
        return {"name": root.name, "labels": json.dumps({0: "background", 1: "foreground"}), "modality": ""}


def _case_rows(root: Path, medseg: Path, report: RebuildReport) -> dict[str, dict]:
    from napari_medseg.io import load_volume

    cases: dict[str, dict] = {}
    for f in sorted((medseg / "cases").glob("*.json")):
        row = sidecar.read_sidecar(f)
        if row and all(k in row for k in ("case_id", "image_file", "image_checksum", "shape", "created_utc")):
            cases[row["case_id"]] = {
                k: row.get(k)
                for k in ("case_id", "image_file", "image_checksum", "shape", "created_utc", "imported_from")
            }
    for image in sorted((root / "imagesTr").glob("*.nii.gz")):
        case_id = image.name.removesuffix(".nii.gz")
        if case_id in cases or case_id.startswith("."):
            continue
        try:
            vol = load_volume(image)
        except (InputError, OSError) as err:
            report.skipped.append(f"image {image} ({err})")
            continue
        cases[case_id] = {
            "case_id": case_id,
            "image_file": f"imagesTr/{image.name}",
            "image_checksum": vol.checksum,
            "shape": json.dumps(list(vol.shape)),
            "created_utc": _file_time(image),
            "imported_from": None,
        }
    return cases


def _version_rows(root: Path, medseg: Path, cases: dict[str, dict], report: RebuildReport) -> list[dict]:
    from napari_medseg.io import load_labels
    from napari_medseg.store.casestore import labels_checksum

    rows = []
    for case_dir in sorted(p for p in (medseg / "versions").iterdir() if p.is_dir()):
        case_id = case_dir.name
        if case_id not in cases:
            report.skipped.append(f"versions of {case_id}: the case's image is missing")
            continue
        files = sorted((int(m.group(1)), f) for f in case_dir.iterdir() if (m := _VERSION_FILE.match(f.name)))
        previous = None
        for number, f in files:
            rel = f"{medseg.name}/versions/{case_id}/{f.name}"
            sha = file_sha256(f)
            meta = sidecar.read_sidecar(sidecar.version_sidecar(f))
            if meta is not None and all(k in meta for k in _VERSION_COLUMNS):
                if meta["file_sha256"] != sha or meta["case_id"] != case_id or int(meta["number"]) != number:
                    report.skipped.append(f"{case_id} version {number}: the file does not match its sidecar")
                    continue
                rows.append({k: meta[k] for k in _VERSION_COLUMNS} | {"file": rel})
            else:
                try:
                    checksum = labels_checksum(load_labels(f).array)
                except (InputError, OSError) as err:
                    report.skipped.append(f"{case_id} version {number}: unreadable ({err})")
                    continue
                rows.append(
                    {
                        "case_id": case_id,
                        "number": number,
                        "author": "unknown",
                        "created_utc": _file_time(f),
                        "source": "human",
                        "parent": previous,
                        "note": "recovered by store rebuild without provenance",
                        "is_proposal": 0,
                        "changed_vs_parent": None,
                        "changed_vs_proposal": None,
                        "dice_vs_proposal": None,
                        "image_checksum": cases[case_id]["image_checksum"],
                        "label_checksum": checksum,
                        "file_sha256": sha,
                        "file": rel,
                    }
                )
                report.without_provenance.append(f"{case_id} version {number}")
            previous = number
    return rows


def _status(versions: list[dict], approved: int | None) -> str:
    if not versions:
        return "new"
    latest = max(versions, key=lambda v: v["number"])
    if approved is not None and approved == latest["number"]:
        return "approved"
    return "proposed" if latest["is_proposal"] else "corrected"


def rebuild_index(root: str | Path, force: bool = False) -> RebuildReport:
    """Recreate ``root/.medseg/store.sqlite`` from the files (see the module docstring).

    Raises:
        StoreError: ``root`` holds no ``.medseg`` folder, or its database is healthy and ``force`` is
            not given.
    """
    from napari_medseg.store.casestore import DB_NAME, MEDSEG_DIR

    root = Path(root).resolve()
    medseg = root / MEDSEG_DIR
    if not (medseg / "versions").is_dir():
        raise StoreError(f"{root} is not a case store (no {MEDSEG_DIR}/versions folder) - nothing to rebuild")
    db = medseg / DB_NAME
    if not force and _old_database_healthy(db, root):
        raise StoreError(
            f"the database of {root} is healthy; nothing to rebuild (use --force to rebuild it anyway)"
        )
    report = RebuildReport()
    salvaged = _salvage_events(db) if db.is_file() else []
    cases = _case_rows(root, medseg, report)
    versions = _version_rows(root, medseg, cases, report)
    by_case: dict[str, list[dict]] = {}
    for v in versions:
        by_case.setdefault(v["case_id"], []).append(v)

    tmp = medseg / f".tmp-rebuild-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}.sqlite"
    conn = connect(tmp, create=True)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", _meta(root, medseg).items())
        for case_id, row in sorted(cases.items()):
            conn.execute(
                "INSERT INTO cases(case_id, image_file, image_checksum, shape, status, created_utc, imported_from)"
                " VALUES (?, ?, ?, ?, 'new', ?, ?)",
                (
                    case_id,
                    row["image_file"],
                    row["image_checksum"],
                    row["shape"],
                    row["created_utc"],
                    row["imported_from"],
                ),
            )
        for v in versions:
            conn.execute(
                f"INSERT INTO versions({', '.join(_VERSION_COLUMNS)}) VALUES ({', '.join('?' * len(_VERSION_COLUMNS))})",
                tuple(v[k] for k in _VERSION_COLUMNS),
            )
        for case_id in sorted(cases):
            mine = by_case.get(case_id, [])
            approved = None
            label = root / "labelsTr" / f"{case_id}.nii.gz"
            if label.is_file() and mine:
                sha = file_sha256(label)
                matches = [v["number"] for v in mine if v["file_sha256"] == sha]
                approved = max(matches) if matches else None
            report.approved += approved is not None
            conn.execute(
                "UPDATE cases SET status = ?, approved_version = ? WHERE case_id = ?",
                (_status(mine, approved), approved, case_id),
            )
        events = [(r["case_id"], r["time_utc"], r["author"], r["kind"], r["detail"]) for r in salvaged]
        report.events_salvaged = len(events)
        if not events:
            for row in cases.values():
                events.append(
                    (
                        row["case_id"],
                        row["created_utc"],
                        "import",
                        "import",
                        f"image {row['imported_from'] or row['image_file']}",
                    )
                )
            for v in versions:
                events.append(
                    (
                        v["case_id"],
                        v["created_utc"],
                        v["author"],
                        "save",
                        f"version {v['number']} ({v['source']})",
                    )
                )
            events.sort(key=lambda e: e[1])
            report.events_rebuilt = len(events)
        events = [e for e in events if e[0] is None or e[0] in cases]
        conn.executemany(
            "INSERT INTO events(case_id, time_utc, author, kind, detail) VALUES (?, ?, ?, ?, ?)", events
        )
        conn.execute(
            "INSERT INTO events(case_id, time_utc, author, kind, detail) VALUES (NULL, ?, 'napari-medseg', 'rebuild', ?)",
            (utc_now(), f"index rebuilt from files: {len(cases)} cases, {len(versions)} versions"),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    report.cases = len(cases)
    report.versions = len(versions)
    if db.exists():
        dest = medseg / "damaged" / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{DB_NAME}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{db}{suffix}").exists():
                Path(f"{db}{suffix}").rename(f"{dest}{suffix}")
        report.old_database = dest
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    tmp.rename(db)
    return report
