"""BS-Net (peer B): a 3D residual U-Net with a boundary decoder that gates the segmentation decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from napari_medseg.models.bsnet_blocks import NORM, BoundaryGate, DecoderStage, EncoderStage, Head

#: Default configuration for the hippocampus task (4 levels; trains on a CPU).
BSNET_DEFAULTS: dict[str, Any] = {
    "in_channels": 1,
    "out_channels": 3,
    "filters": (16, 32, 64, 128),
    "boundary_filters": (8, 16, 32),
    "deep_supervision": 2,
    "norm_name": NORM,
}


class BSNetOutput(NamedTuple):
    """Everything BS-Net predicts for a batch.

    Attributes:
        seg: segmentation logits ``(B, C, D, H, W)``.
        boundary: label-boundary logits ``(B, 1, D, H, W)`` (sigmoid -> probability).
        deep: deep-supervision segmentation logits, ``(B, C, D/2^k, H/2^k, W/2^k)`` for
            ``k = 1 .. deep_supervision`` (highest resolution first).
    """

    seg: torch.Tensor
    boundary: torch.Tensor
    deep: list[torch.Tensor]


def bsnet_config(**overrides: Any) -> dict[str, Any]:
    """Return ``BSNET_DEFAULTS`` updated with ``overrides`` (sequences as tuples); validates keys.

    When only ``filters`` is given, ``boundary_filters`` defaults to half of each decoder width
    (at least 4) and ``deep_supervision`` is capped at ``levels - 2``.
    """
    unknown = set(overrides) - set(BSNET_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown BS-Net config keys: {sorted(unknown)}; allowed: {sorted(BSNET_DEFAULTS)}")
    config = {**BSNET_DEFAULTS, **overrides}
    if "filters" in overrides and "boundary_filters" not in overrides:
        config["boundary_filters"] = tuple(max(4, f // 2) for f in config["filters"][:-1])
    if "filters" in overrides and "deep_supervision" not in overrides:
        config["deep_supervision"] = min(config["deep_supervision"], max(0, len(config["filters"]) - 2))
    for key in ("filters", "boundary_filters"):
        config[key] = tuple(int(f) for f in config[key])
    return config


class BSNet(nn.Module):
    """Boundary-aware 3D segmentation network (BS-Net).

    A residual encoder feeds two decoders: a segmentation decoder and a (narrower) boundary decoder
    that predicts where the label changes. At every decoder level the boundary features gate the
    segmentation features, ``seg * (1 + sigmoid(conv(boundary)))``, so the segmentation decoder
    attends to boundaries at several scales. Deep-supervision heads read the coarser segmentation
    decoder levels.

    Shapes for ``filters=(16, 32, 64, 128)`` (L = 4 levels) and input ``(B, 1, D, H, W)``::

        encoder   e0 (B, 16,  D,   H,   W)      stride 1
                  e1 (B, 32,  D/2, H/2, W/2)    stride 2
                  e2 (B, 64,  D/4, H/4, W/4)    stride 2
                  e3 (B, 128, D/8, H/8, W/8)    bottleneck
        boundary  b2 (B, 32, D/4 ...)  b1 (B, 16, D/2 ...)  b0 (B, 8, D ...)    up(b) + skip e_i
        seg       s2 (B, 64, D/4 ...)  s1 (B, 32, D/2 ...)  s0 (B, 16, D ...)   up(s) + skip e_i,
                  each gated by b_i
        heads     seg (B, C, D, H, W), boundary (B, 1, D, H, W),
                  deep [(B, C, D/2, H/2, W/2), (B, C, D/4, H/4, W/4)]

    Every spatial dim of the input must be divisible by ``2 ** (L - 1)`` (8 for 4 levels); the
    inference engine pads volumes (and sliding-window patches) to such sizes.

    Args:
        in_channels: input channels (1 for one MRI/CT volume).
        out_channels: classes including background (>= 2).
        filters: encoder/segmentation-decoder widths per level, finest first; its length is the
            number of levels (2 to 6).
        boundary_filters: boundary-decoder widths for levels ``0 .. L-2`` (``L - 1`` values).
        deep_supervision: number of deep-supervision heads (0 to ``L - 2``), on levels 1, 2, ...
        norm_name: MONAI normalisation name (``"instance"`` or ``"batch"``).

    Raises:
        ValueError: an argument out of range (message says which).

    Example:
        >>> net = BSNet(out_channels=3, filters=(8, 16, 32), boundary_filters=(4, 8), deep_supervision=1)
        >>> net(torch.zeros(1, 1, 16, 24, 16)).shape
        torch.Size([1, 3, 16, 24, 16])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        filters: Sequence[int] = (16, 32, 64, 128),
        boundary_filters: Sequence[int] = (8, 16, 32),
        deep_supervision: int = 2,
        norm_name: str = NORM,
    ) -> None:
        super().__init__()
        filters = tuple(int(f) for f in filters)
        boundary_filters = tuple(int(f) for f in boundary_filters)
        levels = len(filters)
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if out_channels < 2:
            raise ValueError(f"out_channels must be >= 2 (background + classes), got {out_channels}")
        if not 2 <= levels <= 6:
            raise ValueError(f"filters must give 2 to 6 levels, got {levels}: {filters}")
        if any(f < 1 for f in filters + boundary_filters):
            raise ValueError(f"filter counts must be positive, got {filters} / {boundary_filters}")
        if len(boundary_filters) != levels - 1:
            raise ValueError(
                f"boundary_filters needs {levels - 1} values (one per decoder level), got {boundary_filters}"
            )
        if not 0 <= deep_supervision <= levels - 2:
            raise ValueError(
                f"deep_supervision must be in 0..{levels - 2} for {levels} levels, got {deep_supervision}"
            )
        if norm_name not in ("instance", "batch"):
            raise ValueError(f"norm_name must be 'instance' or 'batch', got {norm_name!r}")
        self.levels = levels
        self.divisor = 2 ** (levels - 1)
        self.out_channels = out_channels

        # encoder: level 0 keeps the resolution, every further level halves it
        self.encoder = nn.ModuleList(
            EncoderStage(in_channels if i == 0 else filters[i - 1], filters[i], 1 if i == 0 else 2, norm_name)
            for i in range(levels)
        )
        # decoders, indexed by the level they output (0 .. L-2); stored deepest first
        self.seg_decoder = nn.ModuleList(
            DecoderStage(filters[i + 1], filters[i], filters[i], norm_name)
            for i in reversed(range(levels - 1))
        )
        self.boundary_decoder = nn.ModuleList(
            DecoderStage(
                filters[-1] if i == levels - 2 else boundary_filters[i + 1],
                filters[i],
                boundary_filters[i],
                norm_name,
            )
            for i in reversed(range(levels - 1))
        )
        self.gates = nn.ModuleList(
            BoundaryGate(filters[i], boundary_filters[i]) for i in reversed(range(levels - 1))
        )
        self.seg_head = Head(filters[0], out_channels)
        self.boundary_head = Head(boundary_filters[0], 1)
        self.deep_heads = nn.ModuleList(
            Head(filters[k], out_channels) for k in range(1, deep_supervision + 1)
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 5:
            raise ValueError(f"BS-Net expects (B, C, D, H, W), got shape {tuple(x.shape)}")
        if any(s % self.divisor for s in x.shape[2:]):
            raise ValueError(
                f"BS-Net input spatial size {tuple(x.shape[2:])} must be divisible by {self.divisor}; pad it first"
            )

    def forward_with_aux(self, x: torch.Tensor) -> BSNetOutput:
        """``x (B, in_channels, D, H, W)`` -> ``BSNetOutput(seg, boundary, deep)`` (all logits)."""
        self._check_input(x)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        seg = bnd = skips[-1]  # bottleneck feeds both decoders
        decoded = {}
        for level, seg_up, bnd_up, gate in zip(
            reversed(range(self.levels - 1)), self.seg_decoder, self.boundary_decoder, self.gates, strict=True
        ):
            bnd = bnd_up(bnd, skips[level])
            seg = gate(seg_up(seg, skips[level]), bnd)
            decoded[level] = seg
        deep = [head(decoded[k]) for k, head in enumerate(self.deep_heads, start=1)]
        return BSNetOutput(seg=self.seg_head(seg), boundary=self.boundary_head(bnd), deep=deep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, D, H, W)`` -> segmentation logits ``(B, out_channels, D, H, W)``."""
        return self.forward_with_aux(x).seg


def build_bsnet(**config: Any) -> BSNet:
    """Build a ``BSNet`` from ``BSNET_DEFAULTS`` updated with ``config`` (see ``bsnet_config``)."""
    return BSNet(**bsnet_config(**config))
