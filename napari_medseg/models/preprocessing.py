"""Intensity normalisation applied to a volume before it enters a network (training and inference)."""

from __future__ import annotations

import numpy as np

from napari_medseg.errors import InputError

#: Names accepted by ``normalize_intensity``.
SCHEMES = ("zscore", "percentile")
_EPS = 1e-8


def normalize_intensity(array: np.ndarray, scheme: str = "zscore") -> np.ndarray:
    """Normalise one volume's intensities.

    Args:
        array: image of any shape and numeric dtype (uint8, int16, float...), raw scanner units.
        scheme: ``"zscore"``: subtract the volume mean, divide by its standard deviation (a constant
            volume becomes all zeros). ``"percentile"``: clip to the 0.5-99.5 percentiles, then
            scale that range to [0, 1] (a constant volume becomes all zeros).

    Returns:
        float32 array of the same shape.

    Raises:
        InputError: unknown scheme, empty array or non-finite values.
    """
    if scheme not in SCHEMES:
        raise InputError(f"unknown intensity normalisation {scheme!r}; use one of {', '.join(SCHEMES)}")
    data = np.asarray(array, dtype=np.float64)
    if data.size == 0:
        raise InputError("cannot normalise an empty image")
    if not np.isfinite(data).all():
        raise InputError("the image contains NaN or infinite values; it cannot be normalised")
    if scheme == "zscore":
        std = data.std()
        out = (data - data.mean()) / std if std > _EPS else np.zeros_like(data)
    else:
        lo, hi = np.percentile(data, [0.5, 99.5])
        out = (np.clip(data, lo, hi) - lo) / (hi - lo) if hi - lo > _EPS else np.zeros_like(data)
    return out.astype(np.float32)
