"""Model cards: the JSON written next to every weights file, saying how the model was made.

A network card (``<stem>.json``) holds::

    format, arch, config (full network config), classes {"0": "background", ...},
    preprocessing {"scheme": "zscore"}, patch_size [D, H, W], training {data, split, ...},
    metrics {...}, parent_model, code_version, created_utc,
    weights {file, sha256, dtype}     (filled in by checkpoint.save_network)

Classes are stored with string keys (JSON) and read back as ``dict[int, str]`` by ``card_classes``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import napari_medseg
from napari_medseg.errors import CheckpointError

CARD_FORMAT = "napari-medseg/network-card/1"
PAIR_FORMAT = "napari-medseg/model-pair/1"

#: Default classes of the hippocampus task.
HIPPO_CLASSES: dict[int, str] = {0: "background", 1: "anterior", 2: "posterior"}


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds (``2026-11-23T19:40:00Z``)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def code_version() -> str:
    """``git describe --always --dirty`` of the checkout holding the package, else the package version."""
    repo = Path(napari_medseg.__file__).resolve().parent.parent
    if not (repo / ".git").exists():  # an installed package: do not describe an unrelated repository
        return napari_medseg.__version__
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        described = out.stdout.strip()
        if described:
            return f"{napari_medseg.__version__}+g{described}"
    except (OSError, subprocess.SubprocessError):
        pass
    return napari_medseg.__version__


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_card(
    arch: str,
    config: dict[str, Any],
    classes: dict[int, str] | None = None,
    patch_size: tuple[int, ...] | list[int] | None = None,
    preprocessing: str | dict[str, Any] = "zscore",
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    parent_model: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A network card (JSON-able dict); ``weights`` is added by ``save_network``.

    Args:
        arch: ``"unetr"`` or ``"bsnet"``.
        config: the network config (completed with defaults by ``factory.full_config``).
        classes: label value -> name (default: hippocampus classes).
        patch_size: training patch (D, H, W) voxels; default: UNETR ``img_size`` if present.
        preprocessing: scheme name of ``normalize_intensity`` or a dict with a ``scheme`` key.
        training: data set, split, epochs, command, ... (free form).
        metrics: held-out metrics (free form, e.g. ``{"dice_mean": 0.87}``).
        parent_model: ``model_id`` this model was fine-tuned from, or None.
        extra: further keys stored as given.
    """
    from napari_medseg.models.factory import full_config

    config = full_config(arch, config)
    if patch_size is None and "img_size" in config:
        patch_size = config["img_size"]
    if isinstance(preprocessing, str):
        preprocessing = {"scheme": preprocessing}
    return {
        "format": CARD_FORMAT,
        "arch": arch,
        "config": config,
        "classes": {str(k): v for k, v in (classes or HIPPO_CLASSES).items()},
        "preprocessing": dict(preprocessing),
        "patch_size": [int(s) for s in patch_size] if patch_size is not None else None,
        "training": dict(training or {}),
        "metrics": dict(metrics or {}),
        "parent_model": parent_model,
        "code_version": code_version(),
        "created_utc": utc_now(),
        **extra,
    }


def card_classes(card: dict[str, Any]) -> dict[int, str]:
    """The card's classes as ``{label value: name}``."""
    try:
        return {int(k): str(v) for k, v in card["classes"].items()}
    except (KeyError, AttributeError, ValueError) as err:
        raise CheckpointError(f"model card has no valid 'classes' mapping ({err})") from None


def require_keys(card: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    """Raise ``CheckpointError`` naming the first of ``keys`` missing from ``card``."""
    if not isinstance(card, dict):
        raise CheckpointError(f"{what} is not a JSON object")
    for key in keys:
        if key not in card:
            raise CheckpointError(f"{what} lacks the required key {key!r}")
