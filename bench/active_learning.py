"""Active learning: does labelling the most uncertain cases first beat labelling random cases?

Simulated annotation loop on an MSD folder whose reference labels play the annotator:

1. split (stable hash of the case id): a fixed *test* set, never labelled or trained on, and a pool;
   the same ``--initial`` random pool cases start labelled for both strategies;
2. the start model is trained on the initial cases only (``--start-epochs`` epochs from random
   weights with the architecture of ``--arch`` (default: the bundled pair's), ``--start-lr``), so no
   test or pool case has been seen; ``--start MODELDIR`` uses a given model instead (it must not have
   been trained on test or pool cases) and ``--tiny`` tiny random nets (smoke test only);
   per strategy, a case store holds the labelled cases as *approved* labels and the start model is
   promoted in its registry;
3. each round: ``napari_medseg.retraining.retrain`` fine-tunes the current model on the store (the
   candidate is always promoted here, so the model chain continues), the new model is scored on the
   test set (mean Dice), then the strategy picks ``--per-round`` unlabelled pool cases:
   ``uncertainty`` = highest pair-disagreement score (``Prediction.score``) under the current model,
   ``random`` = seeded random draw; their reference labels are imported as approved.

Writes ``OUT/active_learning.csv`` (strategy, round, labelled cases, test Dice mean/sd, model),
``OUT/active_learning.json`` (the same plus the selected cases and the command) and
``OUT/active_learning.png`` (test Dice against labelled cases, one line per strategy).

Full run (meant for a GPU; hours on 2 CPU cores)::

    python bench/active_learning.py --data ../shared/data/msd-hippocampus --out runs/al \\
        --initial 40 --start-epochs 30 --rounds 5 --per-round 20 --test 40 --epochs 10

Smoke run (tiny random nets, minutes on a CPU)::

    python bench/active_learning.py --data ../shared/data/msd-hippocampus --out /tmp/al --tiny \\
        --rounds 2 --per-round 2 --initial 2 --test 2 --pool-limit 8 --epochs 1 --device cpu
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

STRATEGIES = ("uncertainty", "random")
TINY_UNETR = {"img_size": [32, 32, 32], "feature_size": 4, "hidden_size": 24, "mlp_dim": 48, "num_heads": 2}
TINY_BSNET = {"filters": [4, 8, 16]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="MSD folder (imagesTr/, labelsTr/)")
    p.add_argument("--out", type=Path, required=True, help="output folder (stores, CSV, JSON, PNG)")
    p.add_argument(
        "--start",
        type=Path,
        default=None,
        help="model to start from (default: train one on the initial cases)",
    )
    p.add_argument(
        "--arch",
        type=Path,
        default=None,
        help="model whose architecture the start model gets (default: bundled)",
    )
    p.add_argument("--start-epochs", type=int, default=10, help="epochs for the start model (default 10)")
    p.add_argument("--start-lr", type=float, default=1e-3, help="learning rate for the start model")
    p.add_argument(
        "--lr", type=float, default=3e-4, help="fine-tuning learning rate per round (default 3e-4)"
    )
    p.add_argument("--tiny", action="store_true", help="start from tiny random nets (smoke test only)")
    p.add_argument("--rounds", type=int, default=5, help="selection rounds (default 5)")
    p.add_argument("--per-round", type=int, default=20, help="cases labelled per round (default 20)")
    p.add_argument("--initial", type=int, default=20, help="labelled cases before round 1 (default 20)")
    p.add_argument("--test", type=int, default=40, help="held-out test cases (default 40)")
    p.add_argument("--pool-limit", type=int, default=None, help="use at most this many pool cases")
    p.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs per round (default 10)")
    p.add_argument(
        "--time-budget", type=float, default=None, metavar="MIN", help="training minutes per round"
    )
    p.add_argument(
        "--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES), help="strategies to run"
    )
    p.add_argument(
        "--method",
        default=None,
        help="uncertainty map whose case score picks cases (default: the shipped default map)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def make_tiny_start(folder: Path, seed: int) -> Path:
    import torch

    from napari_medseg.models.factory import build_network
    from napari_medseg.models.pair import ModelPair

    torch.manual_seed(seed)
    nets = {"unetr": build_network("unetr", TINY_UNETR), "bsnet": build_network("bsnet", TINY_BSNET)}
    return ModelPair.from_nets(nets, model_id="tiny-start", patch_size=(32, 32, 32)).save(folder)


def make_random_start(folder: Path, arch: Path, seed: int) -> Path:
    """A pair with ``arch``'s architecture (configs, patch, classes) and fresh random weights."""
    import torch

    from napari_medseg.models.factory import build_network
    from napari_medseg.models.pair import ModelPair

    ref = ModelPair.load(arch)
    torch.manual_seed(seed)
    nets = {name: build_network(name, dict(card["config"])) for name, card in ref.cards.items()}
    return ModelPair.from_nets(
        nets, model_id="al-random-init", classes=ref.classes, patch_size=ref.patch_size
    ).save(folder)


