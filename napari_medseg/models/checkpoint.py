"""Network checkpoints: ``<stem>.safetensors`` weights + ``<stem>.json`` model card.

Weights are stored with safetensors (no code execution on load); pickled checkpoints (``.pt``,
``.pth``, ``.ckpt``...) are refused, and ``torch.load`` is never called. The card records the
architecture, its full config and the SHA-256 of the weights file, which ``load_network`` checks
before building the network and loading the weights with ``strict=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from napari_medseg.errors import CheckpointError
from napari_medseg.io.atomic import atomic_path, atomic_write_bytes
from napari_medseg.models.card import make_card, require_keys, sha256_file

WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
#: Suffixes of pickle-based checkpoints, refused on sight.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _stem(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path.name} is a pickled PyTorch checkpoint, which can run arbitrary code; "
            "only .safetensors weights with a .json card are accepted"
        )
    if path.suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX):
        return path.with_suffix("")
    return path


def weights_path(stem: str | Path) -> Path:
    """``<stem>.safetensors``."""
    stem = _stem(stem)
    return stem.with_name(stem.name + WEIGHTS_SUFFIX)


def card_path(stem: str | Path) -> Path:
    """``<stem>.json``."""
    stem = _stem(stem)
    return stem.with_name(stem.name + CARD_SUFFIX)


def save_network(
    net: nn.Module, card: dict[str, Any] | None, stem: str | Path, dtype: torch.dtype | None = None
) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; return the card path.

    Args:
        net: a network from ``factory.build_network`` (or any module when ``card`` has ``arch``
            and ``config``).
        card: model card (``card.make_card``); None makes a minimal one from the network's
            ``medseg_arch``/``medseg_config``. ``arch``/``config`` are filled from the network
            when missing. The written card adds ``weights: {file, sha256, dtype}``.
        stem: path without suffix.
        dtype: store floating tensors in this dtype (``torch.float16`` for bundled weights);
            None keeps them as they are. Loading casts back to float32.
    """
    card = dict(card or {})
    arch = card.get("arch", getattr(net, "medseg_arch", None))
    config = card.get("config", getattr(net, "medseg_config", None))
    if arch is None or config is None:
        raise CheckpointError("cannot save a network without its architecture and config in the card")
    if "format" not in card:
        card = {**make_card(arch, config), **card}
    card["arch"], card["config"] = arch, config
    tensors = {}
    for name, value in net.state_dict().items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[name] = value.contiguous().clone()
    w_path, c_path = weights_path(stem), card_path(stem)
    with atomic_path(w_path) as tmp:
        save_file(tensors, str(tmp), metadata={"arch": arch, "format": "napari-medseg"})
    stored = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    card["weights"] = {
        "file": w_path.name,
        "sha256": sha256_file(w_path),
        "dtype": str(stored).removeprefix("torch."),
    }
    atomic_write_bytes(c_path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return c_path


def read_card(stem: str | Path) -> dict[str, Any]:
    """Read and minimally validate ``<stem>.json`` (CheckpointError if missing or unreadable)."""
    c_path = card_path(stem)
    if not c_path.is_file():
        raise CheckpointError(f"model card {c_path} not found")
    try:
        card = json.loads(c_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"model card {c_path} is not valid JSON ({err})") from None
    require_keys(card, ("arch", "config", "weights"), f"model card {c_path.name}")
    require_keys(card["weights"], ("sha256",), f"'weights' entry of {c_path.name}")
    return card


def load_network(stem: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a network saved by ``save_network``: ``(net in eval mode, float32, on device; card)``.

    Raises:
        CheckpointError: missing card or weights, a pickled checkpoint, weights whose SHA-256 differs
            from the card (tampered or replaced), or weights that do not fit the card's architecture.
    """
    from napari_medseg.models.factory import build_network

    stem = _stem(stem)
    card = read_card(stem)
    w_path = weights_path(stem)
    if not w_path.is_file():
        pickled = [stem.with_name(stem.name + s) for s in PICKLE_SUFFIXES]
        if any(p.is_file() for p in pickled):
            raise CheckpointError(
                f"{stem.name} has only a pickled checkpoint, which is refused; convert it to .safetensors"
            )
        raise CheckpointError(f"weights file {w_path} not found")
    actual = sha256_file(w_path)
    if actual != card["weights"]["sha256"]:
        raise CheckpointError(
            f"weights file {w_path.name} does not match its card (sha256 {actual[:12]} != "
            f"{str(card['weights']['sha256'])[:12]}): it was modified or replaced"
        )
    try:
        state = load_file(str(w_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{w_path.name} is not a readable safetensors file ({err})") from None
    try:
        net = build_network(card["arch"], card["config"])
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"model card {stem.name}.json has an invalid network config: {err}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise CheckpointError(
            f"weights {w_path.name} do not fit the {card['arch']} architecture in its card: {detail}"
        ) from None
    return net.to(device).eval(), card


def dtype_from_name(name: str) -> torch.dtype:
    """``"float16"`` -> ``torch.float16`` (ValueError for unknown names)."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown weights dtype {name!r}; use one of {', '.join(_DTYPES)}") from None
