"""Build a network by architecture name from a JSON-able config (what a model card stores)."""

from __future__ import annotations

from typing import Any

from torch import nn

from napari_medseg.models.bsnet import BSNET_DEFAULTS, bsnet_config, build_bsnet
from napari_medseg.models.limits import check_network_config
from napari_medseg.models.unetr import UNETR_DEFAULTS, build_unetr, unetr_config

#: Architectures ``build_network`` knows.
ARCHITECTURES = ("unetr", "bsnet")


def default_config(arch: str) -> dict[str, Any]:
    """The default config of ``arch`` (a copy; sequences as lists, ready for JSON)."""
    defaults = {"unetr": UNETR_DEFAULTS, "bsnet": BSNET_DEFAULTS}.get(arch)
    if defaults is None:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return _jsonable(defaults)


def full_config(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` completed with the defaults of ``arch`` (JSON-able): what a card records."""
    if arch == "unetr":
        return _jsonable(unetr_config(**config))
    if arch == "bsnet":
        return _jsonable(bsnet_config(**config))
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


def build_network(arch: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Build ``"unetr"`` or ``"bsnet"`` from ``config`` (missing keys take the defaults).

    The returned module carries ``medseg_arch`` and ``medseg_config`` (full config) attributes that
    ``checkpoint.save_network`` writes into the model card.

    Raises:
        ValueError: unknown architecture, invalid config, or one beyond :mod:`~napari_medseg.models.limits`.
    """
    config = dict(config or {})
    check_network_config(arch, full_config(arch, config))  # before any allocation
    if arch == "unetr":
        net: nn.Module = build_unetr(**config)
    elif arch == "bsnet":
        net = build_bsnet(**config)
    else:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    net.medseg_arch = arch
    net.medseg_config = full_config(arch, config)
    return net


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
