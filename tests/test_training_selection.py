"""Small-loss voxel exchange and the forget-rate ramp."""

from __future__ import annotations

import pytest
import torch

from napari_medseg.training.selection import exchange, forget_rate, small_loss_mask


def test_forget_rate_ramps_linearly_to_its_maximum():
    rates = [forget_rate(e, max_rate=0.2, ramp_epochs=4) for e in range(7)]
    assert rates[:5] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert rates[5:] == pytest.approx([0.2, 0.2])


def test_small_loss_mask_drops_exactly_the_largest_loss_candidates():
    torch.manual_seed(0)
    loss = torch.rand(2, 4, 5, 6)
    cand = torch.zeros_like(loss, dtype=torch.bool)
    cand[:, 1:3] = True  # 120 candidates
    keep = small_loss_mask(loss, forget=0.25, candidates=cand)
    assert keep[~cand].all()  # outside the band everything is kept
    dropped = cand & ~keep
    assert int(dropped.sum()) == 30
    assert loss[dropped].min() > loss[cand & keep].max()


def test_zero_forget_rate_keeps_every_voxel():
    loss = torch.rand(1, 3, 3, 3)
    assert small_loss_mask(loss, 0.0).all()


def test_each_net_is_weighted_by_its_peers_selection():
    loss_a = torch.zeros(1, 1, 1, 4)
    loss_b = torch.zeros(1, 1, 1, 4)
    loss_a[..., 0] = 5.0  # A finds voxel 0 hard
    loss_b[..., 3] = 5.0  # B finds voxel 3 hard
    w_a, w_b = exchange(loss_a, loss_b, forget=0.25)
    assert w_a.flatten().tolist() == [1.0, 1.0, 1.0, 0.0]  # A learns without B's hard voxel
    assert w_b.flatten().tolist() == [0.0, 1.0, 1.0, 1.0]
