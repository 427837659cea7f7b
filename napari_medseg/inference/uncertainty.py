"""Voxel-wise uncertainty of a segmentation from the two peer networks' class probabilities.

All functions are pure torch, work on any device, and take probabilities of shape ``(C, *S)`` (class
first, ``S`` the spatial shape, e.g. ``(I, J, K)``) that sum to 1 over ``C``. Values returned are in
``[0, 1]``:

* :func:`js_divergence` — Jensen–Shannon divergence between the two nets' class distributions,
  divided by ``log 2`` (its maximum), so 0 = identical distributions, 1 = disjoint certain answers.
* :func:`total_variation` — ``0.5 * sum_c |p_A - p_B|``, the multi-class form of ``|p_A - p_B|``.
* :func:`capped_entropy` — entropy in bits capped at 1 (1 = an even split between two classes); of the
  pair's mean it is the default map, of one net's softmax the single-net baseline.
* :func:`normalised_entropy` — entropy divided by ``log C``.
* :func:`boundary_band` — voxels within ``radius`` voxels (Chebyshev distance) of either net's
  predicted label boundary: where segmentation errors live.

The pair uncertainty shown to users is ``method(p_A, p_B) * band`` (see :func:`pair_uncertainty`);
the default is the entropy of the pair's mean, which contains their JSD (see :data:`DEFAULT_METHOD`
for the measurement behind that choice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Methods accepted by :func:`pair_uncertainty`.
PAIR_METHODS = ("entropy", "jsd", "tv", "jsd_entropy")
#: Default measure: the entropy of the pair's mean (= the nets' JSD disagreement + their mean own
#: entropy), in the boundary band. Measured with bench/eval_uncertainty.py on the 40 validation cases
#: (bench/RESULTS.md): it ranks the proposal's error voxels better than disagreement alone (AUROC 0.94
#: vs 0.91 with the epoch-6 CPU pair, 0.76 vs 0.67 with the older, weaker one), and its regions cover
#: far more of the errors (~45 % vs 5 % at threshold 0.5): errors where both nets agree on an unsure
#: answer are invisible to disagreement alone.
DEFAULT_METHOD = "entropy"
#: Default half-width of the boundary band, in voxels.
DEFAULT_BAND_RADIUS = 3

_EPS = 1e-7


def _xlogx(p: torch.Tensor) -> torch.Tensor:
    return p * torch.log(p.clamp_min(_EPS))


def normalised_entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy over the class axis, divided by ``log C``.

    Args:
        p: probabilities ``(C, *S)``.

    Returns:
        ``(*S)`` float tensor in ``[0, 1]`` (1 = uniform over the C classes).
    """
    c = p.shape[0]
    if c < 2:
        return torch.zeros_like(p[0])
    h = -_xlogx(p.float()).sum(0)
    return (h / math.log(c)).clamp_(0.0, 1.0)


def capped_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy over the class axis in bits (``/ log 2``), capped at 1.

    1 means the distribution is split evenly between two classes (or spread even wider), whatever
    the number of classes ``C``, so the scale matches :func:`js_divergence`.

    Args:
        p: probabilities ``(C, *S)``.

    Returns:
        ``(*S)`` float tensor in ``[0, 1]``.
    """
    if p.shape[0] < 2:
        return torch.zeros_like(p[0], dtype=torch.float32)
    h = -_xlogx(p.float()).sum(0)
    return (h / math.log(2.0)).clamp_(0.0, 1.0)


def js_divergence(p_a: torch.Tensor, p_b: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence between two class distributions, normalised by ``log 2``.

    Args:
        p_a, p_b: probabilities ``(C, *S)``.

    Returns:
        ``(*S)`` float tensor in ``[0, 1]``; 0 where the two distributions are identical.
    """
    p_a = p_a.float()
    p_b = p_b.float()
    m = 0.5 * (p_a + p_b)
    jsd = 0.5 * (_xlogx(p_a).sum(0) + _xlogx(p_b).sum(0)) - _xlogx(m).sum(0)
    return (jsd / math.log(2.0)).clamp_(0.0, 1.0)


def total_variation(p_a: torch.Tensor, p_b: torch.Tensor) -> torch.Tensor:
    """Total-variation distance ``0.5 * sum_c |p_A - p_B|`` in ``[0, 1]``, shape ``(*S)``."""
    return (0.5 * (p_a.float() - p_b.float()).abs().sum(0)).clamp_(0.0, 1.0)


