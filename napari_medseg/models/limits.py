"""Upper bounds on model configs, checked before any tensor is allocated.

A model folder comes from outside (a colleague, a download): its card could claim a network that
would allocate until the machine runs out of memory, or a patch size that makes no sense. These
checks turn such a card into one ``ValueError`` sentence (the loaders wrap it in
:class:`~napari_medseg.errors.CheckpointError`).
"""

from __future__ import annotations

from typing import Any

#: Largest number of parameters a network may have (1e9: 4 GB of float32 weights).
MAX_PARAMETERS = 1_000_000_000
#: Largest patch / UNETR input edge (voxels), and largest patch volume (voxels).
MAX_PATCH_EDGE = 512
MAX_PATCH_VOXELS = 256**3
#: Largest channel count of any layer, and largest number of classes.
MAX_WIDTH = 4096
MAX_CLASSES = 1024


def _ints(value: Any, name: str, n: int | None = None) -> list[int]:
    if not isinstance(value, list | tuple) or (n is not None and len(value) != n):
        raise ValueError(f"{name} must be a list of {n or 'some'} integers, got {value!r:.80}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v:
            raise ValueError(f"{name} must hold integers, got {value!r:.80}")
        out.append(int(v))
    return out


def check_patch_size(patch: Any, name: str = "patch_size") -> tuple[int, int, int]:
    """``(D, H, W)`` of positive integers, each at most :data:`MAX_PATCH_EDGE`, else ``ValueError``."""
    dims = _ints(patch, name, 3)
    if any(d < 1 or d > MAX_PATCH_EDGE for d in dims):
        raise ValueError(f"{name} {dims} must have three sizes between 1 and {MAX_PATCH_EDGE} voxels")
    if dims[0] * dims[1] * dims[2] > MAX_PATCH_VOXELS:
        raise ValueError(f"{name} {dims} is larger than {MAX_PATCH_VOXELS} voxels")
    return dims[0], dims[1], dims[2]


def _width(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WIDTH:
        raise ValueError(f"{name} must be an integer between 1 and {MAX_WIDTH}, got {value!r:.40}")
    return value


def estimated_parameters(arch: str, config: dict[str, Any]) -> int:
    """Rough parameter count of a network from its full config (upper-bound style, no allocation)."""
    if arch == "unetr":
        h, m, f = config["hidden_size"], config["mlp_dim"], config["feature_size"]
        vit = 12 * (4 * h * h + 2 * h * m) + 16**3 * config["in_channels"] * h
        decoder = 27 * (h * f * 8 + 64 * f * f * 4) * 4
        return int(vit + decoder)
    widths = list(config["filters"]) + list(config["boundary_filters"])
    return int(sum(27 * w * w * 6 for w in widths))


def check_network_config(arch: str, config: dict[str, Any]) -> None:
    """Refuse a full network config (see ``factory.full_config``) that is out of bounds."""
    _width(config.get("in_channels"), "in_channels")
    out = config.get("out_channels")
    if isinstance(out, bool) or not isinstance(out, int) or not 2 <= out <= MAX_CLASSES:
        raise ValueError(f"out_channels must be an integer between 2 and {MAX_CLASSES}, got {out!r:.40}")
    if arch == "unetr":
        check_patch_size(config["img_size"], "img_size")
        for key in ("feature_size", "hidden_size", "mlp_dim", "num_heads"):
            _width(config.get(key), key)
    elif arch == "bsnet":
        for key in ("filters", "boundary_filters"):
            values = _ints(config[key], key)
            if not 1 <= len(values) <= 8:
                raise ValueError(f"{key} must list 1 to 8 widths, got {len(values)}")
            for v in values:
                _width(v, key)
    n = estimated_parameters(arch, config)
    if n > MAX_PARAMETERS:
        raise ValueError(
            f"the {arch} config describes about {n:,} parameters (more than {MAX_PARAMETERS:,}); refusing to build it"
        )
