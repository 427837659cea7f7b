"""Small-loss voxel exchange and the forget-rate ramp."""

from __future__ import annotations

import pytest
import torch

from napari_medseg.training.selection import (
    forget_rate,
    noise_share,
    select_voxels,
    selectors,
    small_loss_mask,
)


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
    cand = torch.ones(1, 1, 1, 4, dtype=torch.bool)
    chooser = selectors({"a": 0.80, "b": 0.78}, margin=0.05)  # peers of similar skill
    assert chooser == {"a": "b", "b": "a"}
    w = select_voxels({"a": loss_a, "b": loss_b}, 0.25, cand, chooser)
    assert w["a"].flatten().tolist() == [1.0, 1.0, 1.0, 0.0]  # A learns without B's hard voxel
    assert w["b"].flatten().tolist() == [0.0, 1.0, 1.0, 1.0]


def test_a_much_weaker_peer_does_not_choose_for_the_stronger():
    loss_a = torch.zeros(1, 1, 1, 4)
    loss_b = torch.zeros(1, 1, 1, 4)
    loss_a[..., 0] = 5.0
    loss_b[..., 3] = 5.0
    cand = torch.ones(1, 1, 1, 4, dtype=torch.bool)
    chooser = selectors({"a": 0.60, "b": 0.85}, margin=0.05)  # a is 25 points worse
    assert chooser == {"a": "b", "b": "b"}  # the weak one still learns from the strong one's pick
    w = select_voxels({"a": loss_a, "b": loss_b}, 0.25, cand, chooser)
    assert w["b"].flatten().tolist() == [1.0, 1.0, 1.0, 0.0]  # b drops its own hard voxel
    assert w["a"].flatten().tolist() == [1.0, 1.0, 1.0, 0.0]


def test_unknown_peer_scores_mean_each_net_selects_for_itself():
    assert selectors({"a": None, "b": 0.9}) == {"a": "a", "b": "b"}
    assert selectors(None) == {}


def test_forget_rate_follows_the_noise_estimate_capped_and_ramped():
    assert forget_rate(5, max_rate=0.5, ramp_epochs=2, estimate=0.0) == 0.0  # clean labels: drop nothing
    assert forget_rate(5, max_rate=0.5, ramp_epochs=2, estimate=0.3) == pytest.approx(0.3)
    assert forget_rate(5, max_rate=0.5, ramp_epochs=2, estimate=0.9) == pytest.approx(0.5)
    assert forget_rate(1, max_rate=0.5, ramp_epochs=2, estimate=0.3) == pytest.approx(0.15)


def test_noise_share_counts_voxels_both_peers_confidently_contradict():
    given = torch.tensor([[[[1, 1, 1, 0]]]])  # (B, D, H, W) = (1, 1, 1, 4)
    fg = torch.tensor([0.05, 0.9, 0.05, 0.9])  # peers' foreground probability per voxel
    p = torch.stack([1 - fg, fg])[None, :, None, None]  # (1, 2, 1, 1, 4)
    q = p.clone()
    q[0, :, 0, 0, 2] = torch.tensor([0.5, 0.5])  # the second peer is unsure at voxel 2
    cand = torch.ones(1, 1, 1, 4, dtype=torch.bool)
    # voxel 0: both say background (label 1) -> noise; voxel 2: only one peer is sure -> not counted;
    # voxel 3: label 0, both say foreground -> noise
    assert noise_share([p, q], given, cand, confidence=0.7) == pytest.approx(2 / 4)
    assert noise_share([p, q], given, torch.zeros_like(cand)) is None