def labelled_store(root: Path, cases: list[str], by_id: dict[str, Any], classes, model: Path, reason: str):
    """A case store in ``root`` holding ``cases`` with their reference labels approved (the "oracle"),
    whose registry's current model is ``model``; returns the registry."""
    from napari_medseg.registry import ModelRegistry
    from napari_medseg.store import CaseStore

    store = CaseStore.init(root, name=f"al-{root.name}", labels=classes)
    for case in cases:
        store.import_case(by_id[case].image_path, by_id[case].label_path, approved=True, author="oracle")
    store.close()
    registry = ModelRegistry(root)
    registry.register(model, {})
    registry.promote(registry.entries()[0].model_id, reason=reason)
    return registry


def train_start(args: argparse.Namespace, initial: list[str], by_id: dict[str, Any], classes) -> Path:
    """The start model: random weights trained ``--start-epochs`` epochs on the initial cases only."""
    from napari_medseg.bundled import default_model_dir
    from napari_medseg.registry import PromotionRule
    from napari_medseg.retraining import retrain

    root = args.out / "store-start"
    arch = args.arch or default_model_dir()
    init = make_random_start(args.out / "random-init", arch, args.seed)
    registry = labelled_store(root, initial, by_id, classes, init, reason="random weights")
    result = retrain(
        root,
        epochs=args.start_epochs,
        device=args.device,
        rule=PromotionRule(min_delta=-1.0, max_class_drop=None),
        settings={"seed": args.seed, "lr": args.start_lr, "warmup_epochs": 2},
    )
    print(
        f"start model {result.model_id} trained on {len(initial)} cases in {result.seconds:.0f}s", flush=True
    )
    return registry.current_model_dir()


def split_pool(records: list[Any], n_test: int, n_initial: int, pool_limit: int | None, seed: int):
    """Test cases by stable hash (lowest hashes), the rest is the pool; the initial labelled draw is seeded."""
    from napari_medseg.retraining.split import case_hash

    by_hash = sorted(records, key=lambda r: case_hash(r.case_id))
    test, pool = by_hash[:n_test], sorted(by_hash[n_test:], key=lambda r: r.case_id)
    if pool_limit is not None:
        pool = pool[:pool_limit]
    if n_initial + 1 > len(pool):
        raise SystemExit(f"the pool has {len(pool)} cases; --initial {n_initial} leaves nothing to select")
    initial = sorted(random.Random(seed).sample([r.case_id for r in pool], n_initial))
    return sorted(test, key=lambda r: r.case_id), pool, initial


def test_dice(model_dir: Path, test: list[Any], device: str) -> tuple[float, float]:
    """Mean and sd of the per-case mean foreground Dice of ``model_dir`` on the test cases."""
    from napari_medseg.evaluation.failures import score_cases
    from napari_medseg.models.pair import ModelPair

    pair = ModelPair.load(model_dir)
    cases = [(r.case_id, r.image_path, r.label_path, None) for r in test]
    report = score_cases(pair, cases, "pair", device, hd95=False, keep_arrays=False)
    vals = np.asarray([c.metrics["dice_mean"] for c in report.cases], dtype=np.float64)
    return float(vals.mean()), float(vals.std())


