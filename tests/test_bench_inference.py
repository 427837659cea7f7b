"""The inference bench runs end to end on the real hippocampus case and names the precision of every row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("flag", [[], ["--fp32"]])
def test_the_bench_times_the_engine_against_monai_in_one_precision(flag, hippo_dir):
    cmd = [sys.executable, str(ROOT / "bench" / "bench_inference.py"), "--only", "hippo", "--repeat", "1"]
    cmd += ["--no-warmup", "--threads", "1", "--data", str(hippo_dir.parent), *flag]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    # tests run float32 on every CPU (conftest), and --fp32 asks for it too
    assert "precision fp32" in out.splitlines()[0]
    rows = [line.split()[1:3] for line in out.splitlines()[2:]]
    assert ["engine", "pair+unc"] in rows and ["MONAI", "swi"] in rows
    assert not any("fp32" in line for line in out.splitlines()[2:])  # no extra stock row without bf16
