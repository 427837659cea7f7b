"""The vectorised regions equal the straightforward definition (tests/regions_reference.py) exactly.

Synthetic maps built to hit the fast path's shortcuts: plateaus (many equal values, so many equal
peak candidates), several components inside one coarse block group, components touching the volume
border, long sheets that are split, pieces below the minimum size.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from regions_reference import slow_region_labels, slow_regions
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from napari_medseg.inference.regions import (
    COARSE_BLOCK,
    _peaks,
    _watershed,
    find_regions,
    region_labels,
    regions_from_voxels,
)


def plateau_map(seed: int, shape: tuple[int, int, int] = (40, 44, 36)) -> np.ndarray:
    """Blobs and sheets with few distinct values (float16 steps), some cut by the volume border."""
    rng = np.random.default_rng(seed)
    u = np.zeros(shape, np.float32)
    blobs = ndimage.gaussian_filter(rng.random(shape).astype(np.float32), 2.0)
    u[blobs > np.quantile(blobs, 0.85)] = 0.75  # one big plateau value
    u[blobs > np.quantile(blobs, 0.95)] = 1.0
    u[0, 5:30, 3:9] = 0.6  # sheet on the border face i = 0 (long: split)
    u[:, -1, -3:] = 0.9  # bar along the whole first axis on the corner edge
    u[10:12, 2:30:2, 20] = 0.8  # comb of 1-voxel gaps: several components in one coarse block group
    u[20, 20, 20:34:3] = 0.55  # isolated voxels, below min_size
    k = np.arange(shape[2])
    u[30:33, 4:8, :] = (0.7 + 0.25 * (np.sin(k / 3.0) > 0))[None, None, :]  # steps along a long bar
    return np.asarray(u.astype(np.float16), dtype=np.float32)


def noise_map(seed: int, shape: tuple[int, int, int] = (36, 30, 42)) -> np.ndarray:
    """Smooth random field in [0, 1], quantised to float16 like the engine's display map."""
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), 1.5)
    q = np.quantile(f, 0.85)  # the top 15 % at or above 0.5
    f = np.clip(0.5 + 0.5 * (f - q) / (f.max() - q), 0.0, 1.0)
    return np.asarray(f.astype(np.float16), dtype=np.float32)


MAPS = [("plateaus", plateau_map, s) for s in range(4)] + [("noise", noise_map, s) for s in range(4)]


