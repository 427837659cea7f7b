"""Sliding-window engine: MONAI-equivalent blending, shapes, progress, cancel, OOM fallback, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from napari_medseg.errors import Cancelled, InputError
from napari_medseg.inference.cancel import CancelToken
from napari_medseg.inference.device import resolve_device
from napari_medseg.inference.engine import predict_volume, sliding_window_probs, window_grid
from napari_medseg.io.volume import Volume


def tiny_net(seed: int, classes: int = 3) -> nn.Module:
    """A small random conv net with the forward contract (B, 1, D, H, W) -> (B, C, D, H, W)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, classes, 3, padding=1)).eval()


class CountingNet(nn.Module):
    """Wraps a net, counting forward calls; optionally raises CUDA-style OOM on the first ``fail`` calls."""

    def __init__(self, inner: nn.Module, fail: int = 0) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.fail = fail
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls <= self.fail:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        self.batch_sizes.append(int(x.shape[0]))
        return self.inner(x)


@pytest.fixture(scope="module")
def hippo_volume(hippo_cases) -> Volume:
    import nibabel as nib

    img = nib.load(hippo_cases[0][0]).slicer[:24, 8:40, :24]  # a real 24 x 32 x 24 crop keeps tests fast
    return Volume(np.asarray(img.dataobj, dtype=np.float32), img.affine)


def test_blending_matches_monai_sliding_window_inference(hippo_volume):
    net = tiny_net(0)
    x = torch.from_numpy((hippo_volume.array - hippo_volume.array.mean()) / hippo_volume.array.std())[
        None, None
    ]
    roi = (24, 24, 24)
    ours, _ = sliding_window_probs(x, [net], roi, overlap=0.5, device="cpu", sw_batch_size=3)
    with torch.inference_mode():
        ref = sliding_window_inference(
            x, roi, 3, lambda p: torch.softmax(net(p), 1), overlap=0.5, mode="gaussian", sigma_scale=0.125
        )[0]
    assert ours.shape == ref.shape == (3, *hippo_volume.shape)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_pair_probabilities_are_concatenated_per_net(hippo_volume):
    a, b = tiny_net(1), tiny_net(2)
    x = torch.randn(1, 1, 20, 30, 25)
    both, _ = sliding_window_probs(x, [a, b], (16, 16, 16), overlap=0.25, sw_batch_size=2)
    only_b, _ = sliding_window_probs(x, [b], (16, 16, 16), overlap=0.25, sw_batch_size=2)
    assert both.shape == (6, 20, 30, 25)
    assert torch.allclose(both[3:], only_b, atol=1e-6)
    assert torch.allclose(both[:3].sum(0), torch.ones(20, 30, 25), atol=1e-5)


def test_volume_smaller_than_roi_is_padded_and_cropped_back():
    padded, pads, slices = window_grid((35, 51, 35), (48, 64, 48), 0.5)
    assert padded == (48, 64, 48) and len(slices) == 1
    assert pads == [(6, 7), (6, 7), (6, 7)]
    vol = Volume(np.random.default_rng(0).normal(size=(35, 51, 35)).astype(np.float32), np.eye(4))
    pred = predict_volume(vol, tiny_net(3), roi=(48, 64, 48), device="cpu")
    assert pred.labels.shape == vol.shape and pred.labels.dtype == np.uint8
    assert pred.uncertainty.shape == vol.shape and pred.uncertainty.dtype == np.float16
    assert pred.method == "entropy" and pred.probs["net"].shape == (3, *vol.shape)


def test_progress_reports_every_batch(hippo_volume):
    seen = []
    predict_volume(
        hippo_volume,
        tiny_net(4),
        roi=(16, 16, 16),
        overlap=0.0,
        sw_batch_size=3,
        progress=lambda d, t: seen.append((d, t)),
    )
    total = seen[-1][1]
    assert total == 2 * 2 * 2  # ceil(24/16), ceil(32/16), ceil(24/16) windows
    assert seen == [(3, 8), (6, 8), (8, 8)]


def test_cancel_stops_within_one_batch(hippo_volume):
    """On the CPU the batches run side by side, one per torch thread: those running when cancel was
    pressed finish, no other starts (out of 6 batches)."""
    net = CountingNet(tiny_net(5))
    token = CancelToken()
    workers = max(1, torch.get_num_threads())
    with pytest.raises(Cancelled):
        predict_volume(
            hippo_volume,
            net,
            roi=(16, 16, 16),
            sw_batch_size=2,
            cancel=token,
            progress=lambda done, total: token.cancel(),
        )
    assert 1 <= net.calls <= workers


def test_cancel_before_start_runs_nothing(hippo_volume):
    net = CountingNet(tiny_net(5))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        predict_volume(hippo_volume, net, roi=(16, 16, 16), cancel=token)
    assert net.calls == 0


def test_out_of_memory_retries_with_smaller_batch_and_reports_it(hippo_volume):
    reference = predict_volume(hippo_volume, tiny_net(6), roi=(16, 16, 16), sw_batch_size=4)
    flaky = CountingNet(tiny_net(6), fail=1)
    warnings: list[str] = []
    workers = max(1, torch.get_num_threads())  # batches run side by side on the CPU, one per thread
    pred = predict_volume(hippo_volume, flaky, roi=(16, 16, 16), sw_batch_size=4, warn=warnings.append)
    # batches of 4 ran only beside the one that failed (their results dropped); every later one has 2
    assert flaky.batch_sizes.count(4) <= workers - 1 and set(flaky.batch_sizes) <= {2, 4}
    n_windows = len(window_grid(hippo_volume.shape, (16, 16, 16), 0.5)[2])
    assert flaky.batch_sizes.count(2) >= n_windows // 2 - 2 and flaky.batch_sizes[-1] == 2
    assert len(pred.messages) == 1 and "out of memory" in pred.messages[0]
    assert warnings == pred.messages
    np.testing.assert_array_equal(pred.labels, reference.labels)


def test_out_of_memory_with_single_window_on_cpu_is_a_user_error_not_a_crash(hippo_volume):
    always = CountingNet(tiny_net(7), fail=10**6)
    workers = max(1, torch.get_num_threads())
    with pytest.raises(InputError, match="too large for the available memory"):
        predict_volume(hippo_volume, always, roi=(16, 16, 16), sw_batch_size=2)
    # batch 2 (one per thread, side by side), then batch 1, then give up on the CPU
    assert 2 <= always.calls <= workers + 1


def test_other_errors_are_not_swallowed(hippo_volume):
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        predict_volume(hippo_volume, Broken(), roi=(16, 16, 16))


def test_auto_device_falls_back_to_cpu_and_unknown_device_is_refused():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(InputError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            resolve_device("cuda")


def test_bad_overlap_is_refused(hippo_volume):
    with pytest.raises(InputError, match="overlap"):
        predict_volume(hippo_volume, tiny_net(8), roi=(16, 16, 16), overlap=1.0)
