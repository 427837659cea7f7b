"""Network factory and model-card helpers."""

from __future__ import annotations

import pytest

from napari_medseg.errors import CheckpointError
from napari_medseg.models.bsnet import BSNet
from napari_medseg.models.card import card_classes, code_version, make_card
from napari_medseg.models.factory import build_network, default_config, full_config


def test_build_network_records_the_full_config_for_the_card():
    net = build_network("bsnet", {"filters": [8, 16, 32]})
    assert isinstance(net, BSNet)
    assert net.medseg_arch == "bsnet"
    assert net.medseg_config["filters"] == [8, 16, 32]
    assert net.medseg_config["boundary_filters"] == [4, 8]  # derived from filters
    assert net.medseg_config["deep_supervision"] == 1  # capped at levels - 2
    # the recorded config rebuilds the same architecture
    rebuilt = build_network("bsnet", net.medseg_config)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in net.parameters()]


def test_unknown_architecture_or_key_is_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("segresnet", {})
    with pytest.raises(ValueError, match="unknown BS-Net config keys"):
        build_network("bsnet", {"depth": 3})
    with pytest.raises(ValueError, match="unknown architecture"):
        default_config("vnet")


def test_default_configs_are_json_ready():
    assert default_config("unetr")["img_size"] == [48, 64, 48]
    assert full_config("unetr", {"img_size": (32, 32, 32)})["img_size"] == [32, 32, 32]


def test_card_holds_architecture_data_and_version():
    card = make_card(
        "unetr", {}, training={"data": "msd-hippocampus", "split": "fold0"}, metrics={"dice": 0.8}
    )
    assert card["patch_size"] == [48, 64, 48]
    assert card["config"]["hidden_size"] == 192
    assert card_classes(card) == {0: "background", 1: "anterior", 2: "posterior"}
    assert card["training"]["split"] == "fold0" and card["metrics"] == {"dice": 0.8}
    assert card["code_version"] == code_version() and card["code_version"].startswith("0.")


def test_card_without_classes_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="classes"):
        card_classes({})
