"""Ranked regions of high uncertainty, so a reviewer can jump from one to the next.

A region is a 26-connected component of voxels whose uncertainty is at least ``threshold``. Regions
are ranked by ``size x mean uncertainty`` (largest first) and numbered 1, 2, ... in that order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

#: Default uncertainty threshold for a voxel to belong to a region (0..1 scale). For the default map
#: (entropy of the pair's mean, bits capped at 1) 0.7 gives a few regions per hippocampus case that
#: hold most error voxels; 0.5 merges much of the boundary shell into one region, 0.9 leaves about
#: one region per case (bench/eval_uncertainty.py, second table).
DEFAULT_THRESHOLD = 0.7
#: Components smaller than this many voxels are dropped as noise.
DEFAULT_MIN_SIZE = 5


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


def find_regions(
    uncertainty: np.ndarray,
    affine: np.ndarray | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = DEFAULT_MIN_SIZE,
    max_regions: int | None = None,
) -> list[Region]:
    """Connected components of ``uncertainty >= threshold``, ranked by size x mean uncertainty.

    Args:
        uncertainty: ``(I, J, K)`` values in ``[0, 1]`` (any float dtype).
        affine: 4x4 voxel -> RAS+ mm; identity when ``None``.
        threshold: minimum voxel uncertainty to belong to a region.
        min_size: drop components with fewer voxels.
        max_regions: keep only the top-ranked ones (``None`` = all).

    Returns:
        Regions sorted best first, with ``id`` = rank (1-based).
    """
    if uncertainty.ndim != 3:
        raise ValueError(f"uncertainty must be 3D (I, J, K), got shape {uncertainty.shape}")
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    u = np.asarray(uncertainty, dtype=np.float32)
    mask = u >= threshold
    if not mask.any():
        return []
    comp, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    idx = np.arange(1, n + 1)
    sizes = np.bincount(comp.ravel(), minlength=n + 1)[1:]
    sums = ndimage.sum_labels(u, comp, idx)
    maxs = ndimage.maximum(u, comp, idx)
    centroids = ndimage.center_of_mass(u, comp, idx)
    boxes = ndimage.find_objects(comp)
    found = []
    for k in range(n):
        size = int(sizes[k])
        if size < min_size:
            continue
        mean = float(sums[k]) / size
        found.append((size * mean, k, size, mean))
    found.sort(key=lambda t: (-t[0], t[1]))
    if max_regions is not None:
        found = found[:max_regions]
    regions = []
    for rank, (score, k, size, mean) in enumerate(found, start=1):
        c_vox = np.asarray(centroids[k], dtype=np.float64)
        c_mm = affine[:3, :3] @ c_vox + affine[:3, 3]
        box = boxes[k]
        regions.append(
            Region(
                id=rank,
                size=size,
                volume_mm3=size * voxel_mm3,
                mean_uncertainty=mean,
                max_uncertainty=float(maxs[k]),
                score=float(score),
                centroid_voxel=tuple(float(v) for v in c_vox),  # type: ignore[arg-type]
                centroid_mm=tuple(float(v) for v in c_mm),  # type: ignore[arg-type]
                bbox=(tuple(int(s.start) for s in box), tuple(int(s.stop) for s in box)),  # type: ignore[arg-type]
            )
        )
    return regions