@pytest.mark.parametrize(("kind", "make", "seed"), MAPS, ids=[f"{k}-{s}" for k, _m, s in MAPS])
def test_regions_equal_the_slow_definition(kind, make, seed):
    u = make(seed)
    affine = np.array([[0.0, -0.7, 0, 10], [0.9, 0, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    for threshold, min_size, split_size in ((0.5, 5, 12), (0.7, 1, 6), (0.5, 5, None), (0.5, 3, 3)):
        expected = slow_regions(u, affine, threshold, min_size, split_size)
        assert len(expected) >= 3
        assert find_regions(u, affine, threshold, min_size, split_size=split_size) == expected
        index = np.flatnonzero(u >= threshold)
        shuffled = np.random.default_rng(seed).permutation(len(index))  # any voxel order
        got = regions_from_voxels(
            u.shape, index[shuffled], u.reshape(-1)[index[shuffled]], affine, min_size, None, split_size
        )
        assert got == expected
        assert find_regions(u, affine, threshold, min_size, 2, split_size) == expected[:2]
        labels, n = region_labels(u, threshold, min_size, split_size)
        slow_labels, slow_n = slow_region_labels(u, threshold, min_size, split_size)
        assert n == slow_n
        assert np.array_equal(labels, slow_labels)


def test_the_maps_do_exercise_splitting_plateaus_and_borders():
    u = plateau_map(0)
    labels, n = slow_region_labels(u)
    _whole, n_whole = slow_region_labels(u, split_size=None)
    assert n > n_whole  # some components are split
    assert labels[0].any() and labels[:, -1].any()  # regions on the border faces
    comp, n_comp = ndimage.label(u >= 0.5, structure=np.ones((3, 3, 3)))
    coarse = np.zeros([-(-s // COARSE_BLOCK) for s in u.shape], bool)
    coarse[tuple(np.argwhere(comp > 0).T // COARSE_BLOCK)] = True
    assert ndimage.label(coarse, structure=np.ones((3, 3, 3)))[1] < n_comp  # groups hold several components
    assert len(np.unique(u[u >= 0.5])) <= 8 < 10_000 < int((u >= 0.5).sum())  # plateaus: few values


@pytest.mark.parametrize("distance", [1, 2, 3, 6])
def test_peaks_equal_scikit_image_on_plateaus(distance):
    rng = np.random.default_rng(distance)
    for trial in range(12):
        shape = tuple(int(s) for s in rng.integers(3, 25, 3))
        piece = ndimage.binary_dilation(rng.random(shape) > 0.9, iterations=2)
        piece = ndimage.label(piece, structure=np.ones((3, 3, 3)))[0] == 1
        if not piece.any():
            continue
        box = ndimage.find_objects(piece.astype(np.int32))[0]  # as in _split: the piece's bounding box
        piece = piece[box]
        shape = piece.shape
        if trial % 3 == 0:
            smooth = np.where(piece, 0.5, 0.0).astype(np.float32)  # one flat plateau: the trivial case
        else:
            smooth = (rng.integers(0, 3, shape) / 4).astype(np.float32)  # few levels: many ties
        expected = peak_local_max(
            smooth, min_distance=distance, labels=piece.astype(np.int32), exclude_border=False
        )
        assert np.array_equal(_peaks(smooth, piece, distance), expected)


@pytest.mark.parametrize("distance", [1, 3, 6])
def test_peaks_equal_scikit_image_on_sheets_and_bars(distance):
    """Pieces one voxel thick along one or two axes (the peak filter skips those axes), and one voxel."""
    rng = np.random.default_rng(10 + distance)
    for shape in [(1, 17, 23), (19, 1, 14), (12, 20, 1), (1, 1, 30), (25, 1, 1), (1, 1, 1), (2, 15, 9)]:
        for trial in range(4):
            piece = rng.random(shape) > 0.2 if trial else np.ones(shape, bool)
            piece[(0,) * 3] = True
            piece = ndimage.label(piece, structure=np.ones((3, 3, 3)))[0] == 1
            smooth = (rng.integers(0, 4, shape) / 4).astype(np.float32)
            expected = peak_local_max(
                smooth, min_distance=distance, labels=piece.astype(np.int32), exclude_border=False
            )
            assert np.array_equal(_peaks(smooth, piece, distance), expected), (shape, trial)


def test_watershed_equals_scikit_image_on_ties_and_thin_pieces():
    """The direct flooding call floods like scikit-image's public function, ties included: pieces on
    a few levels (many equal neighbours) and pieces one voxel thick, with markers on the piece."""
    rng = np.random.default_rng(7)
    shapes = [tuple(int(s) for s in rng.integers(2, 20, 3)) for _ in range(20)]
    shapes += [(1, 17, 23), (19, 1, 14), (12, 20, 1), (1, 1, 30)]
    split = 0
    for n, shape in enumerate(shapes):
        piece = (
            ndimage.binary_dilation(rng.random(shape) > 0.8, iterations=1)
            if n % 2
            else rng.random(shape) > 0.1
        )
        if not piece.any():
            continue
        image = -(rng.integers(0, 3, shape) / 2).astype(np.float32)  # three levels: ties everywhere
        at = np.flatnonzero(piece)
        markers = np.zeros(shape, np.int32)
        chosen = rng.choice(at, size=min(len(at), 4), replace=False)
        markers.reshape(-1)[chosen] = np.arange(1, len(chosen) + 1)
        expected = watershed(image, markers, mask=piece, connectivity=3)
        got = _watershed(image, markers, piece)
        assert got.dtype == np.int32
        assert np.array_equal(got, expected), shape
        split += len(np.unique(got[piece])) > 1
    assert split >= 10


def test_watershed_falls_back_to_the_public_function_without_the_private_one(monkeypatch):
    rng = np.random.default_rng(8)
    piece = rng.random((6, 9, 7)) > 0.2
    image = -(rng.integers(0, 3, piece.shape) / 2).astype(np.float32)
    markers = np.zeros(piece.shape, np.int32)
    markers.reshape(-1)[np.flatnonzero(piece)[[0, -1]]] = [1, 2]
    direct = _watershed(image, markers, piece)
    monkeypatch.setitem(sys.modules, "skimage.segmentation._watershed_cy", None)  # import fails
    fallback = _watershed(image, markers, piece)
    assert fallback.dtype == np.int32
    assert np.array_equal(fallback, direct)
    assert np.array_equal(fallback, watershed(image, markers, mask=piece, connectivity=3))


def test_the_garbage_collector_is_left_as_it_was():
    import gc

    u = plateau_map(1)
    assert gc.isenabled()
    assert find_regions(u)
    assert gc.isenabled()
    gc.disable()
    try:
        assert find_regions(u)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(ValueError):  # restored on errors too
        regions_from_voxels((4, 4, 4), np.array([0, 999]), np.array([0.9, 0.9], np.float32))
    assert gc.isenabled()


def test_more_than_65535_components_in_one_group():
    # isolated voxels two apart: 76,800 components, all in one coarse block group (past 16-bit labels)
    u = np.zeros((160, 160, 24), np.float32)
    u[::2, ::2, ::2] = 0.9
    labels, n = region_labels(u, min_size=1)
    expected, n_expected = ndimage.label(u >= 0.5, structure=np.ones((3, 3, 3)))
    assert n == n_expected == 76_800
    assert np.array_equal(labels, expected)
