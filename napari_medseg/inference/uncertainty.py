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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_medseg.inference.cpu_threads import side_by_side

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
    """``p * log(max(p, eps))`` in one new tensor (in-place steps: no temporaries on large maps)."""
    return p.clamp_min(_EPS).log_().mul_(p)


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
    return _xlogx(p.float()).sum(0).neg_().div_(math.log(2.0)).clamp_(0.0, 1.0)


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
    The first pass reads the volume once, over the outer axis (elementwise across contiguous rows,
    3x faster on the CPU than a reduction along the contiguous last axis); later passes are 8x smaller.
    """
    reduce = torch.amin if op == "min" else torch.amax
    for axis in (0, 1, 2):
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


def _sliding(x: torch.Tensor, width: int, op: Callable) -> torch.Tensor:
    """Running ``op`` (``torch.maximum`` / ``torch.minimum``) over a cube of ``width`` on the last 3 axes.

    No padding: each of those axes shrinks by ``width - 1``. Separable, and along each axis the window
    doubles per step, so a width of 7 costs 3 elementwise ops per axis (any dtype, any device).
    """
    for axis in (-3, -2, -1):
        span = 1
        while span < width:
            step = min(span, width - span)
            n = x.shape[axis] - step
            x = op(x.narrow(axis, 0, n), x.narrow(axis, step, n))
            span += step
    return x


def class_argmax(p: torch.Tensor, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """Index ``(*S)`` of the first maximum over the class axis of ``p`` ``(C, *S)`` (as ``torch.argmax``).

    One comparison per class; ``dtype`` must hold ``C - 1``.

    Faster than ``argmax(0)`` on a class-first tensor, whose reduction runs across the memory layout.
    """
    n = p.shape[0]
    if n == 1:
        return torch.zeros(p.shape[1:], dtype=dtype, device=p.device)
    best = p[0]
    better = p[1] > best
    # a fresh bool tensor is reinterpreted in place as 0/1 bytes; wider index types are converted
    index = better.view(dtype) if dtype.itemsize == 1 else better.to(dtype)
    for c in range(2, n):
        best = torch.maximum(best, p[c - 1])  # the running maximum (probabilities: no NaN)
        index.masked_fill_(p[c] > best, c)
    return index


#: Block rows (of ``block`` slices each) handled together along the first axis.
_SLAB_ROWS = 4


def _boxes(active: torch.Tensor, block: int, shape: Sequence[int]) -> list[tuple[slice, slice, slice]]:
    """Voxel boxes covering the ``active`` blocks: per slab of block rows, the box of its active blocks."""
    grid = active.cpu().numpy()
    boxes = []
    for r0 in range(0, grid.shape[0], _SLAB_ROWS):
        rows = grid[r0 : r0 + _SLAB_ROWS]
        if not rows.any():
            continue
        j = np.flatnonzero(rows.any((0, 2)))
        k = np.flatnonzero(rows.any((0, 1)))
        lo = (r0, int(j[0]), int(k[0]))
        hi = (r0 + len(rows), int(j[-1]) + 1, int(k[-1]) + 1)
        boxes.append(tuple(slice(lo[a] * block, min(hi[a] * block, shape[a])) for a in range(3)))
    return boxes  # type: ignore[return-value]


def _pad_edges(maps: torch.Tensor, halo: int) -> torch.Tensor:
    """``(N, I, J, K)`` maps padded by ``halo`` voxels on each side with their border values repeated."""
    padded = maps.new_empty((maps.shape[0], *(s + 2 * halo for s in maps.shape[1:])))
    inner = (slice(None), *(slice(halo, halo + s) for s in maps.shape[1:]))
    padded[inner] = maps
    _fill_halo(padded, halo)
    return padded


def _fill_halo(padded: torch.Tensor, halo: int) -> None:
    """Repeat the border voxels of the interior of ``padded`` ``(N, I+2h, J+2h, K+2h)`` into its halo."""
    for axis in (1, 2, 3):
        size = padded.shape[axis]
        if halo:
            padded.narrow(axis, 0, halo).copy_(
                padded.narrow(axis, halo, 1).expand_as(padded.narrow(axis, 0, halo))
            )
            tail = padded.narrow(axis, size - halo, halo)
            tail.copy_(padded.narrow(axis, size - halo - 1, 1).expand_as(tail))


def _band_in_box(padded: torch.Tensor, box: tuple[slice, slice, slice], radius: int) -> torch.Tensor:
    """Band (bool, the box's shape) of the maps in ``padded`` (halo ``radius + 1``) inside voxel ``box``."""
    halo = radius + 1
    window = padded[(slice(None), *(slice(b.start, b.stop + 2 * halo) for b in box))]
    edge = (_sliding(window, 3, torch.maximum) != _sliding(window, 3, torch.minimum)).any(0)
    if radius > 0:
        edge = _sliding(edge.to(torch.uint8), 2 * radius + 1, torch.maximum) > 0
    return edge


def boundary_band(
    labels_a: torch.Tensor, labels_b: torch.Tensor | None = None, radius: int = 3, block: int = 8
) -> torch.Tensor:
    """Voxels within ``radius`` voxels (Chebyshev) of either label map's boundary, bool ``(I, J, K)``.

    A boundary voxel is one whose 3x3x3 neighbourhood holds more than one label (both sides of every
    interface; the volume border is not a boundary). Only cubic blocks of ``block`` voxels whose block
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
    padded = _pad_edges(maps, radius + 1)
    band = torch.zeros(maps.shape[1:], dtype=torch.bool, device=maps.device)
    for box in _boxes(mixed, block, maps.shape[1:]):
        band[box] = _band_in_box(padded, box, radius)
    return band


def _grow_max(values: torch.Tensor) -> torch.Tensor:
    """Maximum of a float block grid ``(nI, nJ, nK)`` over each block's 3x3x3 block neighbourhood."""
    return F.max_pool3d(values[None, None], 3, stride=1, padding=1)[0, 0]


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
        return capped_entropy((p_a.float() + p_b.float()).mul_(0.5))
    if method == "jsd":
        return js_divergence(p_a, p_b)
    if method == "tv":
        return total_variation(p_a, p_b)
    if method == "jsd_entropy":
        return (js_divergence(p_a, p_b) * capped_entropy(0.5 * (p_a.float() + p_b.float()))).sqrt_()
    raise ValueError(f"unknown uncertainty method {method!r}; choose one of {PAIR_METHODS}")


def _label_dtype(n_classes: int) -> torch.dtype:
    return torch.uint8 if n_classes <= 256 else torch.int32


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
    weight_a: float = 0.5,
) -> PairMaps:
    """Proposal labels, boundary band and band uncertainty of a pair, with work only where it is needed.

    The volume is cut into cubic blocks of ``block`` voxels. A block where both nets give the first
    class (background) a probability above 0.5 in every voxel is *settled*: every argmax there is 0.
    Labels, band and uncertainty are computed only in blocks within one block of an unsettled one
    (everywhere else the labels are 0 and the band is empty, because ``radius < block``); on a whole
    CT that is the body's organs, not the air and the background tissue. All work is torch ops on the
    device of ``p_a``; the result equals the dense definition (``pair_disagreement(p_A, p_B) * band``
    with ``band = boundary_band(argmax p_A, argmax p_B, radius)``) voxel for voxel. The proposal is
    mixed only where the two nets' argmax differ (where they agree, every mix agrees); that equals the
    dense ``argmax(w·p_A + (1 − w)·p_B)`` except where rounding the mix ties two classes exactly.
    On a CPU with several torch threads the boxes are shared among as many Python threads, each op on
    one torch thread (:func:`~napari_medseg.inference.cpu_threads.side_by_side`); torch's thread count is
    restored afterwards.

    Args:
        p_a, p_b: class probabilities ``(C, I, J, K)`` of the two networks (any float dtype).
        radius: band half-width in voxels (``< block``).
        method: see :func:`pair_disagreement`.
        dtype: dtype of the dense ``uncertainty`` map (e.g. ``torch.float16`` for display).
        block: block edge in voxels.
        weight_a: A's weight in the proposal ``argmax(w·p_A + (1 − w)·p_B)`` (the model card's
            ``proposal_weights``); the band and the uncertainty always use both nets equally.

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
    boxes = _boxes(_grow_max((~settled).float()) > 0, block, shape)
    label_dtype = _label_dtype(n_classes)
    halo = radius + 1
    # the band needs only where either net's label changes: with up to 16 classes one byte per voxel
    # holds both labels (code a·C + b changes exactly where a or b does), else two label maps
    coded = n_classes <= 16
    nets = _zeros((1 if coded else 2, *(s + 2 * halo for s in shape)), label_dtype, device)
    labels = _zeros(shape, label_dtype, device)

    def label_box(box: tuple[slice, slice, slice]) -> int:
        """Labels of both nets and of their mix in ``box``; returns the proposal's foreground voxels."""
        a, b = p_a[(slice(None), *box)].float(), p_b[(slice(None), *box)].float()
        inner = tuple(slice(s.start + halo, s.stop + halo) for s in box)
        label_a, label_b = class_argmax(a, label_dtype), class_argmax(b, label_dtype)
        if coded:
            torch.add(label_b, label_a, alpha=n_classes, out=nets[(0, *inner)])
        else:
            nets[(0, *inner)] = label_a
            nets[(1, *inner)] = label_b
        # where both nets put the same class first, so does any mix of them (w·a_k + (1−w)·b_k beats
        # every other class): the mix is formed only where they differ, a thin shell at the boundaries
        differ = (label_a != label_b).nonzero(as_tuple=True)
        if len(differ[0]):
            at = (slice(None), *differ)
            mix = a[at] + b[at] if weight_a == 0.5 else weight_a * a[at] + (1 - weight_a) * b[at]
            label_a[differ] = class_argmax(mix, label_dtype)
        labels[box] = label_a
        return int(label_a.count_nonzero().item())

    band = _zeros(shape, torch.bool, device)
    unc = _zeros(shape, dtype, device)
    strides = torch.tensor([shape[1] * shape[2], shape[2], 1], device=device)
    # class-first flat views: one index_select per box reads the band's probabilities
    flat_a = p_a.reshape(n_classes, -1) if p_a.is_contiguous() else None
    flat_b = p_b.reshape(n_classes, -1) if p_b.is_contiguous() else None

    def band_box(box: tuple[slice, slice, slice]) -> tuple[torch.Tensor, torch.Tensor]:
        """Band and uncertainty in ``box`` (needs every box's labels); returns the band's flat indices
        (C order) and float32 uncertainty."""
        in_band = _band_in_box(nets, box, radius)
        band[box] = in_band
        local = in_band.nonzero()
        offset = sum(s.start * int(st) for s, st in zip(box, strides, strict=True))
        # integer matrix-vector products exist on the CPU only
        flat = (local @ strides if device.type == "cpu" else (local * strides).sum(1)) + offset
        at = (slice(None), local[:, 0], local[:, 1], local[:, 2])
        band_a = flat_a.index_select(1, flat) if flat_a is not None else p_a[(slice(None), *box)][at]
        band_b = flat_b.index_select(1, flat) if flat_b is not None else p_b[(slice(None), *box)][at]
        v = pair_disagreement(band_a.float(), band_b.float(), method)
        unc.view(-1).index_copy_(0, flat, v.to(dtype))
        return flat, v

    # boxes side by side on the CPU (2 cores, 512x512x300 map: 0.55-0.58 s -> 0.42-0.45 s, RESULTS session 8)
    with side_by_side(device, len(boxes)) as run:
        foreground = sum(run(label_box, boxes))  # labels are 0 (background) in every settled block
        _fill_halo(nets, halo)
        per_box = run(band_box, boxes)
    band_index = (
        torch.cat([f for f, _v in per_box]) if per_box else torch.zeros(0, dtype=torch.long, device=device)
    )
    band_values = torch.cat([v for _f, v in per_box]) if per_box else torch.zeros(0, device=device)
    return PairMaps(
        labels=labels,
        uncertainty=unc,
        band=band,
        band_index=band_index,
        band_values=band_values,
        foreground=foreground,
    )


def _zeros(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.zeros``; on the CPU from ``numpy.zeros`` (calloc), whose pages are zeroed by the OS only
    when first touched: the maps below are written in their boxes only, and most of a CT is settled."""
    if device.type == "cpu":
        try:
            numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        except TypeError:  # no numpy counterpart (bfloat16)
            pass
        else:
            return torch.from_numpy(np.zeros(tuple(shape), dtype=numpy_dtype))
    return torch.zeros(tuple(shape), dtype=dtype, device=device)


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
    return capped_entropy(p), boundary_band(class_argmax(p, _label_dtype(p.shape[0])), None, radius)


def case_score(uncertainty: torch.Tensor, labels: torch.Tensor) -> float:
    """Per-case uncertainty score: ``sum(uncertainty) / max(1, number of foreground voxels)``.

    Normalising by the proposal's foreground volume makes large and small structures comparable:
    the score is the mean uncertainty "per segmented voxel"; 0 = the nets agree everywhere.
    """
    fg = int((labels > 0).sum().item())
    return float(uncertainty.float().sum().item()) / max(fg, 1)
