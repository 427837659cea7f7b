"""Does the pair earn its place? Same budget, seed and split for four arms, clean and noisy labels.

Arms (each trained by the product's own trainer, ``CoCorrectingTrainer`` + ``training.loop``):

  (a) UNETR alone   (b) BS-Net alone   (c) plain pair (both nets, no selection/correction)
  (d) Co-Correcting pair (small-loss selection + label correction on unapproved labels only)

Noise levels: clean (all training labels trusted = approved) and a fraction of the training labels
corrupted by boundary noise (``training.noise.corrupt_labels``); only the corrupted ones are
unapproved. ``--noise-kind mixed`` (default): per case one of dilate/erode, slice shifts, dropped end
slices (unbiased, mild); ``--noise-kind dilate``: every corrupted case over-segmented by 1–2 voxels
(a systematically biased annotator); ``--noise-kind none``: the chosen cases keep their clean labels but
are still unapproved (the control: what the pair's rules cost on clean labels nobody approved yet). With
clean trusted labels (c) and (d) run the same code path (nothing is unapproved, so nothing is selected or corrected): (d) is trained once
and reported for both.

Same seed, same start: each network's initial weights come from its own seed
(``cocorrecting.init_seed``), so BS-Net alone, the plain pair's BS-Net and the Co-Correcting pair's
BS-Net start from identical weights (UNETR likewise), and every arm sees the same batches; arms of one
seed differ by their method only. ``--set KEY=VALUE`` changes a ``TrainConfig`` field for every arm
(e.g. ``--set translate=0``: no random translation, as every run before session 6).

Split (seeded): ``n_val`` validation cases pick the best epoch and the proposal weight, ``n_test``
further cases that no arm ever trains or selects on give the reported Dice (per class; for pairs
also each member). Results go to ``OUT/noise<level>/<arm>.json`` (``noise<level>-dilate`` for the
dilate kind) as each arm finishes, and a Markdown table to ``OUT/table.md``. Each noisy arm also
records how much the noise changed: foreground voxels added / removed as a share of the clean
training foreground, mean over the corrupted cases (``noise_stats``).

Scales:
  cpu: 100 training / 20 val / 20 test cases, 5 epochs, batch 2, lr 2e-3, small widths (UNETR hidden
       96, BS-Net 8-16-32-64): ~1 h of one CPU core for all arms and levels.
  gpu: all other cases for training (160) / 40 val / 40 test, 100 epochs, batch 4, lr 1e-3, default
       widths (UNETR hidden 192, BS-Net 16-32-64-128).

Examples::

    python bench/pair_vs_single.py --scale cpu --noise 0 0.2 0.4 --out runs/pvs_cpu
    python bench/pair_vs_single.py --scale cpu --noise 0.4 --noise-kind dilate --out runs/pvs_cpu_dilate
    python bench/pair_vs_single.py --scale gpu --device cuda --out runs/pvs_gpu
    python bench/pair_vs_single.py --table runs/pvs_cpu      # re-print the table of finished arms
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SMALL = {
    "unetr": {"hidden_size": 96, "mlp_dim": 384, "num_heads": 4, "feature_size": 8},
    "bsnet": {"filters": [8, 16, 32, 64]},
}
SCALES = {
    "cpu": {"n_train": 100, "n_val": 20, "n_test": 20, "epochs": 5, "batch_size": 2, "lr": 2e-3, **SMALL},
    "gpu": {"n_train": None, "n_val": 40, "n_test": 40, "epochs": 100, "batch_size": 4, "lr": 1e-3},
    # a minutes-long rehearsal of the whole script (not a result)
    "tiny": {
        "n_train": 6,
        "n_val": 3,
        "n_test": 3,
        "epochs": 1,
        "batch_size": 2,
        "lr": 2e-3,
        "unetr": {"hidden_size": 32, "mlp_dim": 64, "num_heads": 2, "feature_size": 4},
        "bsnet": {"filters": [4, 8, 16], "deep_supervision": 1},
    },
}
ARMS = {
    "a": ("UNETR alone", {"nets": "unetr"}),
    "b": ("BS-Net alone", {"nets": "bsnet"}),
    "c": ("plain pair", {"nets": "pair", "plain": True}),
    "d": ("Co-Correcting pair", {"nets": "pair", "plain": False}),
}


def default_data() -> Path:
    env = os.environ.get("MEDSEG_SHARED_DATA")
    return Path(env) / "msd-hippocampus" if env else ROOT.parent / "shared" / "data" / "msd-hippocampus"


def split_ids(ids: list[str], n_val: int, n_test: int, n_train: int | None, seed: int):
    from napari_medseg.training.data import split_cases

    held = split_cases(ids, n_val + n_test, seed)
    val, test = held.val[:n_val], held.val[n_val:]
    train = held.train if n_train is None else held.train[:n_train]
    return train, val, test


#: Config fields an arm defines; ``--set`` may not change them.
_ARM_KEYS = {"nets", "plain"}


def overrides(pairs: list[str]) -> dict:
    """``TrainConfig`` fields from ``--set KEY=VALUE`` strings, each value cast to the field's type."""
    from napari_medseg.training.cocorrecting import TrainConfig

    defaults = TrainConfig().to_dict()
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in defaults or key in _ARM_KEYS or isinstance(defaults[key], (dict, list)):
            raise SystemExit(
                f"--set {pair!r}: expected KEY=VALUE with KEY a scalar TrainConfig field (not nets/plain)"
            )
        kind = type(defaults[key])
        try:
            out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        except ValueError:
            raise SystemExit(f"--set {pair!r}: {value!r} is not a {kind.__name__}") from None
    return out


