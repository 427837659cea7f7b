"""A saving process killed at random moments never damages earlier versions."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_medseg.io import load_labels
from napari_medseg.store import CaseStore
from napari_medseg.store.casestore import labels_checksum
from napari_medseg.store.provenance import file_sha256

sys.path.insert(0, str(Path(__file__).parent))
import _store_killer  # noqa: E402

CASE = "hippocrop_001"
FORK_RUNS = 56
SCRIPT_RUNS = 4


@pytest.fixture()
def crop_store(tmp_path, hippo_cases):
    image, label = _store_killer.make_crop_case(*hippo_cases[0], tmp_path / "crop")
    store = CaseStore.init(tmp_path / "store", labels={0: "background", 1: "Anterior", 2: "Posterior"})
    store.import_case(image, label, approved=True)
    store.close()
    return tmp_path / "store"


def _verify(root: Path, previous: dict[int, str]) -> tuple[dict[int, str], bool]:
    """Every recorded version intact, nothing half-written under a reader's name, DB healthy."""
    store = CaseStore.open(root)
    try:
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        versions = store.versions(CASE)
        numbers = [v.number for v in versions]
        assert numbers == list(range(1, len(numbers) + 1))
        shas = {v.number: v.file_sha256 for v in versions}
        for n, sha in previous.items():  # nothing recorded before the kill was lost or changed
            assert shas[n] == sha
        for v in versions:
            assert file_sha256(v.path) == v.file_sha256
            if v.number not in previous:  # bytes of older ones are proven equal by the sha256 above
                assert labels_checksum(load_labels(v.path).array) == v.label_checksum
        # Every file a reader could pick by name loads completely (orphans too: they are whole files).
        for f in (root / ".medseg" / "versions" / CASE).glob("[0-9]*.nii.gz"):
            load_labels(f)
        approved = root / "labelsTr" / f"{CASE}.nii.gz"
        assert file_sha256(approved) in set(shas.values())
        assert '"training"' in (root / "dataset.json").read_text()
        assert not list(root.glob("*.nii.gz")) and not list(root.glob("dataset.json?*"))
        leftovers = store.check()
        return shas, bool(leftovers.orphans or leftovers.temp_files)
    finally:
        store.close()


def test_killed_saves_never_damage_earlier_versions(crop_store):
    # forkserver: children are forked from a clean server process, not from pytest's (which may hold
    # torch/Qt threads and locks that would deadlock a plain fork); still fast, unlike spawn.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["napari_medseg.store", "_store_killer"])
    rng = random.Random(1234)
    shas, _ = _verify(crop_store, {})
    total_saves = interrupted = 0
    for run in range(FORK_RUNS):
        # lock=False: a child killed while holding the Value's lock would leave its semaphore taken
        # forever and hang the parent's next read (seen in CI). One writer, aligned int reads: no lock needed.
        counter = ctx.Value("i", 0, lock=False)
        child = ctx.Process(target=_store_killer.save_loop, args=(crop_store, CASE, run, counter))
        child.start()
        deadline = time.monotonic() + 20
        while counter.value == 0 and time.monotonic() < deadline:  # let it complete one save first
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.1))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        total_saves += counter.value
        shas, left = _verify(crop_store, shas)
        interrupted += left
    for run in range(SCRIPT_RUNS):  # the same through a real interpreter running the script
        proc = subprocess.Popen(
            [sys.executable, str(Path(_store_killer.__file__)), str(crop_store), CASE, str(1000 + run)]
        )
        time.sleep(rng.uniform(1.0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        shas, left = _verify(crop_store, shas)
        interrupted += left
    assert total_saves >= FORK_RUNS  # each child completed at least one save before its kill
    assert len(shas) > total_saves  # every completed save is recorded (plus the imported version 1)
    store = CaseStore.open(crop_store)
    report = store.check(clean=True)
    assert store.check().ok, report.lines()
    print(f"kill test: {FORK_RUNS + SCRIPT_RUNS} kills, {len(shas)} versions, {interrupted} left leftovers")
