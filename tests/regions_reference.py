"""The straightforward (slow) definition of the uncertain regions, kept only as a test oracle.

This is the earlier implementation of ``napari_medseg.inference.regions``: components labelled on the
whole volume, each long one split with scikit-image's ``peak_local_max`` and ``watershed``, the
statistics of each region computed on its own voxels. The fast path must give the same regions,
field for field.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from napari_medseg.inference.regions import Region

CONN = np.ones((3, 3, 3), dtype=bool)


def slow_split(u: np.ndarray, piece: np.ndarray, distance: int) -> np.ndarray:
    """Watershed basins of the smoothed ``-u`` in ``piece`` around scikit-image's peaks."""
    smooth = ndimage.gaussian_filter(np.where(piece, u, 0.0).astype(np.float32), sigma=1.0)
    peaks = peak_local_max(smooth, min_distance=distance, labels=piece.astype(np.int32), exclude_border=False)
    if len(peaks) < 2:
        return piece.astype(np.int32)
    markers = np.zeros(piece.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-smooth, markers, mask=piece, connectivity=3).astype(np.int32)


def slow_region_labels(
    u: np.ndarray, threshold: float = 0.5, min_size: int = 5, split_size: int | None = 12
) -> tuple[np.ndarray, int]:
    """Regions numbered 1..n in scan order of their components (then split part), on the whole volume."""
    comp, _ = ndimage.label(u >= threshold, structure=CONN)
    out = np.zeros(u.shape, np.int32)
    count = 0
    u32 = u.astype(np.float32)
    for k, box in enumerate(ndimage.find_objects(comp), start=1):
        if box is None:
            continue
        piece = comp[box] == k
        extent = max(s.stop - s.start for s in box)
        if split_size is not None and extent > split_size:
            parts = slow_split(u32[box], piece, max(1, split_size // 2))
        else:
            parts = piece.astype(np.int32)
        for j in range(1, int(parts.max()) + 1):
            sel = parts == j
            if int(sel.sum()) >= min_size:
                count += 1
                out[box][sel] = count
    return out, count


def slow_regions(
    u: np.ndarray,
    affine: np.ndarray | None = None,
    threshold: float = 0.5,
    min_size: int = 5,
    split_size: int | None = 12,
) -> list[Region]:
    """Ranked regions (size x mean, ties in scan order) from :func:`slow_region_labels`, one at a time."""
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    labels, n = slow_region_labels(u, threshold, min_size, split_size)
    u32 = u.astype(np.float32)
    found = []
    for k in range(1, n + 1):
        coords = np.argwhere(labels == k)
        values = u32[tuple(coords.T)]
        size = len(values)
        mean = float(values.sum(dtype=np.float64)) / size
        found.append((size * mean, k, coords, values, mean))
    found.sort(key=lambda t: (-t[0], t[1]))
    regions = []
    for rank, (score, _k, coords, values, mean) in enumerate(found, start=1):
        w = values.astype(np.float64)
        c_vox = (coords * w[:, None]).sum(0) / w.sum()
        c_mm = affine[:3, :3] @ c_vox + affine[:3, 3]
        regions.append(
            Region(
                id=rank,
                size=len(values),
                volume_mm3=len(values) * voxel_mm3,
                mean_uncertainty=mean,
                max_uncertainty=float(values.max()),
                score=float(score),
                centroid_voxel=tuple(float(v) for v in c_vox),  # type: ignore[arg-type]
                centroid_mm=tuple(float(v) for v in c_mm),  # type: ignore[arg-type]
                bbox=(
                    tuple(int(v) for v in coords.min(0)),  # type: ignore[arg-type]
                    tuple(int(v) + 1 for v in coords.max(0)),  # type: ignore[arg-type]
                ),
            )
        )
    return regions
