"""The pair-vs-single bench keeps reading the results of runs made before noise kinds existed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("pair_vs_single", ROOT / "bench" / "pair_vs_single.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclass looks its module up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def test_table_names_the_noise_kind_of_old_and_new_runs(tmp_path):
    pvs = _bench()
    old = json.loads((ROOT / "bench/results/pair_vs_single_cpu/noise0.4/b.json").read_text())
    assert "noise_kind" not in old  # written before --noise-kind
    (tmp_path / "noise0.4").mkdir()
    (tmp_path / "noise0.4" / "b.json").write_text(json.dumps(old))
    new = {**old, "noise_kind": "dilate"}
    (tmp_path / pvs.level_dir(0.4, "dilate")).mkdir()
    (tmp_path / pvs.level_dir(0.4, "dilate") / "b.json").write_text(json.dumps(new))
    rows = pvs.table(tmp_path).splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| 0.4 mixed", "| 0.4 dilate"]
    assert pvs.level_dir(0.4, "mixed") == "noise0.4" and pvs.level_dir(0, "dilate") == "noise0"


def test_noise_stats_are_shares_of_the_clean_foreground():
    pvs = _bench()
    clean = np.zeros((4, 4, 4), np.int64)
    clean[1:3, 1:3, 1:3] = 1  # 8 voxels
    noisy = clean.copy()
    noisy[0, 1:3, 1:3] = 1  # 4 added
    noisy[1, 1, 1] = 0  # 1 removed
    noisy[2, 2, 2] = 2  # 1 relabelled
    stats = pvs.noise_stats({"a": clean, "b": clean}, {"a": noisy})
    assert stats == {"n_cases": 1, "added_share": 0.5, "removed_share": 0.125, "changed_share": 0.75}


def test_set_overrides_are_typed_and_cannot_change_the_arm():
    pvs = _bench()
    assert pvs.overrides(["noise_confidence=0.5", "band_radius=3", "augment=false"]) == {
        "noise_confidence": 0.5,
        "band_radius": 3,
        "augment": False,
    }
    for bad in (["nets=bsnet"], ["plain=1"], ["no_such_field=1"], ["band_radius=wide"], ["noise_confidence"]):
        with pytest.raises(SystemExit):
            pvs.overrides(bad)