def level_dir(noise: float, kind: str) -> str:
    """Folder of one noise level under OUT: ``noise0.4`` (mixed or clean), ``noise0.4-dilate``."""
    return f"noise{noise:g}" if kind == "mixed" or noise == 0 else f"noise{noise:g}-{kind}"


def noise_stats(clean: dict, noisy: dict) -> dict:
    """Foreground voxels the noise added / removed / relabelled, as shares of each case's clean foreground.

    Means over the corrupted cases (``noisy``'s keys); ``clean`` and ``noisy`` map case id to ``(I, J, K)``
    integer labels.
    """
    import numpy as np

    added, removed, changed = [], [], []
    for case_id, lab in noisy.items():
        ref = clean[case_id]
        fg = max(int((ref > 0).sum()), 1)
        added.append(float(((ref == 0) & (lab > 0)).sum()) / fg)
        removed.append(float(((ref > 0) & (lab == 0)).sum()) / fg)
        changed.append(float((ref != lab).sum()) / fg)
    return {
        "n_cases": len(noisy),
        **{
            key: round(float(np.mean(v)), 4) if v else 0.0
            for key, v in (("added_share", added), ("removed_share", removed), ("changed_share", changed))
        },
    }


@dataclasses.dataclass
class Split:
    """One run's data: records by id, the split, and the noisy labels of the corrupted training cases."""

    by_id: dict
    train_recs: list  # CaseRecords; the corrupted ones unapproved
    val_ids: list[str]
    test_ids: list[str]
    noisy: dict  # case id -> (I, J, K) noisy label
    stats: dict | None  # noise_stats; None on clean labels


def prepare(args, scale: dict, noise: float) -> Split:
    """The seeded split and noise of a run (``args``: data, seed, noise_kind), identical for every arm."""
    from napari_medseg.training.data import cases_from_msd, read_case
    from napari_medseg.training.noise import corrupt_labels

    records = [dataclasses.replace(r, approved=True) for r in cases_from_msd(args.data)]
    by_id = {r.case_id: r for r in records}
    train_ids, val_ids, test_ids = split_ids(
        sorted(by_id), scale["n_val"], scale["n_test"], scale["n_train"], args.seed
    )
    train_recs = [by_id[c] for c in train_ids]
    noisy: dict = {}
    stats = None
    if noise > 0:
        clean = {r.case_id: read_case(r)[1] for r in train_recs}
        noisy, _ = corrupt_labels(clean, noise, seed=args.seed, kind=args.noise_kind)
        stats = noise_stats(clean, noisy)
        train_recs = [dataclasses.replace(r, approved=r.case_id not in noisy) for r in train_recs]
    return Split(by_id, train_recs, val_ids, test_ids, noisy, stats)