def select(
    strategy: str,
    model_dir: Path,
    candidates: list[Any],
    k: int,
    device: str,
    rng: random.Random,
    method: str,
) -> list[str]:
    """``k`` case ids to label next: most uncertain under ``model_dir``, or a random draw."""
    if strategy == "random":
        return sorted(rng.sample([r.case_id for r in candidates], min(k, len(candidates))))
    from napari_medseg.inference.engine import predict_volume
    from napari_medseg.io import load_volume
    from napari_medseg.models.pair import ModelPair

    pair = ModelPair.load(model_dir)
    scores = {
        r.case_id: predict_volume(
            load_volume(r.image_path), pair, device=device, keep_probs=False, method=method
        ).score
        for r in candidates
    }
    return sorted(sorted(scores, key=lambda c: -scores[c])[:k])


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for strategy in STRATEGIES:
        pts = [(r["labelled"], r["dice_mean"], r["dice_sd"]) for r in rows if r["strategy"] == strategy]
        if pts:
            x, y, e = zip(*pts, strict=True)
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=strategy)
    ax.set_xlabel("labelled cases")
    ax.set_ylabel("test Dice (mean ± sd)")
    ax.legend()
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))


def main(argv: list[str] | None = None) -> int:
    from napari_medseg.inference.uncertainty import DEFAULT_METHOD
    from napari_medseg.io.atomic import atomic_write_bytes
    from napari_medseg.registry import PromotionRule
    from napari_medseg.retraining import retrain
    from napari_medseg.store import CaseStore
    from napari_medseg.training.data import cases_from_msd, read_classes

    args = parse_args(argv)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    records = cases_from_msd(args.data)
    by_id = {r.case_id: r for r in records}
    test, pool, initial = split_pool(records, args.test, args.initial, args.pool_limit, args.seed)
    classes = read_classes(args.data) or {0: "background", 1: "anterior", 2: "posterior"}
    if args.tiny:
        start = make_tiny_start(args.out / "start-tiny", args.seed)
    else:
        start = args.start or train_start(args, initial, by_id, classes)
    always = PromotionRule(min_delta=-1.0, max_class_drop=None)  # keep the chain going every round
    rows: list[dict[str, Any]] = []
    method = args.method or DEFAULT_METHOD
    picks: dict[str, list[list[str]]] = {s: [] for s in args.strategies}
    for strategy in args.strategies:
        root = args.out / f"store-{strategy}"
        registry = labelled_store(root, initial, by_id, classes, start, reason="active-learning start model")
        rng = random.Random(args.seed + 1)
        labelled = set(initial)
        for rnd in range(args.rounds + 1):
            if rnd > 0:
                result = retrain(
                    root,
                    epochs=args.epochs,
                    time_budget_s=args.time_budget * 60 if args.time_budget else None,
                    device=args.device,
                    rule=always,
                    settings={"seed": args.seed, "lr": args.lr},
                )
                print(
                    f"[{strategy}] round {rnd}: trained {result.model_id} in {result.seconds:.0f}s",
                    flush=True,
                )
            model_dir = registry.current_model_dir()
            mean, sd = test_dice(model_dir, test, args.device)
            rows.append(
                {
                    "strategy": strategy,
                    "round": rnd,
                    "labelled": len(labelled),
                    "dice_mean": round(mean, 4),
                    "dice_sd": round(sd, 4),
                    "model": registry.current_id,
                }
            )
            print(
                f"[{strategy}] round {rnd}: {len(labelled)} labelled, test Dice {mean:.4f} ± {sd:.4f}",
                flush=True,
            )
            if rnd == args.rounds:
                break
            unlabelled = [r for r in pool if r.case_id not in labelled]
            if not unlabelled:
                break
            chosen = select(strategy, model_dir, unlabelled, args.per_round, args.device, rng, method)
            picks[strategy].append(chosen)
            store = CaseStore.open(root)
            for case in chosen:
                store.import_case(
                    by_id[case].image_path, by_id[case].label_path, approved=True, author="oracle"
                )
            store.close()
            labelled |= set(chosen)
    header = list(rows[0])
    csv_text = ",".join(header) + "\n" + "".join(",".join(str(r[h]) for h in header) + "\n" for r in rows)
    atomic_write_bytes(args.out / "active_learning.csv", csv_text.encode())
    meta = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "test_cases": [r.case_id for r in test],
        "pool_size": len(pool),
        "initial": initial,
        "selected": picks,
        "selection_method": method,
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_bytes(args.out / "active_learning.json", json.dumps(meta, indent=1).encode())
    plot(rows, args.out / "active_learning.png")
    print(f"wrote {args.out / 'active_learning.csv'}, .json and .png in {meta['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
