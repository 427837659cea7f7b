"""UNETR peer: MONAI UNETR built from our config; shapes on padded real crops; it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import real_batch
from monai.transforms import DivisiblePad

from napari_medseg.models.factory import build_network
from napari_medseg.models.unetr import UNETR_DEFAULTS, build_unetr
from napari_medseg.training.losses import seg_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"img_size": (32, 32, 32), "feature_size": 8, "hidden_size": 48, "mlp_dim": 96, "num_heads": 2}


def test_default_config_covers_every_hippocampus_case():
    img_size = UNETR_DEFAULTS["img_size"]
    # MSD hippocampus extents are at most 43 x 59 x 47 voxels
    assert all(s >= m and s % 16 == 0 for s, m in zip(img_size, (43, 59, 47), strict=True))


def test_odd_real_crop_padded_to_multiples_of_16_gives_logits_of_same_shape(hippo_cases):
    x, _ = real_batch(hippo_cases, 1, (13, 27, 11))
    padded = DivisiblePad(k=16)(x[0]).as_tensor()[None]
    net = build_unetr(**{**TINY, "img_size": tuple(padded.shape[2:])}).eval()
    with torch.no_grad():
        logits = net(padded)
    assert tuple(padded.shape[2:]) == (16, 32, 16)
    assert logits.shape == (1, 3, 16, 32, 16)
    assert torch.isfinite(logits).all()


def test_default_unetr_maps_a_hippocampus_patch_to_three_class_logits():
    net = build_network("unetr", {}).eval()
    with torch.no_grad():
        logits = net(torch.zeros(1, 1, *UNETR_DEFAULTS["img_size"]))
    assert logits.shape == (1, 3, 48, 64, 48)
    assert net.medseg_config["img_size"] == [48, 64, 48]


@pytest.mark.parametrize(
    "config, match",
    [
        ({"img_size": (40, 64, 48)}, "multiples of 16"),
        ({"img_size": (48, 64)}, "multiples of 16"),
        ({"hidden_size": 190}, "divisible by num_heads"),
        ({"out_channels": 1}, "out_channels"),
        ({"depth": 3}, "unknown UNETR config"),
    ],
)
def test_invalid_unetr_config_is_refused(config, match):
    with pytest.raises(ValueError, match=match):
        build_unetr(**config)


def test_fifteen_adam_steps_lower_the_loss_on_real_cases(hippo_cases):
    torch.manual_seed(0)
    x, y = real_batch(hippo_cases, 4, TINY["img_size"])
    net = build_unetr(**TINY)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = seg_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
