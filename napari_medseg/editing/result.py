"""The value every editing tool returns: a new label array and how many voxels it changed."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class EditResult(NamedTuple):
    """Outcome of one correction tool.

    Attributes
    ----------
    labels:
        A new array, same shape and dtype as the input label map; the input is never modified.
    changed:
        Number of voxels whose label differs from the input.

    Being a tuple, it unpacks: ``new, n = fill_holes(labels)``.
    """

    labels: np.ndarray
    changed: int

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray) -> EditResult:
        """Result for ``after`` (a new array) with the count of voxels that differ from ``before``."""
        return cls(after, int(np.count_nonzero(after != before)))
