"""Synthetic boundary noise for label-noise experiments.

Real annotation noise sits at the boundary: a structure drawn a voxel too fat or too thin, a slice
drawn shifted, the first or last slice of a structure forgotten. Each function below changes only
voxels near the original label boundary, by at most the stated number of voxels:

* :func:`dilate_erode` — each foreground class grown (into background) or shrunk by ``r`` ∈ {1, 2}
  voxels (ball); changed voxels lie within Euclidean distance ``r`` of the boundary.
* :func:`shift_slices` — the label on a run of slices shifted in-plane by 1–2 voxels; changed voxels
  lie within Chebyshev distance ``shift`` of the boundary.
* :func:`drop_end_slices` — the first or last 1–2 slices of a class along an axis set to background;
  changed voxels lie within that many voxels of the boundary (they are the structure's end caps).

* :func:`dilate` — every foreground class grown into background by ``r`` ∈ {1, 2} voxels (ball):
  a *systematically* biased annotator who always draws structures too fat. The mixed functions above
  are unbiased (too fat and too thin equally often) and mild, so they cost a network little; this
  one pushes every corrupted case the same way, the case where correcting noisy labels should pay.

:func:`corrupt_labels` applies noise of one *kind* to a seeded fraction of the cases: ``"mixed"``
(one random function of the first three per case) or ``"dilate"`` (:func:`dilate` on every case).
Labels are integer arrays ``(I, J, K)``; 0 is background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _ball(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    zz, yy, xx = np.meshgrid(r, r, r, indexing="ij")
    return (zz**2 + yy**2 + xx**2) <= radius**2


def _classes(labels: np.ndarray) -> list[int]:
    return [int(c) for c in np.unique(labels) if c != 0]


def _grow(out: np.ndarray, labels: np.ndarray, cls: int, radius: int) -> None:
    """Set to ``cls`` (in ``out``) every voxel that is background in ``labels`` within ``radius`` of ``cls``."""
    grown = ndimage.binary_dilation(labels == cls, structure=_ball(radius))
    out[grown & (labels == 0)] = cls


def dilate_erode(labels: np.ndarray, rng: np.random.Generator, max_radius: int = 2) -> np.ndarray:
    """Grow (into background only) or shrink each foreground class by 1..``max_radius`` voxels (ball)."""
    out = labels.copy()
    for cls in _classes(labels):
        radius = int(rng.integers(1, max_radius + 1))
        if rng.random() < 0.5:
            _grow(out, labels, cls, radius)
        else:
            mask = labels == cls
            kept = ndimage.binary_erosion(mask, structure=_ball(radius))
            out[mask & ~kept] = 0
    return out


def dilate(labels: np.ndarray, rng: np.random.Generator, max_radius: int = 2) -> np.ndarray:
    """Grow each foreground class into background by 1..``max_radius`` voxels (ball; radius drawn per class).

    Systematic over-segmentation: only background voxels within Euclidean distance ``radius`` of a
    class change, and they become that class (where two classes reach the same voxel, the higher
    class wins, as in :func:`dilate_erode`).
    """
    out = labels.copy()
    for cls in _classes(labels):
        _grow(out, labels, cls, int(rng.integers(1, max_radius + 1)))
    return out


def shift_slices(
    labels: np.ndarray, rng: np.random.Generator, max_shift: int = 2, max_run: int = 4
) -> np.ndarray:
    """Shift the labels of a run of 1..``max_run`` consecutive slices in-plane by 1..``max_shift`` voxels."""
    out = labels.copy()
    axis = int(rng.integers(0, 3))
    filled = np.flatnonzero(np.moveaxis(labels, axis, 0).reshape(labels.shape[axis], -1).any(axis=1))
    if filled.size == 0:
        return out
    start = int(rng.choice(filled))
    run = int(rng.integers(1, max_run + 1))
    shift = [0, 0, 0]
    for ax in (a for a in range(3) if a != axis):
        shift[ax] = int(rng.integers(-max_shift, max_shift + 1))
    if not any(shift):
        shift[(axis + 1) % 3] = max_shift
    index = [slice(None)] * 3
    index[axis] = slice(start, min(start + run, labels.shape[axis]))
    index = tuple(index)
    block = labels[index]
    moved = np.roll(block, shift=shift, axis=(0, 1, 2))
    # np.roll wraps around: clear the wrapped margins so nothing appears far from the structure
    for ax, s in enumerate(shift):
        if s == 0:
            continue
        edge = [slice(None)] * 3
        edge[ax] = slice(0, s) if s > 0 else slice(s, None)
        moved[tuple(edge)] = 0
    out[index] = moved
    return out


def drop_end_slices(labels: np.ndarray, rng: np.random.Generator, max_slices: int = 2) -> np.ndarray:
    """Set the first or last 1..``max_slices`` slices of one class (along a random axis) to background."""
    out = labels.copy()
    classes = _classes(labels)
    if not classes:
        return out
    cls = int(rng.choice(classes))
    axis = int(rng.integers(0, 3))
    mask = labels == cls
    filled = np.flatnonzero(np.moveaxis(mask, axis, 0).reshape(mask.shape[axis], -1).any(axis=1))
    n = min(int(rng.integers(1, max_slices + 1)), max(filled.size - 1, 0))
    if n == 0:
        return out
    drop = filled[:n] if rng.random() < 0.5 else filled[-n:]
    index = [slice(None)] * 3
    index[axis] = drop
    sub = out[tuple(index)]
    sub[sub == cls] = 0
    out[tuple(index)] = sub
    return out


NOISE_FUNCTIONS = {
    "dilate_erode": dilate_erode,
    "shift_slices": shift_slices,
    "drop_end_slices": drop_end_slices,
}


NOISE_KINDS = ("mixed", "dilate", "none")


def corrupt_labels(
    labels_by_case: dict[str, np.ndarray], fraction: float, seed: int = 0, kind: str = "mixed"
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Corrupt a seeded ``fraction`` of the cases with boundary noise of one ``kind``.

    ``"mixed"``: one random function of :data:`NOISE_FUNCTIONS` per case (unbiased: as often too fat
    as too thin). ``"dilate"``: :func:`dilate` on every chosen case (systematic over-segmentation).
    ``"none"``: the chosen cases keep their labels (copies): the control of clean labels that are merely
    unapproved. The same seed chooses the same cases for every kind.

    Returns:
        (noisy labels of the chosen cases by case id, name of the function used by case id).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"noise fraction must be within [0, 1], got {fraction}")
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {', '.join(NOISE_KINDS)}")
    rng = np.random.default_rng(seed)
    ids = sorted(labels_by_case)
    chosen = sorted(rng.choice(ids, size=int(round(fraction * len(ids))), replace=False).tolist())
    names = sorted(NOISE_FUNCTIONS)
    noisy, used = {}, {}
    for case_id in chosen:
        if kind == "none":
            noisy[case_id], used[case_id] = labels_by_case[case_id].copy(), "none"
            continue
        if kind == "dilate":
            name, function = "dilate", dilate
        else:
            name = names[int(rng.integers(0, len(names)))]
            function = NOISE_FUNCTIONS[name]
        noisy[case_id] = function(labels_by_case[case_id], rng)
        used[case_id] = name
    return noisy, used
