"""Pick the pair-proposal weight of an already trained model on its own validation split.

Models trained before the proposal weight existed propose ``argmax(p_UNETR + p_BS-Net)``. This runs
the trainer's own validation (``CoCorrectingTrainer.validate``: every UNETR weight of
``PROPOSAL_WEIGHTS``, ties → 0.5) on the validation cases recorded in the model's card and writes the
chosen weights into ``pair.json`` (``proposal_weights``), with the per-weight Dice in the card.
The weight is picked and reported on the same cases (the card says so).

    python bench/pick_proposal_weight.py napari_medseg/resources/models/default --data ../shared/data/msd-hippocampus
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--data", type=Path, required=True)
    args = p.parse_args(argv)

    from napari_medseg.io.atomic import atomic_write_bytes
    from napari_medseg.models.pair import ModelPair
    from napari_medseg.retraining.finetune import build_trainer, config_from_pair
    from napari_medseg.training.cocorrecting import PROPOSAL_WEIGHTS
    from napari_medseg.training.data import cases_from_msd, load_cases

    pair = ModelPair.load(args.model)
    val_ids = pair.card["training"]["split"]["val"]
    by_id = {r.case_id: r for r in cases_from_msd(args.data)}
    val = load_cases([by_id[c] for c in val_ids], pair.patch_size)
    cfg = config_from_pair(pair, epochs=1, progress=False, augment=False)
    trainer = build_trainer(pair, val[:1], val, cfg, "/tmp/unused", "cpu", {}, pair.model_id)
    metrics = trainer.validate(pick_weight=True)
    table = {f"{w:g}": metrics.pop(f"proposal_w{w:g}_dice_mean") for w in PROPOSAL_WEIGHTS}
    w = trainer.proposal_weight
    card = json.loads((args.model / "pair.json").read_text())
    card["proposal_weights"] = {"unetr": w, "bsnet": 1.0 - w}
    card.setdefault("metrics", {})["proposal_weight_choice"] = {
        "picked_on": f"the card's {len(val_ids)} validation cases (reported on the same cases)",
        "dice_pair_mean_by_unetr_weight": table,
        "val_dice": metrics,
        "command": "python bench/pick_proposal_weight.py " + " ".join(sys.argv[1:]),
    }
    atomic_write_bytes(args.model / "pair.json", (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    print(json.dumps({"proposal_weights": card["proposal_weights"], "by_weight": table, **metrics}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
