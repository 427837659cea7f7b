"""Small-loss voxel selection between the two peers (co-teaching lifted to voxels), with trust rules.

Each network ranks the *candidate* voxels of a batch by its own per-voxel loss and keeps the
``1 - forget`` fraction with the smallest loss; that keep-mask weights a network's loss. Who chooses
for whom (:func:`selectors`): a peer selects its partner's voxels only while it is not much worse
than the partner (validation Dice within ``margin``); otherwise the stronger network uses its own
small-loss selection, so a weak peer can never decide what the strong one learns.

Candidates are the boundary-band voxels (where label noise lives) of **unapproved** labels only.
Approved labels are full supervision for both networks: none of their voxels is ever dropped.
Voxels outside the band are always kept — ranking the whole patch would throw away the small
foreground first (it is 2 % of a hippocampus patch and is always harder than background).

The forget rate is not a constant: :func:`noise_share` estimates the noise in the unapproved labels
as the share of their band voxels where *every judging* peer confidently contradicts the label (the
judges are the nets that choose voxels: both peers, or the stronger alone once the gate has put the
other aside, since a weak peer that learned the labels' bias would veto most real noise); the trainer
smooths it over steps, caps it and ramps it in over the first epochs (:func:`forget_rate`) while the
networks still learn the easy patterns. Approved labels therefore cost no supervision. While some training
labels are approved the trainer forgets at least ``TrainConfig.forget_floor`` of the unapproved band: the
estimate cannot see a systematic bias, which the nets learn as if it were anatomy (docs/co-correcting.md).
"""

from __future__ import annotations

import torch


def forget_rate(
    epoch: int, max_rate: float = 0.2, ramp_epochs: int = 5, estimate: float | None = None
) -> float:
    """Forget rate at (0-based) ``epoch``: ``min(estimate, max_rate) * min(epoch / ramp_epochs, 1)``.

    ``estimate`` is the measured noise share of the unapproved labels (:func:`noise_share`); without
    one the cap ``max_rate`` itself is ramped in (a constant rate, for experiments).
    """
    if not 0.0 <= max_rate < 1.0:
        raise ValueError(f"max forget rate must be within [0, 1), got {max_rate}")
    rate = max_rate if estimate is None else min(max(float(estimate), 0.0), max_rate)
    if ramp_epochs <= 0:
        return rate
    return rate * min(max(epoch, 0) / ramp_epochs, 1.0)


def noise_share(
    probs: list[torch.Tensor], given: torch.Tensor, candidates: torch.Tensor, confidence: float = 0.7
) -> float | None:
    """Share of candidate voxels where every peer confidently contradicts the given label.

    Args:
        probs: each peer's softmax, (B, K, D, H, W).
        given: (B, D, H, W) int64 given labels.
        candidates: (B, D, H, W) bool, the voxels to judge (band of unapproved labels).
        confidence: a peer contradicts a voxel when its probability of the given class is below
            ``1 - confidence``.
    Returns:
        The share in [0, 1], or None when there is no candidate voxel.
    """
    n = int(candidates.sum())
    if n == 0:
        return None
    wrong = torch.ones_like(candidates)
    for p in probs:
        p_given = p.detach().gather(1, given.clamp(min=0)[:, None])[:, 0]
        wrong &= p_given < (1.0 - confidence)
    return float((wrong & candidates).sum()) / n


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


def selectors(scores: dict[str, float] | None, margin: float = 0.05) -> dict[str, str]:
    """Who selects each network's voxels: its peer, unless that peer is more than ``margin`` worse.

    Args:
        scores: each network's latest validation mean Dice (None or missing = unknown: each
            network selects for itself, the safe choice before anything is measured).
        margin: how much worse (Dice, 0..1) a peer may be and still choose for its partner.
    Returns:
        ``{net: selecting net}`` for the two networks of ``scores``.
    """
    names = list(scores or {})
    if len(names) != 2 or any(scores[n] is None for n in names):
        return {n: n for n in names}
    a, b = names
    return {
        a: b if scores[b] >= scores[a] - margin else a,
        b: a if scores[a] >= scores[b] - margin else b,
    }


def select_voxels(
    losses: dict[str, torch.Tensor],
    forget: float,
    candidates: torch.Tensor,
    chooser: dict[str, str],
) -> dict[str, torch.Tensor]:
    """Per-network 0/1 loss weights: the small-loss keep-mask of the network that selects for it.

    Args:
        losses: per network, (B, D, H, W) per-voxel loss.
        forget: share of the candidates to drop.
        candidates: (B, D, H, W) bool (band of unapproved labels); all other voxels keep weight 1.
        chooser: from :func:`selectors`.
    """
    keep = {n: small_loss_mask(losses[n], forget, candidates) for n in set(chooser.values())}
    return {n: keep[chooser[n]].float() for n in losses}
