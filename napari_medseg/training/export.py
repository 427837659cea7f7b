"""Export a trained model folder for bundling: fp16 safetensors + cards with notes on how it was made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def export_pair(
    src: str | Path, dest: str | Path, notes: dict[str, Any] | None = None, dtype: torch.dtype = torch.float16
) -> Path:
    """Copy the ModelPair in ``src`` to ``dest`` with weights stored as ``dtype``.

    ``notes`` are merged into the ``training`` section of the pair card and of every network card
    (e.g. ``{"hardware": "CPU", "summary": "trained on CPU, 5 epochs"}``). Loading casts back to
    float32. Returns ``dest``.
    """
    from napari_medseg.models.pair import ModelPair

    pair = ModelPair.load(src)
    notes = dict(notes or {})
    pair.card = {**pair.card, "training": {**pair.card.get("training", {}), **notes}}
    for name, card in pair.cards.items():
        card = {k: v for k, v in card.items() if k != "weights"}
        card["training"] = {**card.get("training", {}), **notes}
        pair.cards[name] = card
    return pair.save(dest, dtype=dtype)
