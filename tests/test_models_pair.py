"""ModelPair: pair.json + two checkpoints; identity (model id, checkpoint hash) and preprocessing."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_medseg.errors import CheckpointError
from napari_medseg.models.factory import build_network
from napari_medseg.models.pair import ModelPair
from napari_medseg.models.preprocessing import normalize_intensity

TINY = {
    "unetr": {"img_size": [16, 32, 16], "feature_size": 8, "hidden_size": 48, "mlp_dim": 96, "num_heads": 2},
    "bsnet": {"filters": [8, 16, 32], "boundary_filters": [4, 8], "deep_supervision": 1},
}


def make_pair(seed: int = 0) -> ModelPair:
    torch.manual_seed(seed)
    nets = {name: build_network(name, cfg).eval() for name, cfg in TINY.items()}
    return ModelPair.from_nets(nets, "hippo-test-v1", training={"split": "test"})


@pytest.fixture
def saved(tmp_path):
    pair = make_pair()
    pair.save(tmp_path / "model")
    return pair, tmp_path / "model"


def test_saved_pair_has_the_contract_layout_and_loads_with_identical_outputs(saved):
    pair, model_dir = saved
    names = {"pair.json", "unetr.safetensors", "unetr.json", "bsnet.safetensors", "bsnet.json"}
    assert {p.name for p in model_dir.iterdir()} == names
    loaded = ModelPair.load(model_dir)
    assert set(loaded.nets) == {"unetr", "bsnet"}
    assert loaded.model_id == "hippo-test-v1"
    assert loaded.classes == {0: "background", 1: "anterior", 2: "posterior"}
    assert loaded.patch_size == (16, 32, 16)
    x = torch.randn(1, 1, 16, 32, 16)
    with torch.no_grad():
        for name in ("unetr", "bsnet"):
            assert torch.equal(pair.nets[name](x), loaded.nets[name](x))


def test_checkpoint_hash_is_stable_and_changes_with_the_weights(tmp_path, saved):
    pair, model_dir = saved
    first = ModelPair.load(model_dir).checkpoint_hash
    assert len(first) == 12 and first == pair.checkpoint_hash
    assert ModelPair.load(model_dir, nets=("bsnet",)).checkpoint_hash == first
    make_pair(seed=1).save(tmp_path / "other")
    assert ModelPair.load(tmp_path / "other").checkpoint_hash != first


def test_an_unsaved_pair_has_no_checkpoint_hash():
    with pytest.raises(CheckpointError, match="save it"):
        _ = make_pair().checkpoint_hash


def test_one_network_can_be_loaded_alone(saved):
    _, model_dir = saved
    assert set(ModelPair.load(model_dir, nets=("unetr",)).nets) == {"unetr"}
    with pytest.raises(CheckpointError, match="no network 'segresnet'"):
        ModelPair.load(model_dir, nets=("segresnet",))


def test_preprocess_follows_the_card(saved, hippo_cases):
    _, model_dir = saved
    image = np.asarray(nib.load(hippo_cases[0][0]).dataobj)
    pair = ModelPair.load(model_dir)
    np.testing.assert_array_equal(pair.preprocess(image), normalize_intensity(image, "zscore"))


def test_missing_pair_card_and_swapped_network_files_are_refused(tmp_path, saved):
    _, model_dir = saved
    with pytest.raises(CheckpointError, match="pair.json not found"):
        ModelPair.load(tmp_path)
    other = tmp_path / "other"
    make_pair(seed=1).save(other)
    for suffix in (".safetensors", ".json"):
        (model_dir / f"bsnet{suffix}").write_bytes((other / f"bsnet{suffix}").read_bytes())
    with pytest.raises(CheckpointError, match="do not belong"):
        ModelPair.load(model_dir)


def test_pair_card_records_provenance(saved):
    _, model_dir = saved
    card = json.loads((model_dir / "pair.json").read_text())
    assert card["nets"] == ["unetr", "bsnet"]
    assert card["training"] == {"split": "test"} and card["code_version"]
    assert set(card["weights"]) == {"unetr", "bsnet"}


def test_proposal_weights_are_equal_unless_the_card_picks_them(tmp_path):
    pair = make_pair()
    assert pair.proposal_weights == {"unetr": 0.5, "bsnet": 0.5}
    torch.manual_seed(0)
    nets = {name: build_network(name, cfg).eval() for name, cfg in TINY.items()}
    picked = ModelPair.from_nets(nets, "hippo-test-v2", proposal_weights={"unetr": 0.25, "bsnet": 0.75})
    picked.save(tmp_path / "m")
    again = ModelPair.load(tmp_path / "m")
    assert again.proposal_weights == {"unetr": 0.25, "bsnet": 0.75}
    pair.save(tmp_path / "plain")
    # same weights, other proposal rule: another checkpoint identity for provenance
    assert again.checkpoint_hash != ModelPair.load(tmp_path / "plain").checkpoint_hash


def test_the_engine_proposes_with_the_cards_weights(hippo_cases):
    from napari_medseg.inference.engine import predict_volume
    from napari_medseg.io import load_volume

    torch.manual_seed(0)
    nets = {name: build_network(name, cfg).eval() for name, cfg in TINY.items()}
    only_b = ModelPair.from_nets(nets, "hippo-test-b", proposal_weights={"unetr": 0.0, "bsnet": 1.0})
    volume = load_volume(hippo_cases[0][0])
    pred = predict_volume(volume, only_b, device="cpu", keep_probs=True)
    # kept probabilities are float16: argmax may differ at exact near-ties only
    assert np.mean(pred.labels != pred.probs["bsnet"].argmax(0)) < 1e-3
    assert np.mean(pred.labels != pred.probs["unetr"].argmax(0)) > 0.05  # the weights really decide
    assert pred.uncertainty.max() > 0  # the map still uses both networks
