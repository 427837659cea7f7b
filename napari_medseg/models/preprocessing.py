"""Intensity normalisation applied to a volume before it enters a network (training and inference).

One implementation in torch (:func:`normalize_tensor`), so inference normalises on the device that
holds the volume (a whole CT goes to the GPU as raw int16 and is normalised there); the numpy entry
point (:func:`normalize_intensity`, used by training's case cache) runs the same code on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_medseg.errors import InputError

#: Names accepted by ``normalize_intensity``.
SCHEMES = ("zscore", "percentile")
_EPS = 1e-8
#: Percentiles (0..1) the ``percentile`` scheme clips to.
CLIP = (0.005, 0.995)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """``array`` as a CPU tensor without a copy where torch can share it (any memory order).

    Byte-swapped (big-endian NIfTI) or types torch cannot share are converted to float64 first.
    """
    a = np.asarray(array)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    try:
        return torch.from_numpy(a)
    except (TypeError, ValueError):  # non-native byte order, unsupported dtype, negative strides
        return torch.from_numpy(np.asarray(a, dtype=np.float64))


def normalize_tensor(x: torch.Tensor, scheme: str = "zscore") -> torch.Tensor:
    """Normalise one volume's intensities on the device that holds it.

    Args:
        x: image of any shape and numeric dtype (uint8, int16, float...), raw scanner units, any device.
        scheme: ``"zscore"``: subtract the volume mean, divide by its standard deviation (population,
            a constant volume becomes all zeros). ``"percentile"``: clip to the 0.5-99.5 percentiles
            (linear interpolation, as numpy), then scale that range to [0, 1] (a constant volume
            becomes all zeros). Statistics are computed in float64 (float32 on MPS).

    Returns:
        float32 tensor of the same shape, on the same device.

    Raises:
        InputError: unknown scheme, empty volume or non-finite values.
    """
    if scheme not in SCHEMES:
        raise InputError(f"unknown intensity normalisation {scheme!r}; use one of {', '.join(SCHEMES)}")
    if x.numel() == 0:
        raise InputError("cannot normalise an empty image")
    wide = torch.float32 if x.device.type == "mps" else torch.float64
    data = x.to(wide)
    if x.is_floating_point() and not bool(torch.isfinite(data).all()):
        raise InputError("the image contains NaN or infinite values; it cannot be normalised")
    if scheme == "zscore":
        std, mean = torch.std_mean(data, correction=0)
        if float(std) <= _EPS:
            return torch.zeros_like(x, dtype=torch.float32)
        return ((data - mean) / std).to(torch.float32)
    if data.device.type == "cpu":  # numpy's introselect beats two torch.kthvalue passes on the CPU
        lo, hi = (torch.tensor(v, dtype=wide) for v in np.percentile(data.numpy(), [100 * q for q in CLIP]))
    else:
        lo, hi = (_percentile(data.reshape(-1), q) for q in CLIP)
    if float(hi - lo) <= _EPS:
        return torch.zeros_like(x, dtype=torch.float32)
    return ((data.clamp(lo, hi) - lo) / (hi - lo)).to(torch.float32)


def _percentile(flat: torch.Tensor, q: float) -> torch.Tensor:
    """numpy's default (linear) percentile ``q`` (0..1) of a 1D tensor, by selection (no full sort;
    ``torch.quantile`` refuses tensors of over 16 M values, a CT has 80 M)."""
    pos = q * (flat.numel() - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, flat.numel() - 1)
    a = flat.kthvalue(lo + 1).values
    b = flat.kthvalue(hi + 1).values if hi != lo else a
    t = pos - lo
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)


def normalize_intensity(array: np.ndarray, scheme: str = "zscore") -> np.ndarray:
    """:func:`normalize_tensor` of a numpy volume, on the CPU: float32 array of the same shape (and
    memory order)."""
    return normalize_tensor(as_tensor(array), scheme).numpy()
