"""Small-loss voxel exchange between the two peers (co-teaching lifted to voxels).

Each network ranks the candidate voxels of a batch by its *own* per-voxel loss and keeps the
``1 - forget_rate`` fraction with the smallest loss; that keep-mask weights its *peer's* loss, so
each network is taught by the voxels the other one finds clean. Candidates are the voxels in the
boundary band of the given label (where label noise lives); voxels outside the band are always
kept — ranking the whole patch would throw away the small foreground first (it is 2 % of a
hippocampus patch and is always harder than background).

The forget rate ramps linearly from 0 to its maximum over the first epochs, while the networks
still learn the easy patterns and have not memorised the noise yet.
"""

from __future__ import annotations

import torch


def forget_rate(epoch: int, max_rate: float = 0.2, ramp_epochs: int = 5) -> float:
    """Forget rate at (0-based) ``epoch``: ``max_rate * min(epoch / ramp_epochs, 1)``."""
    if not 0.0 <= max_rate < 1.0:
        raise ValueError(f"max forget rate must be within [0, 1), got {max_rate}")
    if ramp_epochs <= 0:
        return max_rate
    return max_rate * min(max(epoch, 0) / ramp_epochs, 1.0)


def small_loss_mask(
    voxel_loss: torch.Tensor, forget: float, candidates: torch.Tensor | None = None
) -> torch.Tensor:
    """Keep-mask of the small-loss voxels of a batch.

    Args:
        voxel_loss: (B, D, H, W) per-voxel loss of one network (detached internally).
        forget: fraction of the candidates, the largest-loss ones, to drop.
        candidates: (B, D, H, W) bool, the voxels that take part in the ranking (default: all).
    Returns:
        (B, D, H, W) bool: True = keep (all non-candidates, and the ``1 - forget`` smallest-loss candidates).
    """
    loss = voxel_loss.detach().float()
    cand = torch.ones_like(loss, dtype=torch.bool) if candidates is None else candidates.bool()
    keep = torch.ones_like(cand)
    values = loss[cand]
    n_drop = int(forget * values.numel())
    if n_drop <= 0:
        return keep
    # threshold = the n_keep-th smallest loss; ties above it are dropped
    n_keep = values.numel() - n_drop
    threshold = torch.kthvalue(values.cpu(), n_keep).values.to(loss.device) if n_keep > 0 else None
    dropped = cand & (loss > threshold) if threshold is not None else cand
    # equal losses at the threshold could keep more than n_keep: fine, selection is a soft heuristic
    keep &= ~dropped
    return keep


def exchange(
    loss_a: torch.Tensor, loss_b: torch.Tensor, forget: float, candidates: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross the keep-masks: returns (weights for A's loss = B's selection, weights for B's loss = A's).

    Shapes as in :func:`small_loss_mask`; weights are float 0/1 tensors.
    """
    keep_a = small_loss_mask(loss_a, forget, candidates)
    keep_b = small_loss_mask(loss_b, forget, candidates)
    return keep_b.float(), keep_a.float()