LABEL_STATE = "label_state.safetensors"


def save_label_state(correction, path: Path) -> None:
    """The learned label distributions of the last epoch (``LabelCorrection`` buffers + logits), for
    diagnosing what label correction did (``bench/pair_noise_diagnosis.py``)."""
    from safetensors.torch import save_file

    from napari_medseg.io.atomic import atomic_write_with

    tensors = {
        "logits": correction.logits.detach(),
        "given": correction.given,
        "voxels": correction.voxels,
        "starts": correction.starts,
        "admitted": correction.admitted.to(dtype=correction.starts.dtype),
    }
    tensors = {k: v.cpu().contiguous() for k, v in tensors.items()}
    atomic_write_with(path, lambda p: save_file(tensors, str(p)))


def run_arm(arm: str, noise: float, args, scale: dict, out: Path) -> dict:
    import numpy as np
    import torch

    from napari_medseg.training.cocorrecting import CoCorrectingTrainer, TrainConfig
    from napari_medseg.training.data import load_cases
    from napari_medseg.training.loop import run_epochs

    torch.manual_seed(args.seed)
    data = prepare(args, scale, noise)
    by_id, train_recs, val_ids, test_ids = data.by_id, data.train_recs, data.val_ids, data.test_ids
    noisy, stats = data.noisy, data.stats
    if stats is not None:
        print(f"  noise {noise:g} {args.noise_kind}: {stats}", flush=True)
    name, arm_cfg = ARMS[arm]
    cfg = TrainConfig(
        epochs=args.epochs or scale["epochs"],
        batch_size=scale["batch_size"],
        lr=scale["lr"],
        seed=args.seed,
        progress=False,
        unetr=dict(scale.get("unetr", {})),
        bsnet=dict(scale.get("bsnet", {})),
        **{**arm_cfg, **overrides(args.set)},
    )
    train = load_cases(train_recs, cfg.patch, labels_override=noisy)
    val = load_cases([by_id[c] for c in val_ids], cfg.patch)
    test = load_cases([by_id[c] for c in test_ids], cfg.patch)
    level = level_dir(noise, args.noise_kind)
    model_dir = out / level / f"arm_{arm}"
    trainer = CoCorrectingTrainer(train, val, cfg, model_dir, device=args.device, model_id=f"pvs-{arm}")
    t0 = time.perf_counter()
    outcome = run_epochs(
        trainer,
        keep="best",
        on_epoch=lambda row: print(
            f"  [{arm} {level}] epoch {row['epoch']}/{row['epochs']} {row['epoch_s']:.0f}s "
            f"dice={row['dice']:.3f} data_share={row.get('data_share', 0):.3f} "
            f"forget={row.get('forget_rate', 0):.3f}",
            flush=True,
        ),
    )
    seconds = time.perf_counter() - t0
    test_metrics = trainer.validate(test, pick_weight=False)
    trainer.save_model(model_dir, outcome.kept_metrics)
    if trainer.correction is not None:
        save_label_state(trainer.correction, model_dir / LABEL_STATE)
    rows = outcome.history
    result = {
        "arm": arm,
        "name": name,
        "noise": noise,
        "noise_kind": args.noise_kind if noise > 0 else None,
        "noise_stats": stats,
        "n_train": len(train),
        "n_noisy": len(noisy),
        "n_val": len(val),
        "n_test": len(test),
        "config": cfg.to_dict(),
        "best_epoch": outcome.kept_epoch,
        "val": outcome.kept_metrics,
        "test": test_metrics,
        "proposal_weight_unetr": trainer.proposal_weight if len(trainer.nets) == 2 else None,
        "s_per_epoch": round(float(np.mean([r["epoch_s"] for r in rows])), 2),
        "train_s_per_epoch": round(float(np.mean([r["train_s"] for r in rows])), 2),
        "data_share": round(float(np.mean([r.get("data_share", 0.0) for r in rows])), 4),
        "seconds": round(seconds, 1),
        "history": rows,
        "device": str(trainer.device),
        "precision": "bf16" if trainer.amp else "fp32",
        "threads": torch.get_num_threads(),
        "machine": f"{platform.node()} {platform.machine()}",
        "command": " ".join(sys.argv),
    }
    path = out / level / f"{arm}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=float))
    return result


