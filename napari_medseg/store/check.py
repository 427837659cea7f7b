"""``store check``: find (and optionally repair) what an interrupted write or a damaged disk leaves.

An interrupted save can leave a temporary file (``.tmp-*``) or an orphan version file (written,
but killed before its database row was committed); an interrupted import an orphan image in
``imagesTr`` (and its case sidecar). Neither is ever read as a version. This
check also verifies every recorded version (file present, sha256 as recorded), every image (present,
voxel checksum as imported), that each recorded version has its provenance sidecar, that
``labelsTr`` holds each case's approved version, and SQLite's ``PRAGMA integrity_check``.
``clean=True`` moves orphans to ``.medseg/orphans/``, deletes temporary files, writes missing
sidecars from the database, and rewrites ``labelsTr`` files and ``dataset.json`` from the database;
it never touches recorded versions or images (damaged ones stay reported: ``ok`` stays false).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from napari_medseg.errors import InputError
from napari_medseg.store import sidecar
from napari_medseg.store.provenance import file_sha256

if TYPE_CHECKING:
    from napari_medseg.store.casestore import CaseStore

_VERSION_FILE = re.compile(r"^(\d+)\.(nii\.gz|json)$")


@dataclass
class CheckReport:
    """What ``check_store`` found; ``ok`` when nothing is wrong."""

    integrity: str = "ok"
    orphans: list[Path] = field(default_factory=list)
    temp_files: list[Path] = field(default_factory=list)
    bad_versions: list[str] = field(default_factory=list)
    bad_images: list[str] = field(default_factory=list)
    missing_sidecars: list[str] = field(default_factory=list)
    stale_approved: list[str] = field(default_factory=list)
    cleaned: bool = False

    @property
    def ok(self) -> bool:
        problems = (
            self.orphans
            or self.temp_files
            or self.bad_versions
            or self.bad_images
            or self.missing_sidecars
            or self.stale_approved
        )
        return self.integrity == "ok" and not problems

    def lines(self) -> list[str]:
        """Human-readable summary, one finding per line."""
        out = [f"database integrity: {self.integrity}"]
        verb = "moved aside" if self.cleaned else "found"
        out += [f"orphan version file ({verb}): {p}" for p in self.orphans]
        out += [f"temporary file ({'deleted' if self.cleaned else 'found'}): {p}" for p in self.temp_files]
        out += [f"damaged version: {m}" for m in self.bad_versions]
        out += [f"damaged image: {m}" for m in self.bad_images]
        out += [
            f"provenance sidecar missing ({'written' if self.cleaned else 'found'}): {m}"
            for m in self.missing_sidecars
        ]
        out += [
            f"labelsTr out of date ({'rewritten' if self.cleaned else 'found'}): {c}"
            for c in self.stale_approved
        ]
        out.append("store is consistent" if self.ok else "store has problems (see above)")
        return out


def check_store(store: CaseStore, clean: bool = False) -> CheckReport:
    """Check ``store``; with ``clean`` also repair (see module docstring).

    The version files are checked under the write lock (no save is half-way while we look; a store
    opened read-only is checked inside one read snapshot instead); images, which are never rewritten,
    are checked afterwards without holding any lock.
    """
    report = CheckReport()
    if store.read_only:
        with store._lock:
            store._conn.execute("BEGIN")
            try:
                cases = _check_versions(store, store._conn, report)
            finally:
                store._conn.execute("ROLLBACK")
    else:
        with store._write() as conn:
            cases = _check_versions(store, conn, report)
            if clean:
                report.orphans = [store._quarantine(p) for p in report.orphans if p.exists()]
                for p in report.temp_files:
                    p.unlink(missing_ok=True)
                rows = {(r["case_id"], r["number"]): r for r in conn.execute("SELECT * FROM versions")}
                for key in report.missing_sidecars:
                    case_id, number = key.rsplit(" version ", 1)
                    row = dict(rows[(case_id, int(number))])
                    sidecar.write_sidecar(sidecar.version_sidecar(store.root / row["file"]), row)
                _backfill_case_sidecars(store, conn)
        if clean:
            store.publish_approved(report.stale_approved)
            report.cleaned = True
    for case_id, image_file, checksum in cases:
        path = store.root / image_file
        if not path.is_file():
            report.bad_images.append(f"{case_id}: image {path} is missing")
            continue
        from napari_medseg.io import load_volume

        try:
            ok = load_volume(path).checksum == checksum
        except (InputError, OSError) as err:
            report.bad_images.append(f"{case_id}: image {path} cannot be read ({err})")
            continue
        if not ok:
            report.bad_images.append(f"{case_id}: image {path} is not the one imported (checksum differs)")
    return report


def _check_versions(store: CaseStore, conn, report: CheckReport) -> list[tuple[str, str, str]]:  # noqa: ANN001
    """Fill ``report`` from the database and the version files; return ``(case, image file, checksum)``."""
    report.integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    recorded = {(r["case_id"], r["number"]): r for r in conn.execute("SELECT * FROM versions")}
    versions_dir = store.root / ".medseg" / "versions"
    for case_dir in sorted(p for p in versions_dir.iterdir() if p.is_dir()):
        for f in sorted(case_dir.iterdir()):
            m = _VERSION_FILE.match(f.name)
            if m and (case_dir.name, int(m.group(1))) not in recorded:
                report.orphans.append(f)
    case_ids = {r[0] for r in conn.execute("SELECT case_id FROM cases")}
    for folder, pattern, ending in (
        (store.root / "imagesTr", "*.nii.gz", ".nii.gz"),  # an import killed before its commit
        (store.root / ".medseg" / "cases", "*.json", ".json"),
    ):
        if folder.is_dir():
            report.orphans += [
                f
                for f in sorted(folder.glob(pattern))
                if f.name.removesuffix(ending) not in case_ids and not f.name.startswith(".")
            ]
    report.temp_files = store._temp_files()
    for (case_id, number), r in sorted(recorded.items()):
        path = store.root / r["file"]
        if not path.is_file():
            report.bad_versions.append(f"{case_id} version {number}: file {path} is missing")
        elif file_sha256(path) != r["file_sha256"]:
            report.bad_versions.append(f"{case_id} version {number}: file {path} does not match its checksum")
        if not sidecar.version_sidecar(path).is_file():
            report.missing_sidecars.append(f"{case_id} version {number}")
    report.stale_approved = store.published_mismatches(conn)
    return [(r["case_id"], r["image_file"], r["image_checksum"]) for r in conn.execute("SELECT * FROM cases")]


def _backfill_case_sidecars(store: CaseStore, conn) -> None:  # noqa: ANN001
    """Write the case and store sidecars a store made before they existed lacks (for ``store rebuild``)."""
    medseg = store.root / ".medseg"
    columns = ("case_id", "image_file", "image_checksum", "shape", "created_utc", "imported_from")
    for r in conn.execute(f"SELECT {', '.join(columns)} FROM cases"):
        path = sidecar.case_sidecar(medseg, r["case_id"])
        if not path.is_file():
            sidecar.write_sidecar(path, {k: r[k] for k in columns})
    if not sidecar.store_sidecar(medseg).is_file():
        store._write_store_sidecar()
