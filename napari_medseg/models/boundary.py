"""Label boundaries as a morphological gradient, computed with max-pooling so it runs on any device.

A voxel is on the boundary when its 3x3x3 neighbourhood (clipped at the volume edge) holds more
than one label value, i.e. where grey dilation != grey erosion of the label map. The volume edge
itself is not a boundary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _as_b1dhw(labels: torch.Tensor) -> torch.Tensor:
    if labels.ndim == 4:
        labels = labels.unsqueeze(1)
    if labels.ndim != 5 or labels.shape[1] != 1:
        raise ValueError(f"labels must be (B, D, H, W) or (B, 1, D, H, W), got shape {tuple(labels.shape)}")
    return labels.float()


def boundary_targets(labels: torch.Tensor) -> torch.Tensor:
    """Boundary map of an integer label map.

    Args:
        labels: ``(B, D, H, W)`` (or ``(B, 1, D, H, W)``) integer labels.

    Returns:
        ``(B, 1, D, H, W)`` float32, 1.0 where the label changes within the 3x3x3 neighbourhood.
    """
    lab = _as_b1dhw(labels)
    dilated = F.max_pool3d(lab, kernel_size=3, stride=1, padding=1)
    eroded = -F.max_pool3d(-lab, kernel_size=3, stride=1, padding=1)
    return (dilated != eroded).float()


def boundary_band(labels: torch.Tensor, width: int) -> torch.Tensor:
    """Voxels within ``width`` voxels (Chebyshev distance) of a label boundary.

    Args:
        labels: ``(B, D, H, W)`` (or ``(B, 1, D, H, W)``) integer labels.
        width: band half-width in voxels (0 gives the boundary itself).

    Returns:
        ``(B, 1, D, H, W)`` bool.
    """
    if width < 0:
        raise ValueError(f"band width must be >= 0 voxels, got {width}")
    band = boundary_targets(labels)
    if width > 0:
        band = F.max_pool3d(band, kernel_size=2 * width + 1, stride=1, padding=width)
    return band > 0
