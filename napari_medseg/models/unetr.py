"""UNETR peer (network A): MONAI's ``UNETR`` with a configuration sized for 3D MRI patches.

UNETR (Hatamizadeh et al., WACV 2022) is a ViT encoder on 16^3 patches with a convolutional
decoder. Its position embeddings are tied to ``img_size``, so the network only accepts inputs of
exactly that spatial size: inference runs it by sliding window with ``roi_size = img_size``.

Shapes: ``x (B, in_channels, *img_size) float32 -> logits (B, out_channels, *img_size)``.

Default (hippocampus) configuration: ``img_size (48, 64, 48)`` covers every MSD hippocampus case
(31-43 x 40-59 x 24-47 voxels at 1 mm) after padding; a narrow ViT (hidden 192, 4 heads, MLP 768)
and ``feature_size 16`` so that it trains on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.networks.nets import UNETR

#: Default configuration for the hippocampus task (see module docstring).
UNETR_DEFAULTS: dict[str, Any] = {
    "img_size": (48, 64, 48),
    "in_channels": 1,
    "out_channels": 3,
    "feature_size": 16,
    "hidden_size": 192,
    "mlp_dim": 768,
    "num_heads": 4,
    "proj_type": "conv",
    "norm_name": "instance",
    "res_block": True,
    "dropout_rate": 0.0,
}

#: UNETR splits the volume into cubes of this edge (voxels); ``img_size`` must be a multiple.
VIT_PATCH = 16


def unetr_config(**overrides: Any) -> dict[str, Any]:
    """Return ``UNETR_DEFAULTS`` updated with ``overrides`` (``img_size`` as a tuple); validates keys."""
    unknown = set(overrides) - set(UNETR_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown UNETR config keys: {sorted(unknown)}; allowed: {sorted(UNETR_DEFAULTS)}")
    config = {**UNETR_DEFAULTS, **overrides}
    config["img_size"] = tuple(int(s) for s in config["img_size"])
    return config


def build_unetr(**config: Any) -> UNETR:
    """Build MONAI's UNETR from ``UNETR_DEFAULTS`` updated with ``config``.

    Args:
        img_size: spatial size (D, H, W) of the training patch; each dim a multiple of 16.
        in_channels: input channels (1 for a single MRI/CT volume).
        out_channels: classes including background.
        feature_size: width of the convolutional decoder (MONAI default 16).
        hidden_size: ViT embedding size; a multiple of ``num_heads``.
        mlp_dim: ViT MLP width.
        num_heads: attention heads.
        proj_type: ViT patch embedding, ``"conv"`` or ``"perceptron"``.
        norm_name: decoder normalisation (``"instance"`` or ``"batch"``).
        res_block: residual decoder blocks.
        dropout_rate: ViT dropout in [0, 1).

    Raises:
        ValueError: an unknown key, or a size not divisible by 16, or heads not dividing hidden size.

    Example:
        >>> net = build_unetr(img_size=(32, 32, 32), hidden_size=96, mlp_dim=192, num_heads=2)
    """
    cfg = unetr_config(**config)
    img_size: Sequence[int] = cfg["img_size"]
    if len(img_size) != 3 or any(s <= 0 or s % VIT_PATCH for s in img_size):
        raise ValueError(f"UNETR img_size must be 3 positive multiples of {VIT_PATCH}, got {tuple(img_size)}")
    if cfg["hidden_size"] % cfg["num_heads"]:
        raise ValueError(
            f"UNETR hidden_size ({cfg['hidden_size']}) must be divisible by num_heads ({cfg['num_heads']})"
        )
    if cfg["out_channels"] < 2:
        raise ValueError(f"UNETR out_channels must be >= 2 (background + classes), got {cfg['out_channels']}")
    return UNETR(spatial_dims=3, **cfg)
