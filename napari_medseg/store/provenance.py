"""Provenance numbers recorded with every label version.

All functions take label arrays of shape ``(I, J, K)`` on the same voxel grid.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from napari_medseg.errors import StoreError

#: ``human`` or ``model:<model_id>@<checkpoint_hash>``.
SOURCE_RE = re.compile(r"^(human|model:[A-Za-z0-9_.\-]+@[A-Za-z0-9]+)$")


def validate_source(source: str) -> str:
    """Return ``source`` if it is ``"human"`` or ``"model:<model_id>@<checkpoint_hash>"``."""
    if not isinstance(source, str) or not SOURCE_RE.fullmatch(source):
        raise StoreError(f"invalid source {source!r}: use 'human' or 'model:<model_id>@<checkpoint_hash>'")
    return source


def changed_voxels(a: np.ndarray, b: np.ndarray) -> int:
    """Number of voxels whose label differs between ``a`` and ``b``."""
    return int(np.count_nonzero(np.asarray(a) != np.asarray(b)))


def mean_foreground_dice(reference: np.ndarray, other: np.ndarray) -> float:
    """Dice between two label maps, averaged over the foreground classes present in either.

    Per class ``c > 0``: ``2 |A_c ∩ B_c| / (|A_c| + |B_c|)``. Two maps with no foreground at all
    agree perfectly (1.0).
    """
    a = np.asarray(reference)
    b = np.asarray(other)
    if a.flags.f_contiguous != b.flags.f_contiguous and a.ndim > 1:
        b = np.asfortranarray(b) if a.flags.f_contiguous else np.ascontiguousarray(b)  # same ravel order
    if a.dtype.kind == "u" and b.dtype.kind == "u" and a.size and max(int(a.max()), int(b.max())) < 256:
        import torch  # its bincount counts uint8 directly; numpy's converts to int64 first

        # joint histogram of (a, b): row sums = |A_c|, column sums = |B_c|, diagonal = |A_c & B_c|
        n = max(int(a.max()), int(b.max())) + 1
        ta = torch.from_numpy(np.ascontiguousarray(a.ravel(order="K"))).to(torch.int32)
        tb = torch.from_numpy(np.ascontiguousarray(b.ravel(order="K"))).to(torch.int32)
        joint = (ta * n + tb).bincount(minlength=n * n).view(n, n).numpy()
        size_a, size_b, both = joint.sum(1), joint.sum(0), np.diag(joint)
        classes = np.flatnonzero(size_a + size_b)
        classes = classes[classes != 0]
        if classes.size == 0:
            return 1.0
        return float(np.mean(2.0 * both[classes] / (size_a[classes] + size_b[classes])))
    classes = np.union1d(np.unique(a), np.unique(b))
    classes = classes[classes != 0]
    if classes.size == 0:
        return 1.0
    scores = []
    for c in classes:
        in_a = a == c
        in_b = b == c
        denom = int(in_a.sum()) + int(in_b.sum())
        scores.append(2.0 * int(np.count_nonzero(in_a & in_b)) / denom)
    return float(np.mean(scores))


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
