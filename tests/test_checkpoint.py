"""Checkpoints: safetensors + JSON card round trip; tampered, pickled and mismatched files are refused."""

from __future__ import annotations

import json

import pytest
import torch

from napari_medseg.errors import CheckpointError
from napari_medseg.models.card import make_card, sha256_file
from napari_medseg.models.checkpoint import card_path, load_network, save_network, weights_path
from napari_medseg.models.factory import build_network

TINY = {
    "unetr": {"img_size": [16, 32, 16], "feature_size": 8, "hidden_size": 48, "mlp_dim": 96, "num_heads": 2},
    "bsnet": {"filters": [8, 16, 32], "boundary_filters": [4, 8], "deep_supervision": 1},
}


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(1, 1, 16, 32, 16)


@pytest.fixture
def saved_bsnet(tmp_path):
    torch.manual_seed(0)
    net = build_network("bsnet", TINY["bsnet"]).eval()
    save_network(net, make_card("bsnet", TINY["bsnet"], training={"data": "test"}), tmp_path / "bsnet")
    return net, tmp_path / "bsnet"


@pytest.mark.parametrize("arch", ["unetr", "bsnet"])
def test_round_trip_gives_identical_outputs(tmp_path, arch, x):
    torch.manual_seed(0)
    net = build_network(arch, TINY[arch]).eval()
    written = save_network(net, None, tmp_path / arch)
    assert written == tmp_path / f"{arch}.json" and (tmp_path / f"{arch}.safetensors").is_file()
    loaded, card = load_network(tmp_path / arch)
    assert card["arch"] == arch and card["weights"]["sha256"] == sha256_file(weights_path(tmp_path / arch))
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))


def test_card_keeps_what_the_caller_recorded(saved_bsnet):
    _, stem = saved_bsnet
    card = json.loads(card_path(stem).read_text())
    assert card["training"] == {"data": "test"}
    assert card["config"]["filters"] == [8, 16, 32]
    assert card["classes"] == {"0": "background", "1": "anterior", "2": "posterior"}
    assert card["code_version"] and card["preprocessing"] == {"scheme": "zscore"}


def test_float16_weights_load_back_as_float32_with_close_outputs(tmp_path, x):
    torch.manual_seed(0)
    net = build_network("bsnet", TINY["bsnet"]).eval()
    save_network(net, None, tmp_path / "half", dtype=torch.float16)
    loaded, card = load_network(tmp_path / "half")
    assert card["weights"]["dtype"] == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    half_size = weights_path(tmp_path / "half").stat().st_size
    save_network(net, None, tmp_path / "full")
    assert half_size < 0.6 * weights_path(tmp_path / "full").stat().st_size
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), atol=2e-2, rtol=2e-2)


def test_stem_may_be_given_with_either_suffix(saved_bsnet):
    _, stem = saved_bsnet
    for path in (stem.with_suffix(".json"), stem.with_suffix(".safetensors")):
        assert load_network(path)[1]["arch"] == "bsnet"


def test_tampered_weights_file_is_refused(saved_bsnet):
    _, stem = saved_bsnet
    w = weights_path(stem)
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF  # flip one byte inside the last tensor
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="modified or replaced"):
        load_network(stem)


def test_pickled_checkpoint_is_refused_without_unpickling(tmp_path, saved_bsnet, monkeypatch):
    net, stem = saved_bsnet
    pt = tmp_path / "model.pt"
    torch.save(net.state_dict(), pt)

    def no_torch_load(*args, **kwargs):
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", no_torch_load)
    with pytest.raises(CheckpointError, match="pickled"):
        load_network(pt)
    # a card that points at a stem which only has a pickle beside it
    card_path(tmp_path / "model").write_text(card_path(stem).read_text())
    with pytest.raises(CheckpointError, match="pickled"):
        load_network(tmp_path / "model")
    # a pickle renamed to .safetensors, with a card whose sha matches it, is still not loaded
    fake = tmp_path / "fake"
    weights_path(fake).write_bytes(pt.read_bytes())
    card = json.loads(card_path(stem).read_text())
    card["weights"]["sha256"] = sha256_file(weights_path(fake))
    card_path(fake).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_network(fake)


def test_card_whose_config_does_not_match_the_weights_is_refused(saved_bsnet):
    _, stem = saved_bsnet
    card = json.loads(card_path(stem).read_text())
    card["config"]["filters"] = [8, 16, 64]
    card_path(stem).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="do not fit the bsnet architecture"):
        load_network(stem)


def test_card_naming_another_architecture_is_refused(saved_bsnet):
    _, stem = saved_bsnet
    card = json.loads(card_path(stem).read_text())
    card["arch"], card["config"] = "unetr", TINY["unetr"]
    card_path(stem).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="do not fit the unetr architecture"):
        load_network(stem)


def test_invalid_config_in_card_is_a_checkpoint_error(saved_bsnet):
    _, stem = saved_bsnet
    card = json.loads(card_path(stem).read_text())
    card["config"]["levels"] = 9
    card_path(stem).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="invalid network config"):
        load_network(stem)


def test_missing_files_are_reported(tmp_path, saved_bsnet):
    _, stem = saved_bsnet
    with pytest.raises(CheckpointError, match="model card .* not found"):
        load_network(tmp_path / "nothing")
    weights_path(stem).unlink()
    with pytest.raises(CheckpointError, match="weights file .* not found"):
        load_network(stem)


def test_corrupt_card_is_reported(saved_bsnet):
    _, stem = saved_bsnet
    card_path(stem).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_network(stem)


def test_saved_weights_are_readable_by_other_users_of_a_shared_folder(saved_bsnet):
    """safetensors writes its file 0600; a model saved into a shared registry must get the umask's mode."""
    import os

    _, stem = saved_bsnet
    mask = os.umask(0)
    os.umask(mask)
    for path in (weights_path(stem), card_path(stem)):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path.name
