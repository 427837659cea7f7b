"""The block/slab post-processing equals the dense reference on real hippocampus predictions.

The reference below is the previous implementation (dense scipy filters over the whole volume and
regions labelled on the whole volume, long ones split with scikit-image's peaks and watershed as in
``regions_reference.slow_split``), kept here only as a test oracle: labels, band and uncertainty
must match voxel for voxel and the regions one for one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import RESOURCES
from regions_reference import slow_split
from scipy import ndimage

from napari_medseg.commands.evaluate import validation_ids
from napari_medseg.inference.engine import predict_volume, sliding_window_probs
from napari_medseg.inference.regions import find_regions, regions_from_voxels
from napari_medseg.inference.uncertainty import PAIR_METHODS, pair_disagreement, pair_maps
from napari_medseg.io import load_volume
from napari_medseg.models.pair import ModelPair

CONN = np.ones((3, 3, 3), dtype=bool)


def reference_band(labels_a: torch.Tensor, labels_b: torch.Tensor, radius: int) -> torch.Tensor:
    x = torch.stack([labels_a, labels_b]).float().numpy()
    hi = ndimage.maximum_filter(x, size=(1, 3, 3, 3), mode="nearest")
    lo = ndimage.minimum_filter(x, size=(1, 3, 3, 3), mode="nearest")
    edge = (hi != lo).any(0)
    k = 2 * radius + 1
    return torch.from_numpy(ndimage.maximum_filter(edge, size=k, mode="nearest") if radius else edge)


def reference_regions(u: np.ndarray, threshold: float = 0.5, min_size: int = 5, split_size: int = 12) -> list:
    """(size, bbox, mean, centroid) per region, ranked, from labelling the whole volume at once."""
    comp, _ = ndimage.label(u >= threshold, structure=CONN)
    out = np.zeros(u.shape, np.int32)
    count = 0
    for k, box in enumerate(ndimage.find_objects(comp), start=1):
        if box is None:
            continue
        piece = comp[box] == k
        extent = max(s.stop - s.start for s in box)
        parts = slow_split(u[box], piece, split_size // 2) if extent > split_size else piece.astype(np.int32)
        for j in range(1, int(parts.max()) + 1):
            sel = parts == j
            if int(sel.sum()) >= min_size:
                count += 1
                out[box][sel] = count
    found = []
    for k in range(1, count + 1):
        sel = out == k
        size = int(sel.sum())
        mean = float(u[sel].astype(np.float64).sum()) / size
        box = ndimage.find_objects((out == k).astype(np.int32))[0]
        centroid = ndimage.center_of_mass(u, out, k)
        found.append((size * mean, k, size, tuple((s.start, s.stop) for s in box), mean, centroid))
    found.sort(key=lambda t: (-t[0], t[1]))
    return found


@pytest.fixture(scope="module")
def pair_and_cases(hippo_dir):
    pair = ModelPair.load(RESOURCES / "models" / "default")
    ids = validation_ids(pair.card)[:4]
    return pair, [load_volume(hippo_dir / "imagesTr" / f"{c}.nii.gz") for c in ids]


def _probs(pair, volume):
    image = torch.from_numpy(pair.preprocess(volume.array))[None, None]
    nets = [pair.nets["unetr"], pair.nets["bsnet"]]
    probs, _ = sliding_window_probs(image, nets, pair.patch_size, 0.5, "cpu")
    c = probs.shape[0] // 2
    return probs[:c], probs[c:]


def test_labels_band_and_uncertainty_equal_the_dense_reference_on_real_cases(
    pair_and_cases, one_torch_thread
):
    pair, volumes = pair_and_cases
    for volume in volumes:
        p_a, p_b = _probs(pair, volume)
        band = reference_band(p_a.argmax(0), p_b.argmax(0), 3)
        assert band.any()
        for method in PAIR_METHODS:
            maps = pair_maps(p_a, p_b, 3, method)
            assert torch.equal(maps.band, band)
            assert torch.equal(maps.uncertainty, pair_disagreement(p_a, p_b, method) * band)
            assert torch.equal(maps.labels.long(), (p_a + p_b).argmax(0))
            assert maps.foreground == int(((p_a + p_b).argmax(0) > 0).sum())


def test_regions_equal_the_whole_volume_reference_on_real_cases(pair_and_cases, one_torch_thread):
    pair, volumes = pair_and_cases
    n_regions = 0
    for volume in volumes:
        pred = predict_volume(volume, pair, device="cpu", keep_probs=False)
        u = pred.uncertainty.astype(np.float32)
        expected = reference_regions(u)
        for regions in (pred.regions, find_regions(u), find_regions(torch.from_numpy(u))):
            assert [(r.id, r.size) for r in regions] == [(i, e[2]) for i, e in enumerate(expected, start=1)]
            assert [tuple(zip(*r.bbox, strict=True)) for r in regions] == [e[3] for e in expected]
            for r, e in zip(regions, expected, strict=True):
                assert r.mean_uncertainty == pytest.approx(e[4], rel=1e-6)
                assert r.centroid_voxel == pytest.approx(e[5], abs=1e-6)
        n_regions += len(expected)
    assert n_regions >= 4  # the cases do have places to jump to


def test_regions_from_voxels_need_only_the_uncertain_voxels():
    u = np.zeros((40, 50, 60), np.float32)
    u[30:34, 40:45, 50:58] = 0.8
    u[1:3, 1:4, 1:3] = 0.9
    index = np.flatnonzero(u >= 0.5)
    regions = regions_from_voxels(u.shape, index, u.reshape(-1)[index])
    assert regions == find_regions(u)
    assert [r.bbox for r in regions] == [((30, 40, 50), (34, 45, 58)), ((1, 1, 1), (3, 4, 3))]
