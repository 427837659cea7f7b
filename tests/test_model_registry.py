"""Model registry: registration is append-only, promotion follows the rule, rollback restores."""

from __future__ import annotations

import json

import pytest
from conftest import make_tiny_pair_dir

from napari_medseg.cli import main
from napari_medseg.errors import StoreError
from napari_medseg.registry import ModelRegistry, PromotionRule, decide
from napari_medseg.registry.model_registry import DEFAULT_MODEL_DIR


def test_rule_refuses_a_worse_model_and_accepts_an_equal_one():
    rule = PromotionRule()
    current = {"dice_mean": 0.85, "dice_anterior": 0.86, "dice_posterior": 0.84}
    assert not decide({"dice_mean": 0.84}, current, rule).promote
    assert decide({"dice_mean": 0.85, "dice_anterior": 0.86, "dice_posterior": 0.84}, current, rule).promote
    # better on average but one class collapses: refused by max_class_drop
    worse_class = {"dice_mean": 0.86, "dice_anterior": 0.93, "dice_posterior": 0.79}
    decision = decide(worse_class, current, rule)
    assert not decision.promote and "dice_posterior" in decision.reason
    assert decide({"dice_mean": 0.5}, None, rule).promote


def test_worse_candidate_is_registered_but_not_promoted(tmp_path):
    store = tmp_path / "store"
    (store / ".medseg").mkdir(parents=True)
    registry = ModelRegistry(store)
    assert registry.current_model_dir() == DEFAULT_MODEL_DIR
    good = make_tiny_pair_dir(tmp_path / "m1", model_id="pair-r1")
    bad = make_tiny_pair_dir(tmp_path / "m2", model_id="pair-r2", seed=1)
    registry.register(good, {"dice_mean": 0.80}, trained_on=["hippocampus_004:2"])
    assert registry.consider("pair-r1", None, PromotionRule()).promote
    assert registry.current_id == "pair-r1"
    registry.register(bad, {"dice_mean": 0.70}, parent="pair-r1")
    decision = registry.consider("pair-r2", registry.entry("pair-r1").metrics, PromotionRule())
    assert not decision.promote and "0.7000" in decision.reason
    assert registry.current_id == "pair-r1"
    assert registry.entry("pair-r2").status == "rejected"
    assert (registry.current_model_dir() / "pair.json").is_file()
    with pytest.raises(StoreError, match="already registered"):
        registry.register(good, {"dice_mean": 0.99})


def test_promote_by_hand_and_rollback_through_cli(tmp_path, capsys):
    store = tmp_path / "store"
    (store / ".medseg").mkdir(parents=True)
    registry = ModelRegistry(store)
    for i in (1, 2):
        registry.register(make_tiny_pair_dir(tmp_path / f"m{i}", model_id=f"pair-r{i}"), {"dice_mean": 0.8})
    assert main(["models", "promote", str(store), "pair-r1"]) == 0
    assert main(["models", "promote", str(store), "pair-r2"]) == 0
    assert registry.current_id == "pair-r2"
    assert main(["models", "list", str(store)]) == 0
    out = capsys.readouterr().out
    assert "* pair-r2" in out and "pair-r1" in out
    assert main(["models", "rollback", str(store)]) == 0
    assert registry.current_id == "pair-r1"
    assert registry.entry("pair-r2").status == "retired"
    assert main(["models", "promote", str(store), "nope"]) != 0
    events = json.loads((store / ".medseg" / "models" / "registry.json").read_text())["events"]
    assert [e["event"] for e in events].count("current") == 3
