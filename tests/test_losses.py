"""Training losses: segmentation, boundary, deep supervision, per-voxel losses for voxel selection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_medseg.models.boundary import boundary_targets
from napari_medseg.models.bsnet import BSNetOutput
from napari_medseg.training.losses import (
    BOUNDARY_WEIGHT,
    boundary_loss,
    bsnet_loss,
    deep_supervision_weights,
    downsample_labels,
    one_hot,
    seg_loss,
    voxel_boundary_bce,
    voxel_ce,
)


@pytest.fixture
def labels() -> torch.Tensor:
    torch.manual_seed(0)
    lab = torch.zeros(2, 8, 8, 8, dtype=torch.long)
    lab[:, 2:6, 2:6, 2:4] = 1
    lab[:, 2:6, 2:6, 4:6] = 2
    return lab


def confident(labels: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    return scale * (2 * one_hot(labels, 3) - 1)


def test_seg_loss_is_small_for_correct_and_large_for_wrong_logits(labels):
    good = seg_loss(confident(labels), labels)
    wrong = seg_loss(confident((labels + 1) % 3), labels)
    assert good < 0.05 < 1.0 < wrong
    assert seg_loss(confident(labels), labels[:, None]) == good  # (B, 1, D, H, W) labels too


def test_voxel_ce_equals_cross_entropy_for_hard_labels(labels):
    logits = torch.randn(2, 3, 8, 8, 8)
    per_voxel = voxel_ce(logits, one_hot(labels, 3))
    assert per_voxel.shape == (2, 8, 8, 8)
    torch.testing.assert_close(per_voxel, F.cross_entropy(logits, labels, reduction="none"))


def test_voxel_ce_with_soft_targets_is_lowest_when_the_prediction_matches_them():
    target = torch.tensor([0.7, 0.2, 0.1]).view(1, 3, 1, 1, 1)
    matched = voxel_ce(target.log(), target)
    other = voxel_ce(torch.tensor([0.1, 0.2, 0.7]).log().view(1, 3, 1, 1, 1), target)
    assert matched.shape == (1, 1, 1, 1) and matched < other
    with pytest.raises(ValueError, match="differ in shape"):
        voxel_ce(torch.zeros(1, 3, 2, 2, 2), torch.zeros(1, 2, 2, 2, 2))


def test_boundary_loss_rewards_predicting_the_boundary(labels):
    target = boundary_targets(labels)
    good = boundary_loss(20 * (2 * target - 1), target)
    bad = boundary_loss(-20 * (2 * target - 1), target)
    assert good < 0.01 and bad > 1.0
    assert voxel_boundary_bce(20 * (2 * target - 1), target).shape == (2, 8, 8, 8)


def test_deep_supervision_labels_are_downsampled_and_weighted(labels):
    small = downsample_labels(labels, (4, 4, 4))
    assert small.shape == (2, 1, 4, 4, 4) and set(small.unique().tolist()) <= {0, 1, 2}
    assert deep_supervision_weights(3) == [0.5, 0.25, 0.125]


def test_bsnet_loss_sums_its_weighted_parts(labels):
    torch.manual_seed(0)
    out = BSNetOutput(
        seg=torch.randn(2, 3, 8, 8, 8, requires_grad=True),
        boundary=torch.randn(2, 1, 8, 8, 8, requires_grad=True),
        deep=[torch.randn(2, 3, 4, 4, 4, requires_grad=True), torch.randn(2, 3, 2, 2, 2, requires_grad=True)],
    )
    total, parts = bsnet_loss(out, labels, boundary_targets(labels))
    assert set(parts) == {"seg", "deep", "boundary", "total"}
    expected = parts["seg"] + parts["deep"] + BOUNDARY_WEIGHT * parts["boundary"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert all(t.grad is not None for t in (out.seg, out.boundary, *out.deep))
