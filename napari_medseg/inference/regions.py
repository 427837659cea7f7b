"""Ranked regions of high uncertainty, so a reviewer can jump from one to the next.

A region is a 26-connected component of voxels whose uncertainty is at least ``threshold``; a
component longer than ``split_size`` voxels along any axis (typically the uncertain sheet along a whole
structure's boundary) is cut into compact pieces: watershed basins of the uncertainty around its
peaks, the peaks at least ``split_size // 2`` voxels apart. Each region is then one place to look at.
Regions are ranked by ``size x mean uncertainty`` (largest first) and numbered 1, 2, ... in that order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage

#: Default uncertainty threshold for a voxel to belong to a region (0..1 scale; for the default map,
#: entropy of the pair's mean in bits capped at 1, 0.5 bits ~ a 89/11 split). Measured with
#: bench/eval_uncertainty.py (second table, bench/RESULTS.md): with the splitting below, 0.5 gives ~5
#: compact regions per hippocampus case that hold ~45 % of the proposal's error voxels, the top three
#: at ~7x the boundary band's error rate; 0.7 and 0.9 cover fewer errors at about the same rate.
DEFAULT_THRESHOLD = 0.5
#: Components smaller than this many voxels are dropped as noise.
DEFAULT_MIN_SIZE = 5
#: Components longer than this (voxels, along any axis) are split around their uncertainty peaks.
DEFAULT_SPLIT_SIZE = 12


@dataclass(frozen=True)
class Region:
    """One uncertain region.

    Attributes:
        id: rank, 1 = most important.
        size: number of voxels.
        volume_mm3: size in mm³ (voxel volume from the affine).
        mean_uncertainty, max_uncertainty: over the region's voxels (0..1).
        score: ``size * mean_uncertainty`` (the ranking key).
        centroid_voxel: (i, j, k) uncertainty-weighted centre, in voxel indices of the source grid.
        centroid_mm: the same point in RAS+ millimetres (via the affine).
        bbox: ``((i0, j0, k0), (i1, j1, k1))`` inclusive start, exclusive stop, voxel indices.
    """

    id: int
    size: int
    volume_mm3: float
    mean_uncertainty: float
    max_uncertainty: float
    score: float
    centroid_voxel: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    bbox: tuple[tuple[int, int, int], tuple[int, int, int]]

    def to_dict(self) -> dict:
        """JSON-ready dict (lists instead of tuples)."""
        d = asdict(self)
        d["centroid_voxel"] = list(self.centroid_voxel)
        d["centroid_mm"] = list(self.centroid_mm)
        d["bbox"] = [list(self.bbox[0]), list(self.bbox[1])]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Region:
        return cls(
            id=int(d["id"]),
            size=int(d["size"]),
            volume_mm3=float(d["volume_mm3"]),
            mean_uncertainty=float(d["mean_uncertainty"]),
            max_uncertainty=float(d["max_uncertainty"]),
            score=float(d["score"]),
            centroid_voxel=tuple(float(v) for v in d["centroid_voxel"]),  # type: ignore[arg-type]
            centroid_mm=tuple(float(v) for v in d["centroid_mm"]),  # type: ignore[arg-type]
            bbox=(tuple(int(v) for v in d["bbox"][0]), tuple(int(v) for v in d["bbox"][1])),  # type: ignore[arg-type]
        )


#: Edge of the coarse blocks (voxels) used to group uncertain voxels before exact labelling.
COARSE_BLOCK = 8
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class _Piece:
    """Voxels of one region before ranking: global ``(m, 3)`` indices and their uncertainty."""

    order: tuple[int, int]  # (flat index of its component's first voxel, split part): scan order
    coords: np.ndarray
    values: np.ndarray


def _as_voxels(uncertainty: np.ndarray | torch.Tensor, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (C order) and float32 values of the voxels of a dense map at or above ``threshold``."""
    u = torch.as_tensor(uncertainty)
    if u.ndim != 3:
        raise ValueError(f"uncertainty must be 3D (I, J, K), got shape {tuple(u.shape)}")
    flat_u = u.reshape(-1)
    index = (flat_u >= threshold).nonzero()[:, 0]
    return index.cpu().numpy(), flat_u[index].float().cpu().numpy()


