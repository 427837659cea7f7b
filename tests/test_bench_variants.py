"""The window-step variants bench (channels-last, compile, CUDA graphs) compares each variant with eager."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_variants import compare  # noqa: E402


def test_a_variant_is_timed_against_eager_and_one_that_cannot_run_says_why(tmp_path):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_variants.py"), "--device", "cpu", "--threads", "1"]
    cmd += ["--size", "1", "--hidden", "48", "--feature", "8", "--roi", "32", "--repeat", "1"]
    cmd += ["--variants", "eager", "channels_last", "cuda_graphs", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=True)
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["eager"]["speedup_vs_eager"] == 1.0 and rows["eager"]["max_abs_diff"] == 0.0
    assert rows["channels_last"]["ms_per_window"] > 0
    assert rows["channels_last"]["argmax_agree_min"] > 0.99  # the same networks, another memory layout
    assert rows["cuda_graphs"]["error"] == "RuntimeError: needs a CUDA device"


def test_outputs_are_compared_per_network():
    ref = torch.zeros(1, 4, 2, 2, 2)
    ref[:, 0] = 1.0  # net A: class 0 everywhere
    ref[:, 3] = 1.0  # net B: class 1 everywhere
    out = ref.clone()
    out[:, 2:] = out[:, 2:].flip(1)  # net B now says class 0
    r = compare(out, ref, n_nets=2)
    assert r["argmax_agree_min"] == 0.0 and r["max_abs_diff"] == 1.0
    assert compare(ref, ref, n_nets=2) == {"max_abs_diff": 0.0, "argmax_agree_min": 1.0}
