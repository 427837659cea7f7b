"""Uncertain regions: connected components, ranked by size x mean uncertainty, with mm positions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_medseg.inference.regions import Region, find_regions


def planted() -> np.ndarray:
    u = np.zeros((30, 30, 30), dtype=np.float16)
    u[2:4, 2:4, 2:4] = 0.95  # small, very uncertain: 8 vox, score 7.6
    u[10:16, 10:16, 10:16] = 0.4  # large, moderately uncertain: 216 vox, score 86.4
    u[20:25, 20:23, 20:22] = 0.8  # 30 vox, score 24
    u[28, 28, 28] = 0.99  # single voxel: below min_size
    return u


def test_regions_are_ranked_by_size_times_mean_uncertainty():
    regions = find_regions(planted(), threshold=0.2, min_size=5)
    assert [r.id for r in regions] == [1, 2, 3]
    assert [r.size for r in regions] == [216, 30, 8]
    scores = [r.score for r in regions]
    assert scores == sorted(scores, reverse=True)
    assert regions[0].mean_uncertainty == pytest.approx(0.4, abs=1e-3)
    assert regions[2].max_uncertainty == pytest.approx(0.95, abs=1e-3)


def test_threshold_and_min_size_filter_regions():
    assert [r.size for r in find_regions(planted(), threshold=0.5, min_size=5)] == [30, 8]
    assert [r.size for r in find_regions(planted(), threshold=0.5, min_size=1)] == [30, 8, 1]
    assert find_regions(np.zeros((5, 5, 5), np.float32)) == []
    assert len(find_regions(planted(), threshold=0.2, max_regions=1)) == 1
    assert [r.size for r in find_regions(planted())] == [30, 8]  # default threshold 0.5


def test_region_positions_use_the_affine():
    affine = np.array([[-2.0, 0, 0, 100], [0, -2.0, 0, 50], [0, 0, 3.0, -20], [0, 0, 0, 1]])  # LPS-like
    r = find_regions(planted(), affine=affine, threshold=0.2)[0]
    assert r.bbox == ((10, 10, 10), (16, 16, 16))
    assert r.centroid_voxel == pytest.approx((12.5, 12.5, 12.5))
    assert r.centroid_mm == pytest.approx((100 - 25.0, 50 - 25.0, -20 + 37.5))
    assert r.volume_mm3 == pytest.approx(216 * 12.0)


def test_regions_round_trip_through_json():
    regions = find_regions(planted(), threshold=0.2)
    again = [Region.from_dict(d) for d in json.loads(json.dumps([r.to_dict() for r in regions]))]
    assert again == regions


def test_diagonal_neighbours_form_one_region():
    u = np.zeros((6, 6, 6), np.float32)
    for k in range(5):
        u[k, k, k] = 0.9
    assert [r.size for r in find_regions(u, min_size=1)] == [5]


def test_a_long_uncertain_sheet_is_split_into_compact_places_around_its_peaks():
    # a 3-voxel-thick sheet 40 voxels long (like the shell along a structure's boundary), two peaks
    u = np.zeros((48, 12, 12), np.float32)
    i = np.arange(40)
    u[4:44, 4:7, 4:8] = (
        0.75 + 0.2 * np.exp(-(((i - 8) / 5.0) ** 2)) + 0.2 * np.exp(-(((i - 32) / 5.0) ** 2))
    )[:, None, None]
    whole = find_regions(u, threshold=0.7, split_size=None)
    assert [r.size for r in whole] == [40 * 3 * 4]
    parts = find_regions(u, threshold=0.7, split_size=12)
    assert len(parts) >= 2
    assert sum(r.size for r in parts) == 40 * 3 * 4  # every voxel still belongs to a region
    assert all(r.bbox[1][0] - r.bbox[0][0] < 40 for r in parts)
    peaks = sorted(round(r.centroid_voxel[0]) for r in parts[:2])
    assert abs(peaks[0] - 12) <= 6 and abs(peaks[1] - 36) <= 6  # one place around each peak (4 + 8, 4 + 32)


def test_region_labels_number_the_regions_without_gaps():
    from napari_medseg.inference.regions import region_labels

    labels, n = region_labels(planted(), threshold=0.2, min_size=5)
    assert n == 3 and sorted(np.unique(labels).tolist()) == [0, 1, 2, 3]
