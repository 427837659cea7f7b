"""Checksums of arrays do not depend on memory order: the blocked C-order slabs equal numpy's copy."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from napari_medseg.io.volume import array_checksum, c_order_chunks
from napari_medseg.store.casestore import labels_checksum


def _reference(a: np.ndarray, dtype=None) -> str:
    c = np.ascontiguousarray(a, dtype=dtype)
    return hashlib.sha256(f"{c.shape}|{c.dtype.str}|".encode() + c.tobytes()).hexdigest()


@pytest.mark.parametrize("shape", [(130, 70, 5), (64, 64, 3), (1, 200, 7), (3, 2, 1), (0, 4, 4)])
def test_chunks_join_to_the_c_ordered_bytes(shape):
    rng = np.random.default_rng(0)
    a = rng.integers(-3000, 3000, size=shape).astype(np.int16)
    for variant in (a, np.asfortranarray(a), a[::-1], np.swapaxes(np.swapaxes(a, 0, 2).copy(), 0, 2)):
        joined = b"".join(c.tobytes() for c in c_order_chunks(variant))
        assert joined == np.ascontiguousarray(variant).tobytes()
        assert array_checksum(variant) == _reference(variant)
        assert array_checksum(variant, np.int32) == _reference(variant, np.int32)


def test_labels_checksum_ignores_dtype_and_order():
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 4, size=(150, 90, 11)).astype(np.uint8)
    expected = _reference(lab, np.int32)
    for variant in (
        lab,
        np.asfortranarray(lab),
        lab.astype(np.uint16),
        np.asfortranarray(lab.astype(np.int64)),
    ):
        assert labels_checksum(variant) == expected
    changed = lab.copy(order="F")
    changed[149, 89, 10] += 1  # the last voxel of the last slab
    assert labels_checksum(changed) != expected
