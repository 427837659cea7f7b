"""PENCIL-style learnable label distributions in the boundary band of not-approved cases.

For each not-approved case, every voxel within ``band_radius`` voxels (Chebyshev) of a label change
gets learnable logits ``ỹ`` (K classes), initialised from the given label as ``init_scale * one_hot``.
The label distribution ``y_d = softmax(ỹ)`` replaces the given one-hot label as the networks'
target there once the curriculum admits the case. ``ỹ`` is trained with both networks' predictions
(PENCIL, Yi & Wu, CVPR 2019, lifted to voxels):

    L_ỹ = Σ_voxels [ Σ_net KL(p_net ‖ y_d) + α · CE(given, y_d) ]

The KL has the PENCIL direction (network distribution first): its gradient on ``ỹ`` is
``y_d − p_net``, so ``y_d`` moves toward what the networks predict, and the compatibility term pulls
it back toward the given label; at equilibrium ``y_d = (Σ_net p_net + α·given) / (n_nets + α)``.
The networks in turn learn from ``y_d`` (soft cross-entropy) plus β · entropy of their prediction,
see :mod:`~napari_medseg.training.cocorrecting`. The loss is a *sum* over voxels, so with plain SGD
each voxel's update does not depend on the batch size.

Approved cases, voxels outside the band and cases the curriculum has not admitted keep the given
label exactly (they have no logits, or their logits are not used and receive no gradient).

All logits live in one flat ``(N, K)`` parameter so that, under DDP, one ``all_reduce`` of its
gradient keeps every rank's copy identical (see :mod:`~napari_medseg.training.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn


def boundary_band(label: np.ndarray, radius: int = 2) -> np.ndarray:
    """Voxels within ``radius`` voxels (Chebyshev) of a change of label: bool array like ``label``."""
    size = 2 * radius + 1
    return ndimage.maximum_filter(label, size=size) != ndimage.minimum_filter(label, size=size)


@dataclass
class BatchCorrection:
    """The learnable-label view of one batch (returned by :meth:`LabelCorrection.targets`).

    Attributes:
        target: (B, K, D, H, W) float, the networks' target: one-hot given label, or ``y_d`` (detached).
        corrected: (B, D, H, W) bool, voxels whose target is a learnable distribution.
        pos: (M,) int64 rows of the flat logits for the corrected voxels (in ``corrected`` order).
        given: (M,) int64 given labels of the corrected voxels.
    """

    target: torch.Tensor
    corrected: torch.Tensor
    pos: torch.Tensor
    given: torch.Tensor


class LabelCorrection(nn.Module):
    """Learnable label distributions of the band voxels of not-approved cases.

    Args:
        labels: given labels of every training case on its canonical grid, ``(D, H, W)`` int arrays.
        approved: per case, True when a clinician approved its label (then never corrected).
        num_classes: K.
        band_radius: band half-width in voxels.
        init_scale: the given class starts at logit ``init_scale`` (others 0): ``y_d ≈ 0.91`` for K=3, 3.
    """

    def __init__(
        self,
        labels: list[np.ndarray],
        approved: list[bool],
        num_classes: int,
        band_radius: int = 2,
        init_scale: float = 3.0,
    ):
        super().__init__()
        self.num_classes = int(num_classes)
        self.init_scale = float(init_scale)
        self.grid_shapes = [tuple(int(s) for s in lab.shape) for lab in labels]
        voxel_lists, given_lists, starts = [], [], [0]
        for lab, ok in zip(labels, approved, strict=True):
            if ok:
                idx = np.zeros(0, dtype=np.int64)
            else:
                idx = np.flatnonzero(boundary_band(lab, band_radius)).astype(np.int64)
            voxel_lists.append(idx)
            given_lists.append(lab.reshape(-1)[idx].astype(np.int64))
            starts.append(starts[-1] + idx.size)
        given = (
            torch.from_numpy(np.concatenate(given_lists)) if given_lists else torch.zeros(0, dtype=torch.long)
        )
        self.register_buffer("given", given)
        self.register_buffer("starts", torch.tensor(starts, dtype=torch.int64))
        self.register_buffer("voxels", torch.from_numpy(np.concatenate(voxel_lists)))
        self.register_buffer("approved", torch.tensor(list(approved), dtype=torch.bool))
        self.register_buffer("admitted", torch.zeros(len(labels), dtype=torch.bool))
        self.logits = nn.Parameter(self.initial_logits())

    def initial_logits(self) -> torch.Tensor:
        """(N, K) logits of the given labels: ``init_scale * one_hot(given)``."""
        return F.one_hot(self.given, self.num_classes).float() * self.init_scale

    @property
    def n_cases(self) -> int:
        return len(self.grid_shapes)

    def case_rows(self, case: int) -> slice:
        return slice(int(self.starts[case]), int(self.starts[case + 1]))

    def lookup(self, case_index: torch.Tensor, flat_index: torch.Tensor) -> torch.Tensor:
        """Row of the flat logits for each voxel, ``-1`` if the voxel has no active learnable label.

        Args:
            case_index: (B,) int64 case positions.
            flat_index: (B, D, H, W) int64 canonical flat voxel index (``-1`` = outside the case).
        Returns:
            (B, D, H, W) int64.
        """
        rows = torch.full_like(flat_index, -1)
        for b, case in enumerate(case_index.tolist()):
            if self.approved[case] or not self.admitted[case]:
                continue
            sl = self.case_rows(case)
            band = self.voxels[sl]
            if band.numel() == 0:
                continue
            f = flat_index[b].to(band.device)
            at = torch.searchsorted(band, f.clamp(min=0)).clamp(max=band.numel() - 1)
            hit = (band[at] == f) & (f >= 0)
            rows[b] = torch.where(hit, at + sl.start, torch.full_like(at, -1)).to(rows.device)
        return rows

    def targets(
        self, case_index: torch.Tensor, flat_index: torch.Tensor, given_label: torch.Tensor
    ) -> BatchCorrection:
        """Targets for a batch: ``y_d`` where a learnable label is active, else the given one-hot.

        Args:
            case_index: (B,) int64; flat_index: (B, D, H, W) int64; given_label: (B, D, H, W) int64.
        """
        rows = self.lookup(case_index, flat_index)
        corrected = rows >= 0
        target = F.one_hot(given_label.clamp(min=0), self.num_classes).permute(0, 4, 1, 2, 3).float()
        pos = rows[corrected]
        if pos.numel():
            soft = torch.softmax(self.logits.detach()[pos], dim=1).to(target.device)
            target = target.permute(0, 2, 3, 4, 1).clone()
            target[corrected] = soft
            target = target.permute(0, 4, 1, 2, 3).contiguous()
        return BatchCorrection(target, corrected, pos, self.given[pos])

    def loss(self, batch: BatchCorrection, net_probs: list[torch.Tensor], alpha: float = 0.2) -> torch.Tensor:
        """``L_ỹ`` of a batch (sum over its corrected voxels); gradients flow only into ``logits``.

        Args:
            batch: from :meth:`targets`.
            net_probs: each network's softmax, (B, K, D, H, W) (detached here).
            alpha: weight of the compatibility term CE(given, y_d).
        """
        if batch.pos.numel() == 0:
            return self.logits.sum() * 0.0
        log_yd = torch.log_softmax(self.logits[batch.pos], dim=1)  # (M, K)
        total = -alpha * log_yd.gather(1, batch.given[:, None]).sum()
        for probs in net_probs:
            p = probs.detach().float().permute(0, 2, 3, 4, 1)[batch.corrected].to(log_yd.device)
            p = p.clamp_min(1e-8)
            total = total + (p * (p.log() - log_yd)).sum()
        return total

    @torch.no_grad()
    def stats(self) -> dict[str, float]:
        """Voxels whose corrected argmax differs from the given label, and mean |Δ| = mean ½‖y_d − one_hot‖₁."""
        if self.logits.numel() == 0:
            return {"lc_voxels": 0, "lc_changed": 0, "lc_mean_abs_delta": 0.0, "lc_cases_admitted": 0}
        yd = torch.softmax(self.logits, dim=1)
        onehot = F.one_hot(self.given, self.num_classes).float()
        return {
            "lc_voxels": int(self.given.numel()),
            "lc_changed": int((yd.argmax(1) != self.given).sum()),
            "lc_mean_abs_delta": float(0.5 * (yd - onehot).abs().sum(1).mean()),
            "lc_cases_admitted": int((self.admitted & ~self.approved).sum()),
        }

    @torch.no_grad()
    def corrected_label(self, case: int, given: np.ndarray) -> np.ndarray:
        """The case's label on its canonical grid with band voxels replaced by ``argmax y_d``."""
        out = given.copy().reshape(-1)
        sl = self.case_rows(case)
        out[self.voxels[sl].cpu().numpy()] = self.logits[sl].argmax(1).cpu().numpy()
        return out.reshape(given.shape)
