"""bf16 autocast where the device computes it natively (CUDA; CPUs with AVX512-BF16 or AMX), float32 elsewhere.

Every other test runs in float32 (conftest sets ``MEDSEG_CPU_BF16=0``); these tests lift that switch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_medseg.inference import engine
from napari_medseg.inference.device import CPU_BF16_ENV, native_bf16
from napari_medseg.io.volume import Volume

CPU = torch.device("cpu")


def _cpu_probes(monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "native"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_a_cpu_is_native_bf16_when_it_has_amx_or_avx512_bf16(monkeypatch, amx, avx512_bf16, native):
    monkeypatch.delenv(CPU_BF16_ENV)
    _cpu_probes(monkeypatch, amx, avx512_bf16)
    assert native_bf16(CPU) is native


def test_the_switch_keeps_a_bf16_cpu_in_float32_and_other_devices_never_autocast(monkeypatch):
    _cpu_probes(monkeypatch, True, True)
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert native_bf16(CPU) is False
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert native_bf16(CPU) is True
    assert native_bf16(torch.device("meta")) is False  # neither CUDA nor a CPU (MPS is treated alike)


class _Recorder(nn.Module):
    """A small conv net that records whether CPU autocast was on, and in which dtype, at each forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(1, 3, 3, padding=1)
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.is_autocast_enabled("cpu"), self.conv(x).dtype))
        return self.conv(x)


@pytest.mark.parametrize(
    ("native", "amp", "precision"), [(True, True, "bf16"), (True, False, "fp32"), (False, True, "fp32")]
)
def test_the_engine_autocasts_only_where_bf16_is_native_and_says_so(monkeypatch, native, amp, precision):
    monkeypatch.setattr(engine, "native_bf16", lambda device: native)
    vol = Volume(np.random.default_rng(0).normal(size=(20, 24, 20)).astype(np.float32), np.eye(4))
    net = _Recorder()
    pred = engine.predict_volume(vol, net, roi=(16, 16, 16), device="cpu", overlap=0.25, amp=amp)
    assert pred.precision == precision and pred.summary()["precision"] == precision
    want = (True, torch.bfloat16) if precision == "bf16" else (False, torch.float32)
    assert net.seen and all(s == want for s in net.seen)
    # whatever the nets ran in, the blended probabilities are float32 and sum to one
    probs = pred.probs["net"].astype(np.float32)
    assert np.allclose(probs.sum(0), 1.0, atol=2e-3)


#: This machine's own answer (the switch is not set while tests are collected).
HAS_NATIVE_BF16 = native_bf16(CPU)


@pytest.mark.skipif(not HAS_NATIVE_BF16, reason="this CPU has no native bf16 (AMX or AVX512-BF16)")
def test_bf16_proposal_of_the_bundled_pair_matches_float32_on_a_real_case(monkeypatch, hippo_cases):
    """On a CPU with native bf16 the shipped pair's proposal and map barely move (measured on the 40
    validation cases: pair Dice 0.88688 vs 0.88685, AUROC 0.9834 vs 0.9835; bench/RESULTS.md)."""
    from napari_medseg.bundled import default_model_dir
    from napari_medseg.io import load_labels, load_volume
    from napari_medseg.models.pair import ModelPair

    pair = ModelPair.load(default_model_dir())
    image, label = hippo_cases[0]
    vol = load_volume(image)
    truth = load_labels(label, reference=vol).array
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    fp32 = engine.predict_volume(vol, pair, device="cpu")
    monkeypatch.delenv(CPU_BF16_ENV)
    bf16 = engine.predict_volume(vol, pair, device="cpu")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert not np.array_equal(fp32.probs["unetr"], bf16.probs["unetr"])  # bf16 really ran
    assert (fp32.labels == bf16.labels).mean() > 0.995

    def dice(pred: np.ndarray, c: int) -> float:
        return 2 * float(((pred == c) & (truth == c)).sum()) / float((pred == c).sum() + (truth == c).sum())

    for c in (1, 2):
        assert abs(dice(fp32.labels, c) - dice(bf16.labels, c)) < 0.01
    assert abs(fp32.score - bf16.score) < 0.05 * fp32.score


@pytest.mark.parametrize("native", [True, False])
def test_the_trainer_autocasts_only_where_bf16_is_native_and_the_card_says_so(
    monkeypatch, hippo_dir, tmp_path, native
):
    from conftest import tiny_bsnet_trainer

    from napari_medseg.training import cocorrecting

    monkeypatch.setattr(cocorrecting, "native_bf16", lambda device: native)
    tr = tiny_bsnet_trainer(hippo_dir, tmp_path, n_train=2, batch_size=2, epochs=1)
    seen: list[bool] = []
    tr.models["bsnet"].register_forward_pre_hook(
        lambda module, args: seen.append(torch.is_autocast_enabled("cpu"))
    )
    tr.train_epoch(0)
    assert seen and all(s is native for s in seen)
    assert tr.model_pair().card["training"]["precision"] == ("bf16" if native else "fp32")
