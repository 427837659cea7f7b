"""Synthetic boundary noise changes only voxels near the label boundary, by the stated amounts."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_medseg.training.noise import (
    NOISE_FUNCTIONS,
    corrupt_labels,
    dilate,
    dilate_erode,
    drop_end_slices,
    shift_slices,
)


@pytest.fixture(scope="module")
def label(hippo_cases) -> np.ndarray:
    return np.rint(np.asarray(nib.load(hippo_cases[0][1]).dataobj)).astype(np.int64)


def _distance_to_boundary(label: np.ndarray, metric: str) -> np.ndarray:
    """Distance of every voxel to the nearest voxel whose 6-neighbourhood holds another label."""
    changes = np.zeros(label.shape, dtype=bool)
    for ax in range(3):
        d = np.diff(label, axis=ax) != 0
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        changes[tuple(lo)] |= d
        changes[tuple(hi)] |= d
    if metric == "euclidean":
        return ndimage.distance_transform_edt(~changes)
    return ndimage.distance_transform_cdt(~changes, metric="chessboard").astype(float)


@pytest.mark.parametrize("seed", range(4))
def test_dilate_erode_moves_the_boundary_by_at_most_two_voxels(label, seed):
    noisy = dilate_erode(label, np.random.default_rng(seed), max_radius=2)
    changed = noisy != label
    assert changed.any()
    assert _distance_to_boundary(label, "euclidean")[changed].max() <= 2.0 + 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_shifted_slices_change_only_voxels_within_the_shift(label, seed):
    noisy = shift_slices(label, np.random.default_rng(seed), max_shift=2)
    changed = noisy != label
    assert _distance_to_boundary(label, "chessboard")[changed].max(initial=0) <= 2


@pytest.mark.parametrize("seed", range(4))
def test_dropped_end_slices_remove_at_most_two_end_caps_of_one_class(label, seed):
    noisy = drop_end_slices(label, np.random.default_rng(seed), max_slices=2)
    changed = noisy != label
    assert changed.any()
    assert (noisy[changed] == 0).all()
    assert len(np.unique(label[changed])) == 1
    assert _distance_to_boundary(label, "chessboard")[changed].max() <= 2


def test_corrupt_labels_touches_the_seeded_fraction_of_cases(hippo_cases):
    labels = {p.name: np.rint(np.asarray(nib.load(p).dataobj)).astype(np.int64) for _, p in hippo_cases}
    noisy, used = corrupt_labels(labels, 0.5, seed=3)
    again, _ = corrupt_labels(labels, 0.5, seed=3)
    assert len(noisy) == 4 and set(noisy) == set(used) == set(again)
    assert all(np.array_equal(noisy[c], again[c]) for c in noisy)
    assert all(not np.array_equal(noisy[c], labels[c]) for c in noisy)


def _synthetic_cases() -> dict[str, np.ndarray]:
    """Six 16³ label maps: a ball of class 2 overlapped by a ball of class 1 (radius 3 or 4)."""
    zz, yy, xx = np.meshgrid(*(np.arange(16),) * 3, indexing="ij")
    cases = {}
    for i in range(6):
        label = np.zeros((16, 16, 16), np.int64)
        label[(zz - 10) ** 2 + (yy - 8) ** 2 + (xx - 7) ** 2 <= 9] = 2
        label[(zz - 6) ** 2 + (yy - 7) ** 2 + (xx - 8) ** 2 <= (3 + i % 2) ** 2] = 1
        cases[f"case{i}"] = label
    return cases


# (function, changed voxels, label sum) per corrupted case, recorded with the code before noise kinds
# existed: the default kind must keep reproducing old noisy runs bit for bit
_MIXED_BEFORE_KINDS = {
    0: {
        "case3": ("dilate_erode", 209, 147),
        "case4": ("drop_end_slices", 19, 299),
        "case5": ("drop_end_slices", 12, 407),
    },
    9: {
        "case1": ("drop_end_slices", 15, 401),
        "case4": ("shift_slices", 32, 337),
        "case5": ("dilate_erode", 498, 1021),
    },
}


@pytest.mark.parametrize("seed", sorted(_MIXED_BEFORE_KINDS))
def test_default_kind_reproduces_the_mixed_noise_of_earlier_runs(seed):
    labels = _synthetic_cases()
    noisy, used = corrupt_labels(labels, 0.5, seed=seed)
    explicit, _ = corrupt_labels(labels, 0.5, seed=seed, kind="mixed")
    got = {c: (used[c], int((noisy[c] != labels[c]).sum()), int(noisy[c].sum())) for c in noisy}
    assert got == _MIXED_BEFORE_KINDS[seed]
    # the same draws, replayed by hand: cases first, then per case a function and its own draws
    rng = np.random.default_rng(seed)
    ids = sorted(labels)
    chosen = sorted(rng.choice(ids, size=3, replace=False).tolist())
    names = sorted(NOISE_FUNCTIONS)
    for case_id in chosen:
        name = names[int(rng.integers(0, len(names)))]
        expected = NOISE_FUNCTIONS[name](labels[case_id], rng)
        assert np.array_equal(noisy[case_id], expected)
        assert np.array_equal(explicit[case_id], expected)


@pytest.mark.parametrize("seed", range(4))
def test_dilate_only_adds_foreground_next_to_its_class(label, seed):
    noisy = dilate(label, np.random.default_rng(seed), max_radius=2)
    changed = noisy != label
    assert changed.any()
    assert (label[changed] == 0).all()
    for cls in np.unique(noisy[changed]):
        assert cls != 0
        distance = ndimage.distance_transform_edt(label != cls)
        assert distance[changed & (noisy == cls)].max() <= 2.0 + 1e-6
    # every class grew by at least one voxel layer: its clean 1-voxel shell is now foreground
    for cls in np.unique(label[label > 0]):
        shell = ndimage.binary_dilation(label == cls) & (label == 0)
        assert (noisy[shell] > 0).all()


def test_dilate_kind_corrupts_the_seeded_fraction_by_over_segmentation():
    labels = _synthetic_cases()
    noisy, used = corrupt_labels(labels, 0.5, seed=3, kind="dilate")
    mixed, _ = corrupt_labels(labels, 0.5, seed=3)
    assert set(noisy) == set(mixed) and len(noisy) == 3  # same cases as the mixed kind, same seed
    assert set(used.values()) == {"dilate"}
    for case_id, lab in noisy.items():
        changed = lab != labels[case_id]
        assert changed.any() and (labels[case_id][changed] == 0).all() and (lab[changed] > 0).all()
    assert len(corrupt_labels(labels, 1.0, seed=0, kind="dilate")[0]) == 6
    assert corrupt_labels(labels, 0.0, seed=0, kind="dilate")[0] == {}


def test_none_kind_leaves_the_seeded_cases_clean_but_separate():
    labels = _synthetic_cases()
    kept, used = corrupt_labels(labels, 0.5, seed=3, kind="none")
    assert set(kept) == set(corrupt_labels(labels, 0.5, seed=3)[0])  # the same cases as the other kinds
    assert set(used.values()) == {"none"}
    for case_id, lab in kept.items():
        assert np.array_equal(lab, labels[case_id]) and lab is not labels[case_id]


def test_unknown_noise_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown noise kind 'erode'; expected one of mixed, dilate"):
        corrupt_labels(_synthetic_cases(), 0.5, kind="erode")
