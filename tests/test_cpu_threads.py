"""Torch work on Python threads (one torch thread each) instead of OpenMP threads, on the CPU only."""

from __future__ import annotations

import numpy as np
import torch
from test_inference_engine import tiny_net

from napari_medseg.inference.cpu_threads import python_threads
from napari_medseg.inference.engine import predict_volume, window_grid
from napari_medseg.io.volume import Volume


def test_python_threads_only_on_a_cpu_with_threads_to_share(monkeypatch):
    cpu = torch.device("cpu")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with python_threads(cpu, 3) as workers:
            assert workers is not None and workers.count == 2
            assert torch.get_num_threads() == 1  # one torch thread per op inside
            assert workers.map(lambda n: n * 2, [1, 2, 3]) == [2, 4, 6]
            with python_threads(cpu, 3) as nested:  # a block inside another keeps the saved count
                assert nested is not None and nested.count == 2
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with python_threads(cpu, 1) as workers:  # one piece: nothing to share
            assert workers is None and torch.get_num_threads() == 2
        with python_threads(torch.device("meta"), 3) as workers:  # not a CPU
            assert workers is None
        monkeypatch.setenv("OMP_WAIT_POLICY", "active")  # spinning OpenMP workers: the threads would starve
        with python_threads(cpu, 3) as workers:
            assert workers is None and torch.get_num_threads() == 2
        torch.set_num_threads(1)
        monkeypatch.delenv("OMP_WAIT_POLICY")
        with python_threads(cpu, 3) as workers:  # one torch thread: one Python thread
            assert workers is None
    finally:
        torch.set_num_threads(before)


def test_windows_on_threads_equal_windows_in_order():
    """The engine's windows side by side on two Python threads blend to what one thread gives."""
    rng = np.random.default_rng(4)
    volume = Volume(rng.normal(size=(40, 36, 30)).astype(np.float32), np.eye(4))
    assert len(window_grid(volume.shape, (16, 16, 16), 0.5)[2]) > 20
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = predict_volume(volume, tiny_net(3), roi=(16, 16, 16), amp=False)
        torch.set_num_threads(2)
        done: list[int] = []
        threaded = predict_volume(
            volume, tiny_net(3), roi=(16, 16, 16), amp=False, progress=lambda d, t: done.append(d)
        )
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert done == sorted(done) and done[-1] == len(window_grid(volume.shape, (16, 16, 16), 0.5)[2])
    np.testing.assert_array_equal(threaded.labels, serial.labels)
    assert serial.probs
    for name, p in serial.probs.items():
        np.testing.assert_allclose(threaded.probs[name], p, rtol=0, atol=1e-3)