def _block_reduce(x: torch.Tensor, block: int, op: str) -> torch.Tensor:
    """Minimum (``op="min"``) or maximum of ``x`` ``(I, J, K)`` over cubic blocks of ``block`` voxels.

    Returns ``(ceil(I/block), ceil(J/block), ceil(K/block))``; the last block along an axis may be partial.
    The first pass (over the contiguous last axis) reads the volume once; later passes are 8x smaller.
    """
    reduce = torch.amin if op == "min" else torch.amax
    for axis in (2, 1, 0):
        size = x.shape[axis]
        whole = size // block
        parts = []
        if whole:
            main = x.narrow(axis, 0, whole * block)
            shape = list(main.shape)
            shape[axis : axis + 1] = [whole, block]
            parts.append(reduce(main.reshape(shape), axis + 1))
        if size > whole * block:
            parts.append(reduce(x.narrow(axis, whole * block, size - whole * block), axis, keepdim=True))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, axis)
    return x


def _block_voxels(blocks: torch.Tensor, block: int, halo: int, shape: Sequence[int]) -> list[torch.Tensor]:
    """Per axis, the voxel indices ``(n, block + 2 * halo)`` of each block ``(n, 3)`` with a halo.

    Indices outside the volume are clamped to its edge, which repeats the border voxels (scipy's
    ``mode="nearest"``).
    """
    offsets = torch.arange(-halo, block + halo, device=blocks.device)
    return [(blocks[:, a, None] * block + offsets).clamp_(0, shape[a] - 1) for a in range(3)]


def _gather(x: torch.Tensor, idx: list[torch.Tensor]) -> torch.Tensor:
    """Cubes of ``x`` ``(..., I, J, K)`` at block voxel indices ``idx`` -> ``(..., n, w, w, w)``."""
    return x[..., idx[0][:, :, None, None], idx[1][:, None, :, None], idx[2][:, None, None, :]]


