"""Choice of the torch device that runs inference, and of its precision.

``"auto"`` picks CUDA, then Apple's MPS, then the CPU. An explicit ``"cuda"`` / ``"mps"`` that is not
available is a user error (:class:`~napari_medseg.errors.InputError`), not a silent fallback.

Networks run under bf16 autocast where the device computes bf16 natively (:func:`native_bf16`): CUDA
GPUs, and CPUs with AVX512-BF16 or AMX, where oneDNN's bf16 convolutions and matrix products halve the
time of a window (bench/RESULTS.md, issue 10 session 7); elsewhere bf16 is emulated and slower, so
those run in float32.
"""

from __future__ import annotations

import os

import torch

from napari_medseg.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    """True when PyTorch's Apple-silicon backend can be used."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda[:n]" | "mps"`` (or a ``torch.device``) into an available device.

    Raises:
        InputError: the requested accelerator is not available on this machine.
    """
    if isinstance(device, torch.device):
        device = str(device)
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto.")
        return torch.device(name)
    if name == "mps":
        if not mps_available():
            raise InputError(
                "MPS was requested but is not available on this machine; use --device cpu or auto."
            )
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}.")


def free_memory_bytes(device: torch.device) -> int | None:
    """Free accelerator memory in bytes (CUDA only; ``None`` for CPU/MPS where it is not measured)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None


#: Set to ``0`` to keep CPU inference and training in float32 even where the CPU has native bf16.
CPU_BF16_ENV = "MEDSEG_CPU_BF16"


def native_bf16(device: torch.device) -> bool:
    """True when bf16 autocast runs natively on ``device``: a CUDA GPU that supports bf16, or a CPU with
    AVX512-BF16 or AMX tiles (unless :data:`CPU_BF16_ENV` is ``0``). MPS and other CPUs: False."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu" or os.environ.get(CPU_BF16_ENV, "").strip() == "0":
        return False
    # private probes of torch.cpu (present since torch 2.3); a torch without them gets float32
    probes = [
        getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    ]
    return any(bool(probe()) for probe in probes if probe is not None)
