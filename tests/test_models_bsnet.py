"""BS-Net: shapes at every head for padded odd real crops, argument validation, boundary fusion, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import real_batch
from monai.transforms import DivisiblePad

from napari_medseg.models.boundary import boundary_targets
from napari_medseg.models.bsnet import BSNet, BSNetOutput
from napari_medseg.models.factory import build_network
from napari_medseg.training.losses import bsnet_loss, seg_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"filters": (8, 16, 32), "boundary_filters": (4, 8), "deep_supervision": 1}


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_odd_real_crop_padded_to_multiples_gives_all_heads_at_expected_shapes(hippo_cases, mode):
    x, _ = real_batch(hippo_cases, 2, (13, 27, 11))
    net = BSNet(filters=(8, 16, 32, 64), boundary_filters=(4, 8, 16), deep_supervision=2)
    net.train(mode == "train")
    padded = torch.stack([DivisiblePad(k=net.divisor)(v).as_tensor() for v in x])
    assert tuple(padded.shape[2:]) == (16, 32, 16)
    with torch.no_grad():
        out = net.forward_with_aux(padded)
        seg = net(padded)
    assert isinstance(out, BSNetOutput)
    assert out.seg.shape == (2, 3, 16, 32, 16)
    assert out.boundary.shape == (2, 1, 16, 32, 16)
    assert [tuple(d.shape) for d in out.deep] == [(2, 3, 8, 16, 8), (2, 3, 4, 8, 4)]
    assert torch.equal(seg, out.seg)


def test_default_bsnet_accepts_the_default_patch_and_whole_padded_cases():
    net = build_network("bsnet", {}).eval()
    assert net.divisor == 8
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 48, 64, 48)).shape == (1, 3, 48, 64, 48)
        assert net(torch.zeros(1, 1, 40, 56, 40)).shape == (1, 3, 40, 56, 40)


def test_input_not_divisible_by_the_level_stride_is_refused_with_a_hint():
    net = BSNet(**TINY)
    with pytest.raises(ValueError, match="divisible by 4; pad it first"):
        net(torch.zeros(1, 1, 16, 18, 16))
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        net(torch.zeros(1, 16, 16, 16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"out_channels": 1}, "out_channels"),
        ({"in_channels": 0}, "in_channels"),
        ({"filters": (8,), "boundary_filters": ()}, "2 to 6 levels"),
        ({"filters": (8, 16, 32), "boundary_filters": (4,)}, "boundary_filters needs 2"),
        ({"filters": (8, 16, 32), "boundary_filters": (4, 8), "deep_supervision": 2}, "deep_supervision"),
        ({"filters": (8, 0, 32), "boundary_filters": (4, 8)}, "positive"),
        ({"norm_name": "group"}, "norm_name"),
    ],
)
def test_invalid_constructor_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BSNet(**kwargs)


def test_segmentation_loss_reaches_the_boundary_decoder_through_the_gates():
    torch.manual_seed(0)
    net = BSNet(**TINY)
    x, y = torch.randn(1, 1, 16, 16, 16), torch.randint(0, 3, (1, 16, 16, 16))
    seg_loss(net(x), y).backward()
    grad = sum(p.grad.abs().sum() for p in net.boundary_decoder.parameters() if p.grad is not None)
    assert grad > 0  # the fusion gates make the segmentation depend on boundary features
    assert all(p.grad is None for p in net.boundary_head.parameters())


def test_fifteen_adam_steps_lower_the_loss_on_real_cases(hippo_cases):
    torch.manual_seed(0)
    x, y = real_batch(hippo_cases, 4, (32, 32, 32))
    bnd = boundary_targets(y)
    net = build_network("bsnet", TINY)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss, parts = bsnet_loss(net.forward_with_aux(x), y, bnd)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts)
    first = {k: np.mean([p[k] for p in losses[:3]]) for k in losses[0]}
    last = {k: np.mean([p[k] for p in losses[-3:]]) for k in losses[0]}
    assert last["total"] < 0.8 * first["total"]
    assert last["seg"] < first["seg"]
    assert last["boundary"] < first["boundary"]
