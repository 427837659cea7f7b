"""``store check``: find (and optionally repair) what an interrupted write can leave behind.

An interrupted save can leave a temporary file (``.tmp-*``) or an orphan version file (written,
but killed before its database row was committed). Neither is ever read as a version. This
check also verifies every recorded version (file present, sha256 as recorded), that
``labelsTr`` holds each case's approved version, and SQLite's ``PRAGMA integrity_check``.
``clean=True`` moves orphans to ``.medseg/orphans/``, deletes temporary files and rewrites
``labelsTr`` files and ``dataset.json`` from the database; it never touches recorded versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from napari_medseg.store.provenance import file_sha256

if TYPE_CHECKING:
    from napari_medseg.store.casestore import CaseStore

_VERSION_FILE = re.compile(r"^(\d+)\.nii\.gz$")


@dataclass
class CheckReport:
    """What ``check_store`` found; ``ok`` when nothing is wrong."""

    integrity: str = "ok"
    orphans: list[Path] = field(default_factory=list)
    temp_files: list[Path] = field(default_factory=list)
    bad_versions: list[str] = field(default_factory=list)
    stale_approved: list[str] = field(default_factory=list)
    cleaned: bool = False

    @property
    def ok(self) -> bool:
        problems = self.orphans or self.temp_files or self.bad_versions or self.stale_approved
        return self.integrity == "ok" and not problems

    def lines(self) -> list[str]:
        """Human-readable summary, one finding per line."""
        out = [f"database integrity: {self.integrity}"]
        verb = "moved aside" if self.cleaned else "found"
        out += [f"orphan version file ({verb}): {p}" for p in self.orphans]
        out += [f"temporary file ({'deleted' if self.cleaned else 'found'}): {p}" for p in self.temp_files]
        out += [f"damaged version: {m}" for m in self.bad_versions]
        out += [
            f"labelsTr out of date ({'rewritten' if self.cleaned else 'found'}): {c}"
            for c in self.stale_approved
        ]
        out.append("store is consistent" if self.ok else "store has problems (see above)")
        return out


def check_store(store: CaseStore, clean: bool = False) -> CheckReport:
    """Check ``store``; with ``clean`` also repair (see module docstring)."""
    report = CheckReport()
    with store._write() as conn:  # hold the write lock: no save is half-way while we look
        report.integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        recorded = {(r["case_id"], r["number"]): r for r in conn.execute("SELECT * FROM versions")}
        versions_dir = store.root / ".medseg" / "versions"
        for case_dir in sorted(p for p in versions_dir.iterdir() if p.is_dir()):
            for f in sorted(case_dir.iterdir()):
                m = _VERSION_FILE.match(f.name)
                if m and (case_dir.name, int(m.group(1))) not in recorded:
                    report.orphans.append(f)
        report.temp_files = store._temp_files()
        for (case_id, number), r in sorted(recorded.items()):
            path = store.root / r["file"]
            if not path.is_file():
                report.bad_versions.append(f"{case_id} version {number}: file {path} is missing")
            elif file_sha256(path) != r["file_sha256"]:
                report.bad_versions.append(
                    f"{case_id} version {number}: file {path} does not match its checksum"
                )
        approved = conn.execute(
            "SELECT case_id, approved_version FROM cases WHERE approved_version IS NOT NULL"
        )
        for r in approved.fetchall():
            label = store.approved_label_path(r["case_id"])
            expected = recorded[(r["case_id"], r["approved_version"])]["file_sha256"]
            if not label.is_file() or file_sha256(label) != expected:
                report.stale_approved.append(r["case_id"])
        if clean:
            report.orphans = [store._quarantine(p) for p in report.orphans]
            for p in report.temp_files:
                p.unlink(missing_ok=True)
            for case_id in report.stale_approved:
                number = conn.execute(
                    "SELECT approved_version FROM cases WHERE case_id = ?", (case_id,)
                ).fetchone()[0]
                store._write_approved(conn, case_id, number)
            store._write_dataset_json(conn)
            report.cleaned = True
    return report