def _fmt(metrics: dict, key: str, classes: tuple[str, ...]) -> str:
    vals = [metrics.get(f"dice_{key}_{c}") for c in classes]
    if any(v is None for v in vals):
        return "–"
    return " / ".join(f"{v:.3f}" for v in vals) + f" ({metrics[f'dice_{key}_mean']:.3f})"


def table(out: Path) -> str:
    """Markdown table of every finished arm under ``out`` (test Dice; val mean in brackets)."""
    classes = ("anterior", "posterior")
    lines = [
        "| noise | arm | test Dice ant / post (mean) | members on test: UNETR / BS-Net (mean) | val mean | "
        "best epoch | w UNETR | s/epoch | data share |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for path in sorted(out.glob("noise*/*.json")):
        r = json.loads(path.read_text())
        key = {"a": "unetr", "b": "bsnet"}.get(r["arm"], "pair")
        members = ""
        if key == "pair":
            members = f"{r['test']['dice_unetr_mean']:.3f} / {r['test']['dice_bsnet_mean']:.3f}"
        w = r.get("proposal_weight_unetr")
        kind = r.get("noise_kind") or "mixed"  # runs before --noise-kind were all mixed
        noise = f"{r['noise']:g}" if r["noise"] == 0 else f"{r['noise']:g} {kind}"
        lines.append(
            f"| {noise} | ({r['arm']}) {r['name']} | {_fmt(r['test'], key, classes)} | {members or '–'} | "
            f"{r['val'].get(f'dice_{key}_mean', float('nan')):.3f} | {r['best_epoch']} | "
            f"{'–' if w is None else f'{w:g}'} | {r['s_per_epoch']:.0f} | {r['data_share']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from napari_medseg.training.noise import NOISE_KINDS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    p.add_argument("--data", type=Path, default=default_data())
    p.add_argument("--out", type=Path, default=Path("runs/pair_vs_single"))
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2, 0.4])
    p.add_argument(
        "--noise-kind",
        choices=NOISE_KINDS,
        default="mixed",
        help="mixed: unbiased dilate/erode, shifts, dropped slices; dilate: systematic over-segmentation",
    )
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["b", "d", "c", "a"])
    p.add_argument("--epochs", type=int, default=None, help="override the scale's epochs")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="TrainConfig fields for every arm, e.g. noise_confidence=0.5 (recorded in each result's config)",
    )
    p.add_argument("--table", type=Path, default=None, help="only print the table of a finished OUT")
    args = p.parse_args(argv)
    if args.table is not None:
        print(table(args.table))
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    scale = SCALES[args.scale]
    for noise in args.noise:
        for arm in args.arms:
            if noise == 0 and arm == "c" and "d" in args.arms:
                continue  # identical code path on clean trusted labels: (d) stands for (c)
            done = args.out / level_dir(noise, args.noise_kind) / f"{arm}.json"
            if done.exists():
                print(f"skip {done} (done)", flush=True)
                continue
            print(f"== {level_dir(noise, args.noise_kind)} arm ({arm}) {ARMS[arm][0]}", flush=True)
            r = run_arm(arm, noise, args, scale, args.out)
            print(f"   test {r['test']}", flush=True)
    (args.out / "table.md").write_text(table(args.out) + "\n")
    print(table(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
