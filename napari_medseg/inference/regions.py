"""Ranked regions of high uncertainty, so a reviewer can jump from one to the next.

A region is a 26-connected component of voxels whose uncertainty is at least ``threshold``; a
component longer than ``split_size`` voxels along any axis (typically the uncertain sheet along a whole
structure's boundary) is cut into compact pieces: watershed basins of the uncertainty around its
peaks, the peaks at least ``split_size // 2`` voxels apart. Each region is then one place to look at.
Regions are ranked by ``size x mean uncertainty`` (largest first) and numbered 1, 2, ... in that order.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from napari_medseg.io.volume import voxel_volume_mm3

if TYPE_CHECKING:
    import torch

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
_CROSS = ndimage.generate_binary_structure(3, 1)  # binary_opening's default structure
#: The 1D kernel of ``ndimage.gaussian_filter(sigma=1.0)`` (radius 4): its response to a unit impulse.
_GAUSSIAN = ndimage.gaussian_filter1d(np.eye(1, 9, 4)[0], 1.0, mode="constant")


@dataclass(frozen=True)
class _Pieces:
    """Voxels of all regions before ranking, one contiguous run per region, regions in scan order.

    Regions are ordered by (flat index of their component's first voxel, split part); the voxels of
    each region are in C order.

    Attributes:
        coords: ``(n, 3)`` int64 global voxel indices.
        values: ``(n,)`` float32 uncertainty at ``coords``.
        starts: ``(m + 1,)`` int64 offsets: region ``r`` holds voxels ``starts[r]:starts[r + 1]``.
    """

    coords: np.ndarray
    values: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def sizes(self) -> np.ndarray:
        """Voxels per region ``(m,)`` int64."""
        return np.diff(self.starts)


def _as_voxels(uncertainty: np.ndarray | torch.Tensor, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (C order) and float32 values of the voxels of a dense map at or above ``threshold``."""
    import torch  # here: opening a case imports Region, and torch takes seconds to import

    u = torch.as_tensor(uncertainty)
    if u.ndim != 3:
        raise ValueError(f"uncertainty must be 3D (I, J, K), got shape {tuple(u.shape)}")
    flat_u = u.reshape(-1)
    index = (flat_u >= threshold).nonzero()[:, 0]
    return index.cpu().numpy(), flat_u[index].float().cpu().numpy()


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable order grouping equal ``keys`` (ints >= 0) and the start of each run in that order ``(r + 1,)``."""
    small = keys.max(initial=0) < 2**16
    order = np.argsort(keys.astype(np.uint16) if small else keys, kind="stable")  # radix sort when small
    edges = np.flatnonzero(np.diff(keys[order])) + 1
    return order, np.concatenate(([0], edges, [len(keys)]))


def _pieces(
    shape: tuple[int, int, int],
    index: np.ndarray,
    values: np.ndarray,
    min_size: int,
    split_size: int | None,
) -> _Pieces:
    """Regions of the given voxels (all above threshold), in scan order, before ranking.

    The voxels are first grouped by 26-connected components of the coarse blocks they fall in
    (:data:`COARSE_BLOCK`); two 26-adjacent voxels always lie in the same or adjacent blocks, so each
    voxel component lies inside one group and is labelled exactly on that group's bounding box only.
    Statistics of all components of a group come from one sort of its voxels by component; only the
    components longer than ``split_size`` are handled one by one (:func:`_split`).
    """
    empty = _Pieces(np.zeros((0, 3), np.int64), np.zeros(0, np.float32), np.zeros(1, np.int64))
    if len(index) == 0:
        return empty
    if np.any(index[1:] < index[:-1]):
        order = np.argsort(index, kind="stable")
        index, values = index[order], values[order]
    coords = np.stack(np.unravel_index(index, shape), axis=1).astype(np.int64, copy=False)
    blocks = coords // COARSE_BLOCK
    grid = np.zeros([-(-s // COARSE_BLOCK) for s in shape], dtype=bool)
    grid[tuple(blocks.T)] = True
    groups, _n = ndimage.label(grid, structure=_CONNECTIVITY)
    by_group, group_starts = _runs(groups[tuple(blocks.T)])
    # per region (over all groups): global flat index of its component's first voxel, split part, and
    # the positions (into ``index``) of its voxels, in C order
    first_parts: list[np.ndarray] = []
    part_ids: list[np.ndarray] = []
    members_by_region: list[np.ndarray] = []
    region_sizes: list[np.ndarray] = []
    distance = None if split_size is None else max(1, split_size // 2)
    for g0, g1 in zip(group_starts[:-1], group_starts[1:], strict=True):
        members = by_group[g0:g1]  # C order: the grouping sort is stable and ``index`` sorted
        local = coords[members]
        local = local - local.min(0)
        by_comp, comp_starts = _runs(_component_labels(local))  # components in scan order, C order
        in_comp = local[by_comp]
        box_lo = np.minimum.reduceat(in_comp, comp_starts[:-1], axis=0)
        box_hi = np.maximum.reduceat(in_comp, comp_starts[:-1], axis=0) + 1
        long = np.zeros(0, np.int64)
        if distance is not None:
            long = np.flatnonzero((box_hi - box_lo).max(1) > split_size)
        members = members[by_comp]
        n_comp = len(comp_starts) - 1
        first = index[members[comp_starts[:-1]]]
        sizes = np.diff(comp_starts)
        part = np.ones(n_comp, np.int64)
        # components are kept whole (part 1) unless they are long and have two peaks or more
        whole = np.ones(n_comp, bool)
        f, p, sz, mem = [], [], [], []
        for k in long.tolist():
            vox = members[comp_starts[k] : comp_starts[k + 1]]
            at = tuple((in_comp[comp_starts[k] : comp_starts[k + 1]] - box_lo[k]).T)
            u = np.zeros(tuple(box_hi[k] - box_lo[k]), dtype=np.float32)  # the component's box
            u[at] = values[vox]
            piece = np.zeros(u.shape, dtype=bool)
            piece[at] = True
            parts = _split(u, piece, distance)  # type: ignore[arg-type]
            if parts is None:
                continue
            whole[k] = False
            label_of = parts[at]
            by_part, part_starts = _runs(label_of)
            psizes = np.diff(part_starts)
            label = label_of[by_part[part_starts[:-1]]]
            ok = (psizes >= min_size) & (label > 0)
            f.append(np.full(int(ok.sum()), first[k]))
            p.append(label[ok].astype(np.int64))
            sz.append(psizes[ok])
            mem.append(vox[by_part][np.repeat(ok, psizes)])
        keep = whole & (sizes >= min_size)
        first_parts.append(np.concatenate([first[keep], *f]))
        part_ids.append(np.concatenate([part[keep], *p]))
        region_sizes.append(np.concatenate([sizes[keep], *sz]))
        members_by_region.append(np.concatenate([members[np.repeat(keep, sizes)], *mem]))
    first_all = np.concatenate(first_parts)
    part_all = np.concatenate(part_ids)
    size_all = np.concatenate(region_sizes)
    member_all = np.concatenate(members_by_region)
    if len(size_all) == 0:
        return empty
    order = np.lexsort((part_all, first_all))
    starts_old = np.concatenate(([0], np.cumsum(size_all)))
    size_new = size_all[order]
    starts = np.concatenate(([0], np.cumsum(size_new)))
    # gather each region's run of voxels in the new order
    gather = np.repeat(starts_old[:-1][order] - starts[:-1], size_new) + np.arange(starts[-1])
    picked = member_all[gather]
    return _Pieces(coords[picked], values[picked], starts)


def _component_labels(local: np.ndarray) -> np.ndarray:
    """26-connected component label (>= 1, scan order) of each voxel of ``local`` ``(n, 3)`` (indices >= 0).

    Labelled on the voxels' bounding box with every run of empty planes (along each axis) squeezed to
    a single empty plane: that keeps two voxels adjacent exactly when they were, and the scan order.
    """
    packed = []
    for axis in range(3):
        occupied = np.bincount(local[:, axis]) > 0
        kept = occupied.copy()
        kept[1:] |= occupied[:-1]  # the first empty plane after each occupied run separates
        packed.append(np.cumsum(kept)[local[:, axis]] - 1)
    at = tuple(packed)
    mask = np.zeros([int(a.max()) + 1 for a in at], dtype=bool)
    mask[at] = True
    comp = np.empty(mask.shape, dtype=np.uint16)  # half the memory traffic of int32
    try:
        ndimage.label(mask, structure=_CONNECTIVITY, output=comp)
    except RuntimeError:  # 65536 components or more
        comp = ndimage.label(mask, structure=_CONNECTIVITY)[0]
    return comp[at]


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
    n = len(pieces)
    out[tuple(pieces.coords.T)] = np.repeat(np.arange(1, n + 1, dtype=np.int32), pieces.sizes)
    return out, n


def _peaks(smooth: np.ndarray, piece: np.ndarray, distance: int) -> np.ndarray:
    """Peaks ``(p, 3)`` of ``smooth`` inside ``piece``, highest first, at least ``distance`` apart.

    Exactly ``skimage.feature.peak_local_max(smooth, min_distance=distance, labels=piece,
    exclude_border=False)`` (scikit-image 0.26), in its order: candidates are the piece's voxels equal
    to the maximum of the piece within Chebyshev distance ``distance`` and above the crop's minimum
    (when every voxel of the piece is such a maximum, only voxels removed by a binary opening count);
    walking the candidates from the highest (ties in C order), each one closer than ``distance``
    (Chebyshev) to one already kept is dropped.

    Two candidates closer than ``distance`` lie in each other's window, so they have the same value:
    the walk only ever compares equal values, whose order is C order, so it runs in C order over a
    grid of blocked voxels instead of scikit-image's KD-tree queries per candidate.
    """
    img = np.where(piece, smooth, np.finfo(np.float32).min)
    cand = img == _maximum_filter(img, 2 * distance + 1)
    if cand[piece].all():
        cand = piece & ~ndimage.binary_opening(piece, _CROSS)
    cand &= img > smooth.min()
    flat = np.flatnonzero(cand)
    if distance > 1 and len(flat) > 1:
        flat = flat[_spaced(flat, img.shape, distance)]
    flat = flat[np.argsort(-img.reshape(-1)[flat], kind="stable")]
    return np.stack(np.unravel_index(flat, img.shape), axis=1)


def _maximum_filter(img: np.ndarray, size: int) -> np.ndarray:
    """``ndimage.maximum_filter(img, size, mode="nearest")``, one axis at a time, skipping axes of length 1
    (there the window holds only the voxel itself): a piece one voxel thick costs two passes, not three."""
    out = img
    for axis, n in enumerate(img.shape):
        if n > 1:
            out = ndimage.maximum_filter1d(out, size, axis=axis, mode="nearest")
    return out


def _spaced(flat: np.ndarray, shape: tuple[int, ...], distance: int) -> np.ndarray:
    """Positions into ``flat`` (sorted C-order indices of a 3D ``shape`` grid) kept by a greedy walk.

    A point is kept unless a point kept before it lies closer than ``distance`` (Chebyshev): each kept
    point blocks the cube of half-width ``distance - 1`` around it in a byte grid.
    """
    r = distance - 1
    blocked = bytearray(int(np.prod(shape)))
    grid = np.frombuffer(blocked, dtype=np.uint8).reshape(shape)
    plane, row = shape[1] * shape[2], shape[2]
    keep = []
    for n, f in enumerate(flat.tolist()):
        if blocked[f]:
            continue
        keep.append(n)
        a, rest = divmod(f, plane)
        b, c = divmod(rest, row)
        grid[max(a - r, 0) : a + r + 1, max(b - r, 0) : b + r + 1, max(c - r, 0) : c + r + 1] = 1
    return np.asarray(keep, dtype=np.int64)


def _split(u: np.ndarray, piece: np.ndarray, distance: int) -> np.ndarray | None:
    """Watershed basins of ``-u`` inside ``piece`` around peaks at least ``distance`` voxels apart.

    ``u`` is smoothed first (Gaussian, sigma 1 voxel, over ``u`` zeroed outside the piece). Returns
    int32 labels of ``piece``'s shape: basin ``j`` grows from the ``j``-th highest peak; ``None`` when
    the piece has fewer than two peaks (it stays whole).
    """
    smooth = np.where(piece, u, 0.0).astype(np.float32)
    # = ndimage.gaussian_filter(smooth, sigma=1.0), without its per-call set-up. Along an axis of length 1 the
    # reflected window holds the voxel alone and the kernel sums to 1, so that pass returns each float32
    # value unchanged (the float64 sum differs from it by ~1e-16 relative) and is skipped.
    for axis in range(3):
        if smooth.shape[axis] > 1:
            ndimage.correlate1d(smooth, _GAUSSIAN, axis, smooth, mode="reflect")
    peaks = _peaks(smooth, piece, distance)
    if len(peaks) < 2:
        return None
    markers = np.zeros(piece.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return _watershed(-smooth, markers, piece)


def _watershed(image: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``skimage.segmentation.watershed(image, markers, mask=mask, connectivity=3)`` as int32, 3D only.

    scikit-image's wrapper validates, converts and pads its three inputs with ``np.pad`` and looks
    its neighbourhood up on every call, which costs more than the flooding itself on the few hundred
    voxels of a typical piece (about a third of the splitting on a whole CT). This pads once by
    writing into zeroed arrays and calls the same compiled flooding with the same neighbour order;
    where that private routine is missing (another scikit-image) the public function runs instead.
    ``tests/test_regions_fast.py`` holds the two equal.
    """
    try:
        from skimage.morphology._util import _offsets_to_raveled_neighbors
        from skimage.segmentation._watershed_cy import watershed_raveled
    except ImportError:  # scikit-image moved its internals
        from skimage.segmentation import watershed

        return watershed(image, markers, mask=mask, connectivity=3).astype(np.int32, copy=False)
    shape = tuple(n + 2 for n in image.shape)  # one voxel of padding: the flooding never leaves the box
    inner = tuple(slice(1, n + 1) for n in image.shape)
    padded = np.zeros(shape, dtype=np.float64)
    padded[inner] = image
    inside = np.zeros(shape, dtype=np.int8)
    inside[inner] = mask
    out = np.zeros(shape, dtype=np.int32)
    out[inner] = np.where(mask, markers, 0)
    neighbours = _offsets_to_raveled_neighbors(shape, _CONNECTIVITY, center=(1, 1, 1))
    strides = np.array(padded.strides, dtype=np.intp) // padded.itemsize
    watershed_raveled(
        padded.ravel(), np.flatnonzero(out), neighbours, inside.ravel(), strides, 0, out.ravel(), False
    )
    return out[inner]


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


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (when on) for the block.

    The tens of thousands of regions and tuples built for a CT hold no reference cycles, but their
    allocation alone triggers full collections over every object of the process (~0.1 s of 0.7 s on
    the CT reference map in a bare process; more in the viewer, which holds many more objects).
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


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
        index: distinct flat C-order indices ``(n,)`` of the voxels at or above the threshold (any order).
        values: their uncertainty ``(n,)`` (float32).
        affine, min_size, max_regions, split_size: as for :func:`find_regions`.

    Work and memory follow the uncertain voxels' extent: labelling, splitting and statistics run on
    the bounding boxes of coarse groups of them, never on the whole volume.
    """
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    voxel_mm3 = voxel_volume_mm3(affine)
    index = np.asarray(index, dtype=np.int64)
    values = np.asarray(values, dtype=np.float32)
    with _collector_paused():
        pieces = _pieces(shape, index, values, min_size, split_size)
        n = len(pieces)
        if n == 0:
            return []
        first = pieces.starts[:-1]
        sizes = pieces.sizes
        w = pieces.values.astype(np.float64)
        total = np.add.reduceat(w, first)  # pairwise per region, as values.sum(dtype=float64)
        mean = total / sizes
        score = sizes * mean
        ranked = np.argsort(-score, kind="stable")  # ties in scan order
        if max_regions is not None:
            ranked = ranked[:max_regions]
        region = np.repeat(np.arange(n), sizes)
        weighted = np.stack([np.bincount(region, pieces.coords[:, a] * w, n) for a in range(3)], axis=1)
        c_vox = weighted / total[:, None]
        c_mm = c_vox @ affine[:3, :3].T + affine[:3, 3]
        peak = np.maximum.reduceat(pieces.values, first)
        lo = np.minimum.reduceat(pieces.coords, first, axis=0)
        hi = np.maximum.reduceat(pieces.coords, first, axis=0) + 1
        # Python numbers for the chosen regions in one conversion per field
        at = ranked
        fields = zip(
            sizes[at].tolist(),
            mean[at].tolist(),
            peak[at].tolist(),
            score[at].tolist(),
            c_vox[at].tolist(),
            c_mm[at].tolist(),
            lo[at].tolist(),
            hi[at].tolist(),
            strict=True,
        )
        return [
            Region(
                id=rank,
                size=size,
                volume_mm3=size * voxel_mm3,
                mean_uncertainty=m,
                max_uncertainty=top,
                score=sc,
                centroid_voxel=tuple(cv),  # type: ignore[arg-type]
                centroid_mm=tuple(cm),  # type: ignore[arg-type]
                bbox=(tuple(b0), tuple(b1)),  # type: ignore[arg-type]
            )
            for rank, (size, m, top, sc, cv, cm, b0, b1) in enumerate(fields, start=1)
        ]