def _core_flat_index(
    blocks: torch.Tensor, block: int, shape: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices ``(n, b, b, b)`` of the blocks' own voxels and a mask of those inside the volume."""
    offsets = torch.arange(block, device=blocks.device)
    i, j, k = (blocks[:, a, None] * block + offsets for a in range(3))
    inside = (
        (i < shape[0])[:, :, None, None] & (j < shape[1])[:, None, :, None] & (k < shape[2])[:, None, None, :]
    )
    flat = (i[:, :, None, None] * shape[1] + j[:, None, :, None]) * shape[2] + k[:, None, None, :]
    return flat, inside


def _chunks(n: int, voxels_per_item: int, budget: int = 2**24) -> list[tuple[int, int]]:
    """Split ``n`` blocks into runs of at most ``budget`` voxels (bounds the temporary memory)."""
    step = max(1, budget // max(voxels_per_item, 1))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def _band_of_blocks(
    label_maps: torch.Tensor, blocks: torch.Tensor, radius: int, block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Band voxels inside ``blocks``: within ``radius`` (Chebyshev) of any of the maps' label boundaries.

    Args:
        label_maps: ``(N, I, J, K)`` integer label maps (N = 1 or 2).
        blocks: ``(n, 3)`` block coordinates to examine; the band must be empty outside them.

    Returns:
        ``(flat_index, in_band)``: flat voxel indices ``(n, b, b, b)`` of the blocks and whether each is
        in the band (always False outside the volume).
    """
    shape = label_maps.shape[1:]
    halo = radius + 1
    width = block + 2 * halo
    flat_all, band_all = [], []
    for s, e in _chunks(len(blocks), label_maps.shape[0] * width**3):
        sub = blocks[s:e]
        cubes = _gather(label_maps, _block_voxels(sub, block, halo, shape)).float().transpose(0, 1)
        edge = (F.max_pool3d(cubes, 3, stride=1) != -F.max_pool3d(-cubes, 3, stride=1)).any(1, keepdim=True)
        if radius > 0:
            edge = F.max_pool3d(edge.float(), 2 * radius + 1, stride=1) > 0
        flat, inside = _core_flat_index(sub, block, shape)
        flat_all.append(flat)
        band_all.append(edge[:, 0] & inside)
    if not flat_all:
        empty = torch.zeros((0, block, block, block), dtype=torch.long, device=label_maps.device)
        return empty, empty.bool()
    return torch.cat(flat_all), torch.cat(band_all)


def boundary_band(
    labels_a: torch.Tensor, labels_b: torch.Tensor | None = None, radius: int = 3, block: int = 8
) -> torch.Tensor:
    """Voxels within ``radius`` voxels (Chebyshev) of either label map's boundary, bool ``(I, J, K)``.

    A boundary voxel is one whose 3x3x3 neighbourhood holds more than one label (both sides of every
    interface; the volume border is not a boundary). Only blocks of cubes of ``block`` voxels whose
    neighbourhood holds more than one label are examined (``block`` must exceed ``radius``), so the
    cost follows the boundary's extent, not the volume's.
    """
    if radius >= block:
        raise ValueError(f"band radius {radius} must be smaller than the block size {block}")
    maps = labels_a[None] if labels_b is None else torch.stack([labels_a, labels_b])
    lo = torch.stack([_block_reduce(m, block, "min") for m in maps]).amin(0).float()
    hi = torch.stack([_block_reduce(m, block, "max") for m in maps]).amax(0).float()
    # only a block whose 3x3x3 block neighbourhood holds two labels can hold band voxels (radius < block)
    mixed = _grow_max(hi) != -_grow_max(-lo)
    return _scatter_band(maps, mixed.nonzero(), radius, block)


def _grow_max(values: torch.Tensor) -> torch.Tensor:
    """Maximum of a float block grid ``(nI, nJ, nK)`` over each block's 3x3x3 block neighbourhood."""
    return F.max_pool3d(values[None, None], 3, stride=1, padding=1)[0, 0]


def _scatter_band(maps: torch.Tensor, blocks: torch.Tensor, radius: int, block: int) -> torch.Tensor:
    """Dense bool band ``(I, J, K)`` of ``maps`` ``(N, I, J, K)``, looking only inside ``blocks``."""
    flat, in_band = _band_of_blocks(maps, blocks, radius, block)
    band = torch.zeros(maps[0].numel(), dtype=torch.bool, device=maps.device)
    band[flat[in_band]] = True
    return band.view(maps.shape[1:])


def boundary_mask(labels: torch.Tensor) -> torch.Tensor:
    """Voxels whose 3x3x3 neighbourhood holds more than one label, bool ``(I, J, K)``.

    Both sides of every label interface are marked; the volume border does not count as a boundary.
    """
    return boundary_band(labels, None, 0)


def pair_disagreement(p_a: torch.Tensor, p_b: torch.Tensor, method: str = DEFAULT_METHOD) -> torch.Tensor:
    """Unrestricted voxel uncertainty ``(*S)`` in ``[0, 1]`` of the pair.

    ``method``:

    * ``"entropy"`` — :func:`capped_entropy` of the pair's mean ``(p_A + p_B) / 2``. The entropy of the
      mean is the two nets' disagreement (their Jensen–Shannon divergence) *plus* their mean own
      entropy, so it is high where they disagree and where they agree on an unsure answer.
    * ``"jsd"`` — Jensen–Shannon divergence / log 2: disagreement only.
    * ``"tv"`` — total variation ``0.5 * sum_c |p_A - p_B|``.
    * ``"jsd_entropy"`` — ``sqrt(JSD * capped_entropy(mean))``.
    """
    if method == "entropy":
        return capped_entropy(0.5 * (p_a.float() + p_b.float()))
    if method == "jsd":
        return js_divergence(p_a, p_b)
    if method == "tv":
        return total_variation(p_a, p_b)
    if method == "jsd_entropy":
        return (js_divergence(p_a, p_b) * capped_entropy(0.5 * (p_a.float() + p_b.float()))).sqrt_()
    raise ValueError(f"unknown uncertainty method {method!r}; choose one of {PAIR_METHODS}")


@dataclass(eq=False)
class PairMaps:
    """Proposal, band and uncertainty of a pair, on the probabilities' device.

    Attributes:
        labels: proposal ``(I, J, K)``, argmax of ``p_A + p_B`` (uint8; int32 past 256 classes).
        uncertainty: ``(I, J, K)`` disagreement in the band, zero outside it (dtype as requested).
        band: bool ``(I, J, K)``, voxels within the band radius of either net's argmax boundary.
        band_index: flat indices ``(n,)`` (int64, C order) of the band's voxels.
        band_values: float32 ``(n,)`` uncertainty at ``band_index`` (before any cast of ``uncertainty``).
        foreground: number of voxels with ``labels > 0``.
    """

    labels: torch.Tensor
    uncertainty: torch.Tensor
    band: torch.Tensor
    band_index: torch.Tensor
    band_values: torch.Tensor
    foreground: int

    @property
    def score(self) -> float:
        """:func:`case_score` of the pair: summed uncertainty per foreground voxel."""
        return float(self.band_values.sum().item()) / max(self.foreground, 1)


def pair_maps(
    p_a: torch.Tensor,
    p_b: torch.Tensor,
    radius: int = DEFAULT_BAND_RADIUS,
    method: str = DEFAULT_METHOD,
    dtype: torch.dtype = torch.float32,
    block: int = 8,
) -> PairMaps:
    """Proposal labels, boundary band and band uncertainty of a pair, with work only where it is needed.

    The volume is cut into cubic blocks of ``block`` voxels. A block where both nets give the first
    class (background) a probability above 0.5 in every voxel is *settled*: every argmax there is 0.
    Labels, band and uncertainty are computed only in blocks within one block of an unsettled one
    (everywhere else the labels are 0 and the band is empty, because ``radius < block``); on a whole
    CT that is the body's organs, not the air and the background tissue. All work is torch ops on the
    device of ``p_a``; the result equals the dense definition (``pair_disagreement(p_A, p_B) * band``
    with ``band = boundary_band(argmax p_A, argmax p_B, radius)``) voxel for voxel.

    Args:
        p_a, p_b: class probabilities ``(C, I, J, K)`` of the two networks (any float dtype).
        radius: band half-width in voxels (``< block``).
        method: see :func:`pair_disagreement`.
        dtype: dtype of the dense ``uncertainty`` map (e.g. ``torch.float16`` for display).
        block: block edge in voxels.

    Returns:
        A :class:`PairMaps` on ``p_a``'s device.
    """
    if radius >= block:
        raise ValueError(f"band radius {radius} must be smaller than the block size {block}")
    if method not in PAIR_METHODS:
        raise ValueError(f"unknown uncertainty method {method!r}; choose one of {PAIR_METHODS}")
    n_classes, shape, device = p_a.shape[0], tuple(p_a.shape[1:]), p_a.device
    if n_classes >= 2:
        settled = (_block_reduce(p_a[0], block, "min") > 0.5) & (_block_reduce(p_b[0], block, "min") > 0.5)
    else:
        settled = torch.zeros([-(-s // block) for s in shape], dtype=torch.bool, device=device)
    blocks = (_grow_max((~settled).float()) > 0).nonzero()
    label_dtype = torch.uint8 if n_classes <= 256 else torch.int32
    nets = torch.zeros((2, math.prod(shape)), dtype=label_dtype, device=device)
    labels = torch.zeros(math.prod(shape), dtype=label_dtype, device=device)
    values, foreground = [], 0
    for s, e in _chunks(len(blocks), 2 * n_classes * block**3):
        sub = blocks[s:e]
        idx = _block_voxels(sub, block, 0, shape)
        a, b = _gather(p_a, idx).float(), _gather(p_b, idx).float()  # (C, n, b, b, b)
        flat, inside = _core_flat_index(sub, block, shape)
        f = flat[inside]
        nets[0, f] = a.argmax(0)[inside].to(label_dtype)
        nets[1, f] = b.argmax(0)[inside].to(label_dtype)
        mean_labels = (a + b).argmax(0)[inside]
        labels[f] = mean_labels.to(label_dtype)
        foreground += int((mean_labels > 0).sum().item())
        values.append(pair_disagreement(a, b, method))
    flat, in_band = _band_of_blocks(nets.view(2, *shape), blocks, radius, block)
    band_index = flat[in_band]
    band_values = torch.cat(values)[in_band] if values else torch.zeros(0, device=device)
    band = torch.zeros(math.prod(shape), dtype=torch.bool, device=device)
    band[band_index] = True
    unc = torch.zeros(math.prod(shape), dtype=dtype, device=device)
    unc[band_index] = band_values.to(dtype)
    return PairMaps(
        labels=labels.view(shape),
        uncertainty=unc.view(shape),
        band=band.view(shape),
        band_index=band_index,
        band_values=band_values,
        foreground=foreground,
    )


def pair_uncertainty(
    p_a: torch.Tensor,
    p_b: torch.Tensor,
    radius: int = DEFAULT_BAND_RADIUS,
    method: str = DEFAULT_METHOD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundary-band pair uncertainty (see :func:`pair_maps`, which also gives the labels).

    Args:
        p_a, p_b: class probabilities ``(C, I, J, K)`` of the two networks.
        radius: band half-width in voxels around either net's argmax boundary.
        method: see :func:`pair_disagreement`.

    Returns:
        ``(uncertainty, band)``: float32 ``(I, J, K)`` in ``[0, 1]`` (zero outside the band) and the bool band.
    """
    maps = pair_maps(p_a, p_b, radius, method)
    return maps.uncertainty, maps.band


def single_uncertainty(
    p: torch.Tensor, radius: int = DEFAULT_BAND_RADIUS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-net baseline: :func:`capped_entropy` of its softmax ``(I, J, K)`` and its boundary band.

    The entropy is not restricted to the band (a single net's entropy already peaks at its boundaries).
    """
    return capped_entropy(p), boundary_band(p.argmax(0), None, radius)


def case_score(uncertainty: torch.Tensor, labels: torch.Tensor) -> float:
    """Per-case uncertainty score: ``sum(uncertainty) / max(1, number of foreground voxels)``.

    Normalising by the proposal's foreground volume makes large and small structures comparable:
    the score is the mean uncertainty "per segmented voxel"; 0 = the nets agree everywhere.
    """
    fg = int((labels > 0).sum().item())
    return float(uncertainty.float().sum().item()) / max(fg, 1)
