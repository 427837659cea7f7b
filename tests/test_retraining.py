"""Retraining rounds on a small real store: registry records, promotion rule, cancel, validation split."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_pair_dir

from napari_medseg.errors import Cancelled, InputError
from napari_medseg.registry import ModelRegistry, PromotionRule
from napari_medseg.retraining import retrain, split_for_round

LABELS = {0: "background", 1: "anterior", 2: "posterior"}


@pytest.fixture(scope="module")
def store_root(tmp_path_factory, hippo_cases):
    """5 real cases: 3 approved, 2 imported labels awaiting review; a tiny random pair is current."""
    from napari_medseg.store import CaseStore

    root = tmp_path_factory.mktemp("retrain") / "store"
    store = CaseStore.init(root, name="hippo", labels=LABELS)
    for i, (image, label) in enumerate(hippo_cases[:5]):
        store.import_case(image, label, approved=i < 3)
    store.close()
    registry = ModelRegistry(root)
    tiny = make_tiny_pair_dir(tmp_path_factory.mktemp("tiny") / "tiny", model_id="tiny-start")
    registry.register(tiny, {})
    registry.promote("tiny-start", reason="test start model")
    return root


def _items(n_approved: int, n_other: int) -> list[dict]:
    items = [{"case_id": f"case_{i:03d}", "approved": True, "version": 2} for i in range(n_approved)]
    items += [{"case_id": f"other_{i:03d}", "approved": False, "version": 1} for i in range(n_other)]
    return items


def test_validation_cases_are_approved_stable_and_never_trained_on():
    split = split_for_round(_items(30, 10), 0.2)
    val_ids = {it["case_id"] for it in split.val}
    assert val_ids and all(it["approved"] for it in split.val)
    assert not val_ids & {it["case_id"] for it in split.train}
    assert 2 <= len(split.val) <= 12  # about 20 % of 30
    # adding cases never moves an existing case between validation and training
    bigger = split_for_round(_items(60, 10), 0.2)
    assert val_ids == {it["case_id"] for it in bigger.val} & {f"case_{i:03d}" for i in range(30)}
    assert len(split_for_round(_items(2, 0), 0.01).val) == 1  # at least one held out


def test_retraining_without_an_approved_case_is_refused():
    with pytest.raises(InputError, match="approve"):
        split_for_round(_items(0, 4))


def test_retrain_round_registers_the_candidate_and_promotion_changes_the_current_model(store_root):
    registry = ModelRegistry(store_root)
    before = registry.current_model_dir()
    events: list[dict] = []
    result = retrain(
        store_root,
        epochs=3,
        time_budget_s=1e-3,  # stops after the first epoch
        device="cpu",
        rule=PromotionRule(min_delta=-1.0, max_class_drop=None),  # accept any candidate
        progress=events.append,
    )
    assert result.epochs_run == 1 and result.stopped_by_budget
    epochs = [e for e in events if e["stage"] == "train"]
    assert epochs[0]["epoch"] == 1 and epochs[0]["loss"] > 0 and 0 <= epochs[0]["dice"] <= 1
    assert result.promoted and result.current_model == "tiny-start"
    after = registry.current_model_dir()
    assert after != before and after == registry.model_dir(result.model_id)
    entry = registry.entry(result.model_id)
    assert entry.status == "promoted" and entry.parent == "tiny-start"
    # every labelled case is either trained on or validated on, with its label version
    assert sorted(entry.trained_on + entry.validation["cases"]) == sorted(
        f"hippocampus_{n}:1" for n in ("001", "003", "004", "006", "007")
    )
    assert set(entry.validation["cases"]) == set(result.validation)
    assert 0 <= entry.metrics["dice_mean"] <= 1 and "dice_anterior" in entry.metrics
    assert "dice_mean" in entry.validation["baseline_metrics"]
    card = json.loads((after / "pair.json").read_text())
    assert card["parent_model"] == "tiny-start"
    assert card["training"]["trained_on"] == entry.trained_on
    assert (after / "train_log.csv").read_text().startswith("epoch,")


def test_planted_worse_model_is_not_promoted(store_root, tmp_path):
    from napari_medseg.models.pair import ModelPair
    from napari_medseg.retraining.retrain import judge_candidate, load_start_model
    from napari_medseg.store import CaseStore

    registry = ModelRegistry(store_root)
    current_id = registry.current_id
    current = load_start_model(registry.current_model_dir())
    worse = ModelPair.load(registry.current_model_dir())
    with torch.no_grad():  # all weights zero: every logit is 0, so every voxel is background
        for net in worse.nets.values():
            for p in net.parameters():
                p.zero_()
    worse.card["model_id"] = "planted-worse"
    worse_dir = worse.save(tmp_path / "worse")
    store = CaseStore.open(store_root)
    val = split_for_round(store.training_items()).val
    store.close()
    judged = judge_candidate(registry, worse_dir, current, current_id, val, [], PromotionRule(), device="cpu")
    assert judged.candidate_metrics["dice_mean"] == 0.0 < judged.current_metrics["dice_mean"]
    assert not judged.promote and "stays" in judged.reason
    assert registry.current_id == current_id
    assert registry.entry("planted-worse").status == "rejected"


def test_cancelled_retrain_leaves_the_registry_untouched(store_root):
    from napari_medseg.inference.cancel import CancelToken

    registry_file = store_root / ".medseg" / "models" / "registry.json"
    before = registry_file.read_bytes()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        retrain(store_root, epochs=1, device="cpu", cancel=token)
    assert registry_file.read_bytes() == before
