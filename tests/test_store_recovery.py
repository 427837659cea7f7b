"""The index can be lost without losing labels; damage is found and refused; batches survive bad cases."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_medseg import cli
from napari_medseg.errors import StoreDamagedError, StoreError
from napari_medseg.store import CaseStore
from napari_medseg.store.provenance import file_sha256
from napari_medseg.store.rebuild import rebuild_index

sys.path.insert(0, str(Path(__file__).parent))
import _store_killer  # noqa: E402

LABELS = {0: "background", 1: "Anterior", 2: "Posterior"}


@pytest.fixture(scope="module")
def crops(tmp_path_factory, hippo_cases):
    root = tmp_path_factory.mktemp("crops")
    return [_store_killer.make_crop_case(*hippo_cases[i], root / f"c{i}") for i in range(3)]


def _rename(image: Path, label: Path, folder: Path, case: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(image, folder / f"{case}.nii.gz")), Path(
        shutil.copy(label, folder / f"{case}_l.nii.gz")
    )


@pytest.fixture()
def store3(tmp_path, crops):
    """case_a approved with an edit on top (corrected), case_b approved, case_c only a proposal."""
    root = tmp_path / "store"
    store = CaseStore.init(root, labels=LABELS)
    ids = []
    for name, (image, label) in zip(("case_a", "case_b", "case_c"), crops, strict=True):
        img, lab = _rename(image, label, tmp_path / "src", name)
        ids.append(store.import_case(img, lab if name != "case_c" else None, approved=name != "case_c"))
    edited = store.load_label("case_a").array.copy()
    edited[0, 0, 0] = 2
    store.save_version("case_a", edited, author="ann", note="fix corner")
    empty = np.zeros(store.load_image("case_c").shape, np.uint8)
    store.save_version("case_c", empty, author="model", is_proposal=True, source="model:tiny@abc123")
    store.comment("case_b", "rev", "fine")
    store.close()
    return root


def _snapshot(root: Path) -> dict:
    with CaseStore.open(root, write=False) as store:
        return {
            c.case_id: (
                c.status,
                c.approved_version,
                [(v.number, v.author, v.source, v.parent, v.note, v.is_proposal, v.file_sha256) for v in store.versions(c.case_id)],
            )
            for c in store.cases()
        }  # fmt: skip


def test_rebuild_after_losing_the_database_recovers_every_version_and_approval(store3):
    before = _snapshot(store3)
    db = store3 / ".medseg" / "store.sqlite"
    db.unlink()
    report = rebuild_index(store3)
    assert report.cases == 3 and report.versions == 4 and report.approved == 2 and not report.skipped
    after = _snapshot(store3)
    assert after == before
    with CaseStore.open(store3) as store:
        assert [e.kind for e in store.events()][-1] == "rebuild"
        assert store.labels == LABELS and store.check().ok


def test_rebuild_of_a_corrupt_database_moves_it_aside_and_salvages_what_it_can(store3):
    db = store3 / ".medseg" / "store.sqlite"
    CaseStore.open(store3).close()
    db.write_bytes(db.read_bytes()[:4096])  # truncated: tables beyond the first page are gone
    with pytest.raises(StoreDamagedError, match="store rebuild"):
        CaseStore.open(store3)
    assert cli.main(["store", "rebuild", str(store3)]) == 0
    assert list((store3 / ".medseg" / "damaged").glob("*-store.sqlite"))
    with CaseStore.open(store3) as store:
        assert len(store.versions("case_a")) == 2 and store.case("case_b").status == "approved"


def test_forced_rebuild_of_a_healthy_database_keeps_its_events(store3):
    with CaseStore.open(store3) as store:
        kinds = [e.kind for e in store.events()]
    with pytest.raises(StoreError, match="healthy"):
        rebuild_index(store3)
    report = rebuild_index(store3, force=True)
    assert report.events_salvaged == len(kinds)
    with CaseStore.open(store3) as store:
        assert [e.kind for e in store.events()] == [*kinds, "rebuild"]  # the comment survived too


def test_rebuild_keeps_a_version_without_sidecar_and_leaves_out_a_damaged_one(store3):
    versions = store3 / ".medseg" / "versions"
    (versions / "case_a" / "2.json").unlink()
    data = bytearray((versions / "case_b" / "1.nii.gz").read_bytes())
    data[-5] ^= 0xFF
    (versions / "case_b" / "1.nii.gz").write_bytes(bytes(data))
    (store3 / ".medseg" / "store.sqlite").unlink()
    report = rebuild_index(store3)
    assert report.without_provenance == ["case_a version 2"]
    assert any("case_b version 1" in s for s in report.skipped)
    with CaseStore.open(store3) as store:
        v2 = store.version("case_a", 2)
        assert v2.author == "unknown" and v2.parent == 1 and "without provenance" in v2.note
        assert store.versions("case_b") == [] and store.case("case_b").approved_version is None
        assert not (store3 / "labelsTr" / "case_b.nii.gz").exists()  # its labelsTr moved aside, not kept


def test_opening_repairs_labelsTr_that_disagrees_with_the_database(store3):
    labels = store3 / "labelsTr"
    shutil.copy(
        store3 / ".medseg" / "versions" / "case_a" / "2.nii.gz", labels / "case_a.nii.gz"
    )  # not approved
    (labels / "case_b.nii.gz").unlink()
    shutil.copy(
        store3 / ".medseg" / "versions" / "case_c" / "1.nii.gz", labels / "case_c.nii.gz"
    )  # never approved
    with CaseStore.open(store3) as store:
        assert sorted(store.repaired) == ["case_a", "case_b", "case_c"]
        for case in ("case_a", "case_b"):
            info = store.case(case)
            assert (
                file_sha256(labels / f"{case}.nii.gz")
                == store.version(case, info.approved_version).file_sha256
            )
        assert not (labels / "case_c.nii.gz").exists()
        assert list((store3 / ".medseg" / "orphans" / "labelsTr").glob("*case_c.nii.gz"))
        assert store.events()[-1].kind == "repair"


def test_a_damaged_version_is_refused_when_loaded_and_check_clean_stays_non_zero(store3):
    path = store3 / ".medseg" / "versions" / "case_a" / "2.nii.gz"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with CaseStore.open(store3) as store:
        with pytest.raises(StoreDamagedError, match="version 2 of case case_a is damaged"):
            store.load_label("case_a")
        assert store.load_label("case_a", 1) is not None
    assert cli.main(["store", "check", str(store3)]) == 1
    assert cli.main(["store", "check", "--clean", str(store3)]) == 1  # cannot be cleaned away


def test_check_verifies_images(store3):
    shutil.copy(store3 / "imagesTr" / "case_b.nii.gz", store3 / "imagesTr" / "case_a.nii.gz")
    (store3 / "imagesTr" / "case_c.nii.gz").unlink()
    with CaseStore.open(store3) as store:
        report = store.check()
    assert not report.ok
    assert any("case_a" in m and "not the one imported" in m for m in report.bad_images)
    assert any("case_c" in m and "missing" in m for m in report.bad_images)


def test_check_clean_exits_zero_once_leftovers_are_tidied(store3):
    (store3 / ".medseg" / "versions" / "case_b" / "7.nii.gz").write_bytes(b"orphan")
    (store3 / "labelsTr" / ".tmp-x.nii.gz").write_bytes(b"tmp")
    assert cli.main(["store", "check", str(store3)]) == 1
    assert cli.main(["store", "check", "--clean", str(store3)]) == 0
    assert cli.main(["store", "check", str(store3)]) == 0


def test_every_version_has_a_provenance_sidecar_matching_its_row(store3):
    with CaseStore.open(store3) as store:
        for case in store.case_ids():
            for v in store.versions(case):
                side = json.loads(v.path.with_name(f"{v.number}.json").read_text())
                assert side["file_sha256"] == v.file_sha256 == file_sha256(v.path)
                assert side["author"] == v.author and side["parent"] == v.parent


def test_a_dead_sessions_lock_is_released_with_an_event_a_live_one_is_not(store3):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with CaseStore.open(store3) as store:
        store.lock("case_a", "alice")
        store.lock("case_b", "bob")
        store._conn.execute("UPDATE locks SET pid = ? WHERE case_id = 'case_a'", (dead.pid,))
        store._conn.execute("UPDATE locks SET pid = 1 WHERE case_id = 'case_b'")  # init: alive
        store.save_version("case_a", store.load_label("case_a").array, author="carol")
        kinds = [e for e in store.events("case_a") if e.kind == "lock_released_stale"]
        assert len(kinds) == 1 and "alice" in kinds[0].detail and str(dead.pid) in kinds[0].detail
        with pytest.raises(StoreError, match="locked by bob"):
            store.save_version("case_b", store.load_label("case_b").array, author="carol")


def test_events_are_append_only_and_uncertainty_is_recorded(store3):
    with CaseStore.open(store3) as store:
        store.set_uncertainty("case_c", 0.25)
        assert store.events("case_c")[-1].kind == "uncertainty"
        for sql in ("UPDATE events SET author = 'x'", "DELETE FROM events"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                store._conn.execute(sql)


def test_label_values_above_65535_are_stored_exactly(tmp_path, crops):
    store = CaseStore.init(tmp_path / "s", labels={0: "background", 70000: "big"})
    case = store.import_case(crops[0][0])
    labels = np.zeros(store.load_image(case).shape, np.int64)
    labels[1, 2, 3] = 70000
    store.save_version(case, labels, author="me")
    assert np.array_equal(store.load_label(case).array, labels)


def test_import_resumes_with_skip_existing_and_maps_awkward_names(tmp_path, crops, capsys):
    root = tmp_path / "s"
    CaseStore.init(root, labels=LABELS).close()
    awkward = Path(shutil.copy(crops[1][0], tmp_path / "-Müller scan 2.nii.gz"))
    first = cli.main(["store", "import", str(root), str(crops[0][0])])
    assert first == 0
    again = cli.main(["store", "import", str(root), str(crops[0][0]), str(awkward), "--skip-existing"])
    out = capsys.readouterr().out
    assert again == 0 and "imported 1 case(s)" in out and "skipped 1" in out
    assert cli.main(["store", "import", str(root), str(crops[2][0]), "--case-id", "patient-7"]) == 0
    with CaseStore.open(root) as store:
        assert store.case_ids() == ["Muller_scan_2", "hippocrop_001", "patient-7"]


def test_batch_import_goes_on_past_a_bad_scan_and_lists_it(tmp_path, crops, capsys):
    root = tmp_path / "s"
    CaseStore.init(root, labels=LABELS).close()
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a scan")
    rc = cli.main(
        [
            "store",
            "import",
            str(root),
            str(crops[0][0]),
            str(bad),
            str(crops[1][0]),
            "--case-id",
            "a",
            "b",
            "c",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "broken.nii.gz" in err and "Traceback" not in err
    with CaseStore.open(root) as store:
        assert store.case_ids() == ["a", "c"]


def test_predict_store_goes_on_past_a_broken_case_and_lists_it(
    tmp_path, crops, tiny_model_dir, capsys, one_torch_thread
):
    root = tmp_path / "s"
    store = CaseStore.init(root, labels=LABELS)
    for i, (image, _) in enumerate(crops):
        store.import_case(image, case_id=f"case{i}")
    store.lock("case1", "someone-else")
    store.close()
    (root / "imagesTr" / "case2.nii.gz").unlink()
    rc = cli.main(["predict", "--store", str(root), "--model", str(tiny_model_dir), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "2 of 3 case(s) failed" in err and "Traceback" not in err
    assert (
        "case1: case case1 is locked by someone-else" in err
        and "case2: the image of case case2 is missing" in err
    )
    with CaseStore.open(root) as store:
        assert store.proposal("case0") is not None and store.proposal("case1") is None


def test_evaluate_goes_on_past_a_broken_case_and_lists_it(
    tmp_path, crops, tiny_model_dir, capsys, one_torch_thread
):
    folder = tmp_path / "msd"
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    for i, (image, label) in enumerate(crops[:2]):
        shutil.copy(image, folder / "imagesTr" / f"c{i}.nii.gz")
        shutil.copy(label, folder / "labelsTr" / f"c{i}.nii.gz")
    (folder / "labelsTr" / "c1.nii.gz").write_bytes(b"broken")
    rc = cli.main(
        ["evaluate", "--model", str(tiny_model_dir), "--data", str(folder), "--no-hd95", "--split", "all"]
    )
    captured = capsys.readouterr()
    assert rc == 1 and "1 of 2 case(s) failed" in captured.err and "c1:" in captured.err
    assert "c0" in captured.out


def test_old_store_gets_the_new_triggers_and_lock_columns_at_open(store3):
    conn = sqlite3.connect(store3 / ".medseg" / "store.sqlite")
    conn.executescript(
        "DROP TRIGGER events_are_append_only_update; DROP TRIGGER events_are_append_only_delete;"
        "CREATE TABLE locks2 AS SELECT case_id, owner, since_utc FROM locks; DROP TABLE locks;"
        "CREATE TABLE locks (case_id TEXT PRIMARY KEY, owner TEXT NOT NULL, since_utc TEXT NOT NULL);"
    )
    conn.close()
    with CaseStore.open(store3) as store:
        store.lock("case_a", "alice")
        row = store._conn.execute("SELECT pid FROM locks WHERE case_id = 'case_a'").fetchone()
        assert row[0] == os.getpid()
        with pytest.raises(sqlite3.IntegrityError):
            store._conn.execute("DELETE FROM events")


def test_evaluate_store_goes_on_past_a_missing_case_and_lists_it(
    tmp_path, crops, tiny_model_dir, capsys, one_torch_thread
):
    root = tmp_path / "s"
    store = CaseStore.init(root, labels=LABELS)
    for i, (image, label) in enumerate(crops[:2]):
        store.import_case(image, label, case_id=f"case{i}", approved=True)
    store.close()
    (root / "imagesTr" / "case1.nii.gz").unlink()
    rc = cli.main(
        ["evaluate", "--store", str(root), "--model", str(tiny_model_dir), "--no-hd95", "--device", "cpu"]
    )
    captured = capsys.readouterr()
    assert rc == 1 and "1 of 2 case(s) failed" in captured.err and "case1:" in captured.err
    assert "case0" in captured.out and "Traceback" not in captured.err
