"""Data-parallel training: ``torchrun --nproc_per_node 2`` (gloo, CPU) runs one job."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from napari_medseg.models.pair import ModelPair

TINY = json.dumps(
    {
        "patch": [32, 48, 32],
        "unetr": {"hidden_size": 32, "mlp_dim": 64, "num_heads": 2, "feature_size": 4},
        "bsnet": {"filters": [4, 8, 16], "deep_supervision": 1},
        "warmup_epochs": 0,
        "curriculum_start": 1.0,
    }
)


def test_two_process_ddp_run_finishes_and_rank0_writes_the_checkpoint(hippo_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "napari_medseg.cli", "train", "--data", str(hippo_dir), "--out", str(out), "--epochs", "1"]
    cmd += ["--limit-cases", "2", "--val-cases", "1", "--batch-size", "1", "--device", "cpu"]
    cmd += ["--config", TINY, "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "x2" in proc.stdout  # both ranks joined one job
    assert proc.stdout.count("best epoch") == 1  # only rank 0 reports and writes
    assert (out / "checkpoint" / "trainer_state.safetensors").exists()
    assert ModelPair.load(out).nets
