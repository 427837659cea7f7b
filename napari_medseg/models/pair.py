"""The model pair used by inference and Co-Correcting training: UNETR (A) + BS-Net (B).

A model directory holds ``pair.json`` (pair card) and one checkpoint per network
(``unetr.safetensors`` + ``unetr.json``, ``bsnet.safetensors`` + ``bsnet.json``)::

    pair.json: format, model_id, nets ["unetr", "bsnet"], classes, patch_size [D, H, W],
               preprocessing {"scheme": ...}, training, metrics, parent_model, code_version,
               created_utc, weights {"unetr": sha256, "bsnet": sha256}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_medseg.errors import CheckpointError
from napari_medseg.io.atomic import atomic_write_bytes
from napari_medseg.models.card import (
    HIPPO_CLASSES,
    PAIR_FORMAT,
    card_classes,
    code_version,
    make_card,
    require_keys,
    utc_now,
)
from napari_medseg.models.checkpoint import load_network, read_card, save_network
from napari_medseg.models.limits import check_patch_size
from napari_medseg.models.preprocessing import normalize_intensity, normalize_tensor

PAIR_CARD = "pair.json"
#: Canonical order: network A, network B.
PAIR_NETS = ("unetr", "bsnet")


class ModelPair:
    """Two peer networks with their shared card (classes, patch size, preprocessing).

    Attributes:
        nets: loaded networks by name (``"unetr"``, ``"bsnet"``), eval mode.
        card: the pair card (``pair.json`` content).
        cards: per-network cards by name.
    """

    def __init__(
        self, nets: dict[str, nn.Module], card: dict[str, Any], cards: dict[str, dict] | None = None
    ):
        if not nets:
            raise ValueError("a ModelPair needs at least one network")
        self.nets = dict(nets)
        self.card = card
        self.cards = dict(cards or {})

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_nets(
        cls,
        nets: dict[str, nn.Module],
        model_id: str,
        classes: dict[int, str] | None = None,
        patch_size: tuple[int, int, int] | None = None,
        preprocessing: str = "zscore",
        training: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        parent_model: str | None = None,
        proposal_weights: dict[str, float] | None = None,
    ) -> ModelPair:
        """Wrap networks from ``factory.build_network`` (e.g. after training) with fresh cards.

        ``patch_size`` defaults to the UNETR ``img_size``. ``metrics`` may hold per-network entries.
        """
        classes = dict(classes or HIPPO_CLASSES)
        if patch_size is None:
            unetr = nets.get("unetr")
            if unetr is None:
                raise ValueError("patch_size is required when the pair has no UNETR")
            patch_size = tuple(unetr.medseg_config["img_size"])
        cards = {
            name: make_card(
                net.medseg_arch,
                net.medseg_config,
                classes=classes,
                patch_size=patch_size,
                preprocessing=preprocessing,
                training=training,
                metrics=metrics,
                parent_model=parent_model,
                model_id=model_id,
            )
            for name, net in nets.items()
        }
        card = {
            "format": PAIR_FORMAT,
            "model_id": model_id,
            "nets": [n for n in PAIR_NETS if n in nets] + [n for n in nets if n not in PAIR_NETS],
            "classes": {str(k): v for k, v in classes.items()},
            "patch_size": [int(s) for s in patch_size],
            "preprocessing": {"scheme": preprocessing},
            "training": dict(training or {}),
            "metrics": dict(metrics or {}),
            "parent_model": parent_model,
            "code_version": code_version(),
            "created_utc": utc_now(),
        }
        if proposal_weights is not None:
            card["proposal_weights"] = {str(k): float(v) for k, v in proposal_weights.items()}
        return cls(nets, card, cards)

    @classmethod
    def load(
        cls, model_dir: str | Path, device: str | torch.device = "cpu", nets: tuple[str, ...] = PAIR_NETS
    ) -> ModelPair:
        """Load ``pair.json`` and the requested networks of ``model_dir`` (CheckpointError on any problem)."""
        model_dir = Path(model_dir)
        pair_path = model_dir / PAIR_CARD
        if not pair_path.is_file():
            raise CheckpointError(f"no model pair in {model_dir} ({PAIR_CARD} not found)")
        try:
            card = json.loads(pair_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{pair_path} is not valid JSON ({err})") from None
        require_keys(card, ("model_id", "nets", "classes", "patch_size", "preprocessing"), PAIR_CARD)
        try:
            check_patch_size(card["patch_size"])
        except ValueError as err:
            raise CheckpointError(f"{pair_path} has an invalid patch size: {err}") from None
        if not isinstance(card["nets"], list) or not all(isinstance(n, str) for n in card["nets"]):
            raise CheckpointError(f"{pair_path}: 'nets' must be a list of network names")
        missing = [n for n in nets if n not in card["nets"]]
        if missing:
            raise CheckpointError(
                f"model {card['model_id']} has no network {missing[0]!r} (has {card['nets']})"
            )
        loaded, cards = {}, {}
        for name in nets:
            loaded[name], cards[name] = load_network(model_dir / name, device)
        expected = card.get("weights", {})
        for name, net_card in cards.items():
            if name in expected and expected[name] != net_card["weights"]["sha256"]:
                raise CheckpointError(
                    f"{name} weights in {model_dir} do not belong to {PAIR_CARD} (hash differs)"
                )
        return cls(loaded, card, cards)

    def save(self, model_dir: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write each network's checkpoint and ``pair.json`` into ``model_dir``; return the folder."""
        model_dir = Path(model_dir)
        weights = {}
        for name, net in self.nets.items():
            save_network(net, self.cards.get(name), model_dir / name, dtype=dtype)
            self.cards[name] = read_card(model_dir / name)
            weights[name] = self.cards[name]["weights"]["sha256"]
        self.card = {**self.card, "weights": {**self.card.get("weights", {}), **weights}}
        atomic_write_bytes(
            model_dir / PAIR_CARD, (json.dumps(self.card, indent=2, sort_keys=True) + "\n").encode()
        )
        return model_dir

    # -- properties -----------------------------------------------------------------------------
    @property
    def classes(self) -> dict[int, str]:
        """Label value -> class name (background included)."""
        return card_classes(self.card)

    @property
    def patch_size(self) -> tuple[int, ...]:
        """Training patch / sliding-window ROI ``(D, H, W)`` in voxels."""
        return tuple(int(s) for s in self.card["patch_size"])

    @property
    def proposal_weights(self) -> dict[str, float]:
        """Weight of each network's probabilities in the pair proposal (sums to 1).

        Picked on the validation cases at training time (card key ``proposal_weights``); equal weights
        for a card without one. The uncertainty map always uses both networks equally.
        """
        names = [n for n in PAIR_NETS if n in self.nets] or list(self.nets)
        given = self.card.get("proposal_weights") or {}
        weights = {n: float(given.get(n, 1.0 if not given else 0.0)) for n in names}
        total = sum(weights.values())
        if total <= 0:
            return {n: 1.0 / len(names) for n in names}
        return {n: w / total for n, w in weights.items()}

    @property
    def model_id(self) -> str:
        """Human-readable model name from the card (e.g. ``hippo-pair-v1``)."""
        return str(self.card["model_id"])

    @property
    def checkpoint_hash(self) -> str:
        """12 hex digits of SHA-256 over the weights hashes of all networks of the pair (A, B order).

        A card with ``proposal_weights`` adds them (the same weights proposing differently are another
        model as far as provenance is concerned); a card without keeps its old hash.
        """
        hashes = dict(self.card.get("weights", {}))
        for name, net_card in self.cards.items():
            hashes.setdefault(name, net_card.get("weights", {}).get("sha256"))
        if not hashes or any(h is None for h in hashes.values()):
            raise CheckpointError(
                f"model {self.model_id} has unsaved networks; save it to get a checkpoint hash"
            )
        order = [n for n in PAIR_NETS if n in hashes] + sorted(n for n in hashes if n not in PAIR_NETS)
        text = "".join(hashes[n] for n in order)
        if self.card.get("proposal_weights"):
            text += json.dumps(self.card["proposal_weights"], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def preprocess(self, array: np.ndarray) -> np.ndarray:
        """Normalise a raw volume as the networks were trained (float32, same shape)."""
        return normalize_intensity(array, self.card["preprocessing"].get("scheme", "zscore"))

    def preprocess_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`preprocess` on the device that holds ``x`` (float32, same shape and device)."""
        return normalize_tensor(x, self.card["preprocessing"].get("scheme", "zscore"))

    def to(self, device: str | torch.device) -> ModelPair:
        """Move every network to ``device``; returns self."""
        for net in self.nets.values():
            net.to(device)
        return self
