"""Per-case segmentation metrics (MONAI): Dice, 95th-percentile Hausdorff distance and volume error per class.

Conventions:
* Dice of a class absent from both the prediction and the truth is 1.0; absent from the truth only, 0.0.
* HD95 is in millimetres (voxel spacing applied); it is NaN when the class is missing from the
  prediction or the truth (no surface to measure).
* Volume error is signed, in % of the truth's volume (``100 * (|pred| - |truth|) / |truth|``: positive =
  the model over-segments); NaN when the truth has no voxel of the class. Its mean over cases is the
  model's volumetric bias, what a volumetry study (e.g. hippocampal atrophy) needs besides overlap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.networks.utils import one_hot

from napari_medseg.errors import GeometryError


def _one_hot(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """``(I, J, K)`` integer labels -> ``(1, n_classes, I, J, K)`` float one-hot."""
    t = torch.as_tensor(np.asarray(labels, dtype=np.int64))[None, None]
    return one_hot(t, num_classes=n_classes, dim=1)


def case_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    classes: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    hd95: bool = True,
) -> dict[str, float]:
    """Dice and HD95 of each foreground class of one case.

    Args:
        pred, truth: integer label maps ``(I, J, K)`` on the same grid.
        classes: foreground label values to score (e.g. ``[1, 2]``); label 0 is background.
        spacing: voxel size in mm along ``I, J, K`` (for HD95).
        hd95: also compute HD95 (slower on large volumes).

    Returns:
        ``{"dice_<c>": ..., "hd95_<c>": ..., "volerr_<c>": ..., "dice_mean": ..., "hd95_mean": ...}``
        (``volerr`` in %, signed); means skip NaNs.

    Raises:
        GeometryError: the two maps have different shapes.
    """
    if tuple(pred.shape) != tuple(truth.shape):
        raise GeometryError(f"prediction {pred.shape} and truth {truth.shape} are not on the same grid")
    classes = [int(c) for c in classes if int(c) != 0]
    n = max([*classes, int(np.max(pred)), int(np.max(truth))]) + 1
    p, t = _one_hot(pred, n), _one_hot(truth, n)
    dice = compute_dice(p, t, include_background=True, ignore_empty=False)[0]
    out: dict[str, float] = {}
    for c in classes:
        out[f"dice_{c}"] = float(dice[c])
    if hd95:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI warns for empty classes; we report NaN instead
            hd = compute_hausdorff_distance(
                p, t, include_background=True, percentile=95, spacing=[float(s) for s in spacing]
            )[0]
        for c in classes:
            v = float(hd[c])
            empty = not bool(p[0, c].any()) or not bool(t[0, c].any())
            out[f"hd95_{c}"] = math.nan if (empty or not math.isfinite(v)) else v
    for c in classes:
        true_n = int(t[0, c].sum())
        out[f"volerr_{c}"] = 100.0 * (int(p[0, c].sum()) - true_n) / true_n if true_n else math.nan
    out["dice_mean"] = _nanmean([out[f"dice_{c}"] for c in classes])
    if hd95:
        out["hd95_mean"] = _nanmean([out[f"hd95_{c}"] for c in classes])
    return out


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan
