"""Choice of the torch device that runs inference.

``"auto"`` picks CUDA, then Apple's MPS, then the CPU. An explicit ``"cuda"`` / ``"mps"`` that is not
available is a user error (:class:`~napari_medseg.errors.InputError`), not a silent fallback.
"""

from __future__ import annotations

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
