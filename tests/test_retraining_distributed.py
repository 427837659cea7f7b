"""A retraining round as a 2-process data-parallel job (torchrun, gloo on CPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import make_tiny_pair_dir

from napari_medseg.registry import ModelRegistry


def test_torchrun_two_process_retrain_fine_tunes_from_the_current_model(tmp_path, hippo_cases):
    from napari_medseg.store import CaseStore

    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    root = tmp_path / "store"
    store = CaseStore.init(root, name="hippo", labels={0: "background", 1: "anterior", 2: "posterior"})
    for i, (image, label) in enumerate(hippo_cases[:5]):
        store.import_case(image, label, approved=i < 3)
    store.close()
    registry = ModelRegistry(root)
    registry.register(make_tiny_pair_dir(tmp_path / "tiny", model_id="tiny-start"), {})
    registry.promote("tiny-start")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun, "--standalone", "--nproc_per_node", "2", "-m", "napari_medseg.commands.retrain",
        "--store", str(root), "--epochs", "1", "--device", "cpu", "--min-delta", "-1", "--events",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, proc.stdout  # only rank 0 reports
    result = json.loads(results[0][len("RESULT ") :])
    assert result["status"] == "done" and result["promoted"] and result["current_model"] == "tiny-start"
    card = json.loads((registry.current_model_dir() / "pair.json").read_text())
    assert card["training"]["world_size"] == 2 and card["parent_model"] == "tiny-start"
    assert sum(line.startswith('PROGRESS {"stage": "train"') for line in proc.stdout.splitlines()) == 1
    assert sys.executable  # the job ran with this interpreter's torchrun
