"""Pair uncertainty: zero where the nets agree, high where a planted disagreement is, band, score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from napari_medseg.inference.engine import predict_volume
from napari_medseg.inference.uncertainty import (
    DEFAULT_METHOD,
    boundary_band,
    boundary_mask,
    capped_entropy,
    case_score,
    js_divergence,
    normalised_entropy,
    pair_disagreement,
    pair_maps,
    pair_uncertainty,
    total_variation,
)
from napari_medseg.io.volume import Volume
from napari_medseg.models.pair import ModelPair

SHAPE = (32, 32, 32)


class FixedNet(nn.Module):
    """A "network" whose logits are fixed: confident one-hot of ``labels`` (shape = the roi)."""

    def __init__(self, labels: np.ndarray, classes: int = 3, confidence: float = 12.0) -> None:
        super().__init__()
        onehot = torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.long), classes)
        self.register_buffer("logits", confidence * onehot.permute(3, 0, 1, 2).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], *self.logits.shape).clone()


def structure() -> np.ndarray:
    """Two touching boxes: class 1 and class 2, in a 32^3 volume."""
    lab = np.zeros(SHAPE, dtype=np.int64)
    lab[8:24, 8:24, 6:16] = 1
    lab[8:24, 8:24, 16:26] = 2
    return lab


def fixed_pair(labels_a: np.ndarray, labels_b: np.ndarray) -> ModelPair:
    card = {
        "model_id": "fixed-pair",
        "nets": ["unetr", "bsnet"],
        "classes": {"0": "background", "1": "anterior", "2": "posterior"},
        "patch_size": list(SHAPE),
        "preprocessing": {"scheme": "zscore"},
    }
    return ModelPair({"unetr": FixedNet(labels_a), "bsnet": FixedNet(labels_b)}, card)


@pytest.fixture(scope="module")
def volume() -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.normal(size=SHAPE).astype(np.float32), np.diag([1.5, 1.5, 2.0, 1.0]))


def test_uncertainty_is_zero_where_the_nets_agree(volume):
    lab = structure()
    pred = predict_volume(volume, fixed_pair(lab, lab), device="cpu")
    assert pred.method == DEFAULT_METHOD == "entropy"
    assert float(np.abs(pred.uncertainty.astype(np.float32)).max()) < 1e-3
    assert pred.score < 1e-3
    assert pred.regions == []
    np.testing.assert_array_equal(pred.labels, lab)
    assert pred.band.any()  # the band exists around the boundary even when nothing is uncertain


@pytest.mark.parametrize("method", ["entropy", "jsd", "tv", "jsd_entropy"])
def test_uncertainty_is_high_where_a_disagreement_is_planted(volume, method):
    lab_a = structure()
    lab_b = lab_a.copy()
    lab_b[12:16, 12:16, 20:24] = 0  # B misses a 4^3 cube inside class 2
    pred = predict_volume(volume, fixed_pair(lab_a, lab_b), device="cpu", method=method)
    assert pred.method == method
    u = pred.uncertainty.astype(np.float32)
    planted = np.zeros(SHAPE, dtype=bool)
    planted[12:16, 12:16, 20:24] = True
    assert u[planted].min() > 0.9
    assert u[~planted].max() < 1e-3  # agreement, even right at the class 1 / class 2 interface
    assert pred.band[planted].all()
    assert len(pred.regions) == 1
    region = pred.regions[0]
    assert region.size == planted.sum()
    assert region.bbox == ((12, 12, 20), (16, 16, 24))
    np.testing.assert_allclose(region.centroid_voxel, (13.5, 13.5, 21.5), atol=1e-3)
    np.testing.assert_allclose(region.centroid_mm, (13.5 * 1.5, 13.5 * 1.5, 21.5 * 2.0), atol=1e-3)
    assert pred.score == pytest.approx(u.sum() / (pred.labels > 0).sum(), rel=1e-3)


def test_disagreement_far_from_any_boundary_is_outside_the_band():
    p = torch.zeros(3, *SHAPE)
    p[0] = 1.0  # both nets: all background -> no boundary anywhere
    q = p.clone()
    q[:, 16, 16, 16] = torch.tensor([0.6, 0.4, 0.0])  # soft disagreement, argmax unchanged
    unc, band = pair_uncertainty(p, q, radius=2)
    assert not band.any() and float(unc.max()) == 0.0


def test_single_net_uncertainty_is_softmax_entropy(volume):
    lab = structure()
    net = FixedNet(lab, confidence=0.0)  # uniform softmax everywhere -> maximal entropy
    pred = predict_volume(volume, net, roi=SHAPE, device="cpu")
    assert pred.method == "entropy"
    np.testing.assert_allclose(pred.uncertainty.astype(np.float32), 1.0, atol=1e-3)


def test_divergences_are_bounded_and_symmetric():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(4, 10, 10, 10) * 3, 0)
    q = torch.softmax(torch.randn(4, 10, 10, 10) * 3, 0)
    for f in (js_divergence, total_variation):  # symmetric divergences
        d = f(p, q)
        assert d.shape == (10, 10, 10)
        assert float(d.min()) >= 0.0 and float(d.max()) <= 1.0
        assert torch.allclose(d, f(q, p), atol=1e-6)
        assert float(f(p, p).max()) < 1e-5
    one = torch.zeros(2, 1, 1, 1)
    one[0] = 1
    other = 1 - one
    assert float(js_divergence(one, other)) == pytest.approx(1.0, abs=1e-4)
    assert float(normalised_entropy(torch.full((4, 1), 0.25))) == pytest.approx(1.0, abs=1e-6)
    even_split = torch.tensor([0.5, 0.5, 0.0, 0.0])[:, None]
    assert float(capped_entropy(even_split)) == pytest.approx(1.0, abs=1e-5)
    assert float(capped_entropy(torch.full((4, 1), 0.25))) == 1.0  # 2 bits, capped
    assert float(capped_entropy(torch.tensor([0.9, 0.1])[:, None])) == pytest.approx(0.469, abs=1e-3)
    assert math.isclose(float(normalised_entropy(one)), 0.0, abs_tol=1e-5)


def test_boundary_band_marks_both_sides_and_grows_with_radius():
    lab = torch.as_tensor(structure())
    edge = boundary_mask(lab)
    assert bool(edge[8, 12, 12]) and bool(edge[7, 12, 12])  # inside and outside the box face
    assert not bool(edge[16, 16, 11]) and not bool(edge[0, 0, 0])
    b1, b3 = boundary_band(lab, None, 1), boundary_band(lab, None, 3)
    assert bool((b1 & ~b3).sum() == 0) and int(b3.sum()) > int(b1.sum())
    assert bool(b3[4, 12, 12]) and not bool(b3[3, 12, 12])


def test_case_score_is_uncertainty_per_foreground_voxel():
    u = torch.zeros(4, 4, 4)
    u[0, 0, :2] = 0.5
    labels = torch.zeros(4, 4, 4, dtype=torch.long)
    labels[1:3, 1:3, 1:3] = 1
    assert case_score(u, labels) == pytest.approx(1.0 / 8)
    assert case_score(u, torch.zeros_like(labels)) == pytest.approx(1.0)


@pytest.mark.parametrize("weight_a", [0.5, 0.3])
def test_pair_maps_equal_the_dense_definition_on_strided_inputs(weight_a):
    # random probabilities with organs (class 1, 2) in a background: settled blocks and a band
    rng = np.random.default_rng(1)
    lab = np.zeros((3, 40, 36, 30), np.float32)
    lab[1, 8:30, 6:20, 5:25] = 6.0
    lab[2, 12:22, 20:30, 8:18] = 6.0
    lab[0] = 3.0
    logits_a = torch.from_numpy(lab + rng.normal(0, 1.5, lab.shape).astype(np.float32))
    logits_b = torch.from_numpy(np.roll(lab, 2, axis=1) + rng.normal(0, 1.5, lab.shape).astype(np.float32))
    p_a, p_b = torch.softmax(logits_a, 0), torch.softmax(logits_b, 0)
    # the same values in a non-contiguous layout (the gather falls back to indexing per box)
    strided_a = p_a.permute(0, 3, 2, 1).contiguous().permute(0, 3, 2, 1)
    labels = (weight_a * p_a + (1 - weight_a) * p_b).argmax(0)
    band = boundary_band(p_a.argmax(0), p_b.argmax(0), 3)
    dense = pair_disagreement(p_a, p_b) * band
    for a in (p_a, strided_a):
        maps = pair_maps(a, p_b, 3, weight_a=weight_a)
        assert not a.is_contiguous() or a is p_a
        assert torch.equal(maps.labels.long(), labels)
        assert torch.equal(maps.band, band)
        assert torch.equal(maps.uncertainty, dense)
        assert torch.equal(maps.band_index, band.reshape(-1).nonzero()[:, 0])
        assert torch.equal(maps.band_values, dense.reshape(-1)[maps.band_index])
        assert maps.foreground == int((labels > 0).sum())
    for dtype in (torch.float16, torch.bfloat16):  # display dtypes, with and without a numpy counterpart
        assert torch.equal(
            pair_maps(p_a, p_b, 3, dtype=dtype, weight_a=weight_a).uncertainty, dense.to(dtype)
        )


@pytest.mark.parametrize("classes", [2, 16, 17, 40])
def test_pair_maps_band_is_exact_for_few_and_many_classes(classes):
    """Up to 16 classes both nets' labels share one byte per voxel for the band; past that two maps:
    either way the band is the dense definition's, at every class boundary."""
    rng = np.random.default_rng(classes)
    shape = (40, 36, 44)
    lab = np.zeros(shape, np.int64)  # cubes of every class in a background: settled blocks around
    i, j, k = np.meshgrid(*(np.arange(n) for n in (24, 20, 28)), indexing="ij")
    lab[8:32, 8:28, 8:36] = 1 + (i // 4 + 3 * (j // 4) + 7 * (k // 4)) % (classes - 1)

    def probs(labels: np.ndarray) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(torch.from_numpy(labels), classes).permute(3, 0, 1, 2)
        noise = torch.from_numpy(rng.normal(0, 1.0, onehot.shape).astype(np.float32))
        return torch.softmax(onehot.float() * 5.0 + noise, 0)

    lab_b = np.roll(lab, 1, axis=1)
    lab_b[lab_b > 0] = classes - lab_b[lab_b > 0]  # B numbers the classes backwards: a + b is constant
    p_a, p_b = probs(lab), probs(lab_b)
    assert len(p_a.argmax(0).unique()) == classes
    for radius in (0, 1):  # radius 0: the boundary voxels themselves, where a missed edge would show
        band = boundary_band(p_a.argmax(0), p_b.argmax(0), radius)
        assert band.any() and not band.all()
        assert torch.equal(pair_maps(p_a, p_b, radius).band, band)
    band = boundary_band(p_a.argmax(0), p_b.argmax(0), 3)
    maps = pair_maps(p_a, p_b, 3)
    assert torch.equal(maps.band, band)
    assert torch.equal(maps.labels.long(), (p_a + p_b).argmax(0))
    # the class sums run in another order on the gathered band voxels than on the dense layout
    dense = pair_disagreement(p_a, p_b) * band
    torch.testing.assert_close(maps.uncertainty, dense, rtol=0, atol=1e-6)
    assert torch.equal(maps.uncertainty > 0, dense > 0)


def test_pair_maps_on_box_threads_equal_one_thread_and_restore_torch_threads():
    """With several torch threads the boxes run on as many Python threads (one torch thread each):
    same maps as on one thread, in and out of inference mode, and torch's thread count comes back."""
    rng = np.random.default_rng(3)
    lab = np.zeros((3, 72, 40, 36), np.float32)  # several slabs of blocks along the first axis: many boxes
    lab[1, 6:66, 8:30, 5:30] = 6.0
    lab[2, 20:50, 20:34, 8:20] = 6.0
    lab[0] = 3.0
    p_a = torch.softmax(torch.from_numpy(lab + rng.normal(0, 1.5, lab.shape).astype(np.float32)), 0)
    p_b = torch.softmax(
        torch.from_numpy(np.roll(lab, 2, axis=1) + rng.normal(0, 1.5, lab.shape).astype(np.float32)), 0
    )
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = pair_maps(p_a, p_b, 3, weight_a=0.3)
        torch.set_num_threads(2)
        with torch.inference_mode():
            threaded = pair_maps(p_a, p_b, 3, weight_a=0.3)
        assert torch.get_num_threads() == 2
        plain = pair_maps(p_a, p_b, 3, weight_a=0.3)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    for maps in (threaded, plain):
        for field in ("labels", "uncertainty", "band", "band_index", "band_values"):
            assert torch.equal(getattr(maps, field), getattr(serial, field)), field
        assert maps.foreground == serial.foreground
    assert threaded.labels.is_inference() and not plain.labels.is_inference()
