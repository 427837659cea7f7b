"""Training losses: segmentation (Dice + CE), boundary (BCE + Dice), deep supervision, per-voxel losses.

Shapes: logits ``(B, C, D, H, W)``; integer labels ``(B, D, H, W)`` (or ``(B, 1, D, H, W)``);
boundary logits/targets ``(B, 1, D, H, W)``. Scalar losses are batch means; the ``voxel_*``
functions return one loss per voxel ``(B, D, H, W)`` (reduction ``"none"``) for the small-loss
voxel selection of the Co-Correcting trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss

from napari_medseg.models.bsnet import BSNetOutput

#: Weight of the boundary loss in ``bsnet_loss``.
BOUNDARY_WEIGHT = 0.5

_seg_loss = DiceCELoss(to_onehot_y=True, softmax=True)
_boundary_dice = DiceLoss(sigmoid=True)


def _labels_b1(labels: torch.Tensor) -> torch.Tensor:
    if labels.ndim == 4:
        labels = labels.unsqueeze(1)
    if labels.ndim != 5 or labels.shape[1] != 1:
        raise ValueError(f"labels must be (B, D, H, W) or (B, 1, D, H, W), got shape {tuple(labels.shape)}")
    return labels.long()


def seg_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice + cross-entropy (MONAI ``DiceCELoss``, softmax, one-hot labels) -> scalar tensor.

    Args:
        logits: ``(B, C, D, H, W)``.
        labels: ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` integers in ``0 .. C-1``.
    """
    return _seg_loss(logits, _labels_b1(labels))


def boundary_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits + soft Dice on the boundary map -> scalar tensor.

    Args:
        logits: ``(B, 1, D, H, W)`` boundary logits.
        target: ``(B, 1, D, H, W)`` float in [0, 1] (``models.boundary.boundary_targets``).
    """
    target = target.to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, target) + _boundary_dice(logits, target)


def deep_supervision_weights(n: int) -> list[float]:
    """Weights of ``n`` deep-supervision outputs (highest resolution first): 1/2, 1/4, ...

    The full-resolution output has weight 1; the deep ones halve at each level (as in nnU-Net).
    """
    return [0.5 ** (k + 1) for k in range(n)]


def downsample_labels(labels: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Nearest-neighbour resample of integer labels ``(B, [1,] D, H, W)`` to ``(B, 1, *size)``."""
    lab = _labels_b1(labels).float()
    return F.interpolate(lab, size=tuple(size), mode="nearest").long()


def bsnet_loss(
    output: BSNetOutput,
    labels: torch.Tensor,
    boundary_target: torch.Tensor,
    boundary_weight: float = BOUNDARY_WEIGHT,
) -> tuple[torch.Tensor, dict[str, float]]:
    """BS-Net training loss: seg + deep supervision + ``boundary_weight`` * boundary.

    Args:
        output: ``BSNet.forward_with_aux`` result.
        labels: ``(B, D, H, W)`` integer labels.
        boundary_target: ``(B, 1, D, H, W)`` float (``boundary_targets(labels)``).
        boundary_weight: weight of the boundary term.

    Returns:
        ``(total, parts)``: the scalar tensor to back-propagate and a dict of floats
        ``{"seg", "deep", "boundary", "total"}`` for logging.
    """
    seg = seg_loss(output.seg, labels)
    deep = output.seg.new_zeros(())
    for weight, logits in zip(deep_supervision_weights(len(output.deep)), output.deep, strict=True):
        deep = deep + weight * seg_loss(logits, downsample_labels(labels, logits.shape[2:]))
    bnd = boundary_loss(output.boundary, boundary_target)
    total = seg + deep + boundary_weight * bnd
    parts = {"seg": seg.item(), "deep": deep.item(), "boundary": bnd.item(), "total": total.item()}
    return total, parts


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Integer labels ``(B, [1,] D, H, W)`` -> float one-hot ``(B, C, D, H, W)``."""
    lab = _labels_b1(labels)[:, 0]
    return F.one_hot(lab, num_classes).permute(0, 4, 1, 2, 3).float()


def voxel_ce(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Per-voxel cross-entropy against a (soft) label distribution.

    Args:
        logits: ``(B, C, D, H, W)``.
        target_probs: ``(B, C, D, H, W)`` probabilities summing to 1 over C (``one_hot`` for hard labels).

    Returns:
        ``(B, D, H, W)`` losses (nats), no reduction.
    """
    if logits.shape != target_probs.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(target_probs.shape)} differ in shape"
        )
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1)


def voxel_boundary_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-voxel boundary BCE: ``(B, 1, D, H, W)`` logits and targets -> ``(B, D, H, W)``."""
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")[:, 0]