def _pieces(
    shape: tuple[int, int, int],
    index: np.ndarray,
    values: np.ndarray,
    min_size: int,
    split_size: int | None,
) -> list[_Piece]:
    """Regions of the given voxels (all above threshold), in scan order, before ranking.

    The voxels are first grouped by 26-connected components of the coarse blocks they fall in
    (:data:`COARSE_BLOCK`); two 26-adjacent voxels always lie in the same or adjacent blocks, so each
    voxel component lies inside one group and is labelled exactly on that group's bounding box only.
    """
    if len(index) == 0:
        return []
    coords = np.stack(np.unravel_index(index, shape), axis=1).astype(np.int64)
    blocks = coords // COARSE_BLOCK
    grid = np.zeros([-(-s // COARSE_BLOCK) for s in shape], dtype=bool)
    grid[tuple(blocks.T)] = True
    groups, _n = ndimage.label(grid, structure=_CONNECTIVITY)
    group_of = groups[tuple(blocks.T)]
    order = np.argsort(group_of, kind="stable")
    bounds = np.flatnonzero(np.diff(group_of[order])) + 1
    pieces: list[_Piece] = []
    for members in np.split(order, bounds):
        c = coords[members]
        lo = c.min(0)
        u = np.zeros(tuple(c.max(0) - lo + 1), dtype=np.float32)
        u[tuple((c - lo).T)] = values[members]
        comp, _ = ndimage.label(_mask(u.shape, c - lo), structure=_CONNECTIVITY)
        for k, box in enumerate(ndimage.find_objects(comp), start=1):
            if box is None:
                continue
            piece = comp[box] == k
            offset = lo + np.array([s.start for s in box])
            first = np.argwhere(piece)[0] + offset
            first_flat = int(np.ravel_multi_index(tuple(first), shape))
            extent = max(s.stop - s.start for s in box)
            if split_size is not None and extent > split_size:
                parts = _split(u[box], piece, max(1, split_size // 2))
            else:
                parts = piece.astype(np.int32)
            for j in range(1, int(parts.max()) + 1):
                sel = parts == j
                if int(sel.sum()) >= min_size:
                    pieces.append(_Piece((first_flat, j), np.argwhere(sel) + offset, u[box][sel]))
    pieces.sort(key=lambda p: p.order)
    return pieces


def _mask(shape: tuple[int, ...], local: np.ndarray) -> np.ndarray:
    """Bool mask of a crop of ``shape`` with the given local voxel indices ``(m, 3)`` set."""
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(local.T)] = True
    return mask


def region_labels(
    uncertainty: np.ndarray | torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = DEFAULT_MIN_SIZE,
    split_size: int | None = DEFAULT_SPLIT_SIZE,
) -> tuple[np.ndarray, int]:
    """Label image of the regions (before ranking): ``(labels (I, J, K) int32, n)``, 0 = no region.

    Components of ``uncertainty >= threshold`` (26-connected); those longer than ``split_size`` voxels
    along an axis are split into watershed basins around peaks ``split_size // 2`` apart (``None`` =
    never split); pieces smaller than ``min_size`` voxels are dropped. Labels are 1..n, no gaps, in
    scan order of the components.
    """
    index, values = _as_voxels(uncertainty, threshold)
    shape = tuple(int(s) for s in uncertainty.shape)
    out = np.zeros(shape, dtype=np.int32)
    pieces = _pieces(shape, index, values, min_size, split_size)  # type: ignore[arg-type]
    for n, piece in enumerate(pieces, start=1):
        out[tuple(piece.coords.T)] = n
    return out, len(pieces)


def _split(u: np.ndarray, piece: np.ndarray, distance: int) -> np.ndarray:
    """Watershed basins of ``-u`` inside ``piece`` around peaks at least ``distance`` voxels apart."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    smooth = ndimage.gaussian_filter(np.where(piece, u, 0.0).astype(np.float32), sigma=1.0)
    peaks = peak_local_max(smooth, min_distance=distance, labels=piece.astype(np.int32), exclude_border=False)
    if len(peaks) < 2:
        return piece.astype(np.int32)
    markers = np.zeros(piece.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-smooth, markers, mask=piece, connectivity=3).astype(np.int32)


def find_regions(
    uncertainty: np.ndarray | torch.Tensor,
    affine: np.ndarray | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = DEFAULT_MIN_SIZE,
    max_regions: int | None = None,
    split_size: int | None = DEFAULT_SPLIT_SIZE,
) -> list[Region]:
    """Regions of ``uncertainty >= threshold`` (see :func:`region_labels`), ranked by size x mean uncertainty.

    Args:
        uncertainty: ``(I, J, K)`` values in ``[0, 1]`` (any float dtype; numpy or torch on any device).
        affine: 4x4 voxel -> RAS+ mm; identity when ``None``.
        threshold: minimum voxel uncertainty to belong to a region.
        min_size: drop regions with fewer voxels.
        max_regions: keep only the top-ranked ones (``None`` = all).
        split_size: components longer than this many voxels are split around their peaks (``None`` = never).

    Returns:
        Regions sorted best first, with ``id`` = rank (1-based).
    """
    index, values = _as_voxels(uncertainty, threshold)
    shape = tuple(int(s) for s in uncertainty.shape)
    return regions_from_voxels(shape, index, values, affine, min_size, max_regions, split_size)  # type: ignore[arg-type]


def regions_from_voxels(
    shape: tuple[int, int, int],
    index: np.ndarray,
    values: np.ndarray,
    affine: np.ndarray | None = None,
    min_size: int = DEFAULT_MIN_SIZE,
    max_regions: int | None = None,
    split_size: int | None = DEFAULT_SPLIT_SIZE,
) -> list[Region]:
    """:func:`find_regions` from the uncertain voxels alone (no dense map needed).

    Args:
        shape: ``(I, J, K)`` of the volume.
        index: flat C-order indices ``(n,)`` of the voxels at or above the threshold.
        values: their uncertainty ``(n,)`` (float32).
        affine, min_size, max_regions, split_size: as for :func:`find_regions`.

    Work and memory follow the uncertain voxels' extent: labelling, splitting and statistics run on
    the bounding boxes of coarse groups of them, never on the whole volume.
    """
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    index = np.asarray(index, dtype=np.int64)
    values = np.asarray(values, dtype=np.float32)
    pieces = _pieces(shape, index, values, min_size, split_size)
    found = []
    for k, piece in enumerate(pieces):
        size = len(piece.values)
        total = float(piece.values.sum(dtype=np.float64))
        found.append((size * (total / size), k, size, total / size))
    found.sort(key=lambda t: (-t[0], t[1]))
    if max_regions is not None:
        found = found[:max_regions]
    regions = []
    for rank, (score, k, size, mean) in enumerate(found, start=1):
        piece = pieces[k]
        w = piece.values.astype(np.float64)
        c_vox = (piece.coords * w[:, None]).sum(0) / w.sum()
        c_mm = affine[:3, :3] @ c_vox + affine[:3, 3]
        regions.append(
            Region(
                id=rank,
                size=size,
                volume_mm3=size * voxel_mm3,
                mean_uncertainty=mean,
                max_uncertainty=float(piece.values.max()),
                score=float(score),
                centroid_voxel=tuple(float(v) for v in c_vox),  # type: ignore[arg-type]
                centroid_mm=tuple(float(v) for v in c_mm),  # type: ignore[arg-type]
                bbox=(
                    tuple(int(v) for v in piece.coords.min(0)),  # type: ignore[arg-type]
                    tuple(int(v) + 1 for v in piece.coords.max(0)),  # type: ignore[arg-type]
                ),
            )
        )
    return regions
