"""``napari-medseg train``: train the UNETR + BS-Net pair (Co-Correcting) or one network.

Examples::

    napari-medseg train --data shared/data/msd-hippocampus --out runs/pair --epochs 10
    napari-medseg train --data MYSTORE --out runs/ft --resume runs/pair/checkpoint
    napari-medseg train --data DIR --out runs/ft --init-from runs/pair --epochs 4 --config '{"translate": 8}'
    torchrun --nproc_per_node 2 -m napari_medseg.cli train --data DIR --out runs/ddp --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from napari_medseg.errors import InputError

HELP = "Train the segmentation models (UNETR + BS-Net pair) on labelled cases."
DESCRIPTION = (
    "Train the two peer networks on a folder of labelled cases (an MSD-style folder with imagesTr/ and "
    "labelsTr/, or a napari-medseg case store). Approved labels are full supervision for both networks. "
    "Labels that a clinician has not approved are corrected near their boundaries where both networks "
    "agree they are wrong, and their least believable boundary voxels are left out, as many as the "
    "networks measure to be wrong. The pair proposes with the mix of the two networks that scores best "
    "on the validation cases (recorded in the model card). "
    "The best model (by validation Dice) is written to --out, with a training log (train_log.csv) and a "
    "resumable checkpoint (--out/checkpoint). Ctrl-C stops cleanly and keeps the checkpoint."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help=HELP, description=DESCRIPTION)
    p.add_argument(
        "--data", required=True, type=Path, help="folder of labelled cases (MSD folder or case store)"
    )
    p.add_argument(
        "--out", required=True, type=Path, help="model folder to write (best model, log, checkpoint)"
    )
    p.add_argument("--epochs", type=int, default=10, help="passes over the training cases (default 10)")
    p.add_argument(
        "--resume", type=Path, default=None, help="continue from a checkpoint folder (--out/checkpoint)"
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="MODEL",
        help="start the networks from a trained model's weights (a model folder, e.g. the bundled "
        "default); its architecture, patch size and classes are kept",
    )
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train (default auto)"
    )
    p.add_argument(
        "--nets",
        choices=("pair", "unetr", "bsnet"),
        default="pair",
        help="train the pair (default) or one network",
    )
    p.add_argument(
        "--plain", action="store_true", help="no voxel selection and no label correction (baseline)"
    )
    p.add_argument(
        "--noise-fraction",
        type=float,
        default=0.0,
        help="experiments only: add synthetic boundary noise to this fraction of the training labels",
    )
    p.add_argument(
        "--trust-labels",
        action="store_true",
        help="treat every label of an MSD folder as clinician-approved (expert references): never corrected; "
        "labels given --noise-fraction noise are still corrected",
    )
    p.add_argument("--limit-cases", type=int, default=None, help="use at most this many training cases")
    p.add_argument("--val-cases", type=int, default=40, help="cases held out for validation (default 40)")
    p.add_argument("--batch-size", type=int, default=2, help="cases per step (default 2)")
    p.add_argument("--lr", type=float, default=None, help="learning rate of the networks (default 3e-4)")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed of the split, noise and training (default 0)"
    )
    p.add_argument(
        "--config",
        default=None,
        help='JSON (text or file) overriding training settings, e.g. \'{"unetr": {"hidden_size": 96}}\'',
    )
    p.add_argument(
        "--model-id", default=None, help="name recorded in the model card (default: --out folder name)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _overrides(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    path = Path(text)
    try:
        raw = path.read_text() if not text.lstrip().startswith("{") and path.is_file() else text
        data = json.loads(raw)
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"--config is neither valid JSON nor a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise InputError("--config must be a JSON object")
    return data


def build_config(args: argparse.Namespace):
    """The run's TrainConfig from the command-line arguments (and ``--config`` overrides)."""
    from napari_medseg.training.cocorrecting import TrainConfig

    fields = set(TrainConfig.__dataclass_fields__)
    extra = _overrides(args.config)
    unknown = set(extra) - fields
    if unknown:
        raise InputError(f"--config has unknown settings: {', '.join(sorted(unknown))}")
    values = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "nets": args.nets,
        "plain": args.plain,
        "seed": args.seed,
        "progress": not args.no_progress,
        **({"lr": args.lr} if args.lr is not None else {}),
        **extra,
    }
    if values["epochs"] < 1 or values["batch_size"] < 1:
        raise InputError("--epochs and --batch-size must be at least 1")
    return TrainConfig(**values)


def _start_model(args: argparse.Namespace, config):
    """``(config with the start model's architecture, the start model)`` for ``--init-from``."""
    import dataclasses

    from napari_medseg.models.pair import ModelPair
    from napari_medseg.retraining.finetune import ARCHITECTURE_FIELDS, config_from_pair

    if args.resume is not None:
        raise InputError("--init-from and --resume exclude each other (a checkpoint holds its own weights)")
    fixed = sorted(set(_overrides(args.config)) & set(ARCHITECTURE_FIELDS))
    if fixed:
        raise InputError(
            f"--config cannot change {', '.join(fixed)} with --init-from (the start model fixes it)"
        )
    start = ModelPair.load(args.init_from, nets=config.net_names)
    settings = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in ARCHITECTURE_FIELDS
    }
    return config_from_pair(start, **settings), start


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from napari_medseg.training import distributed
    from napari_medseg.training.cocorrecting import CoCorrectingTrainer, resolve_device
    from napari_medseg.training.data import discover_cases, load_cases, read_case, read_classes, split_cases
    from napari_medseg.training.noise import corrupt_labels

    config = build_config(args)
    start = None
    if args.init_from is not None:
        config, start = _start_model(args, config)
    if not 0.0 <= args.noise_fraction <= 1.0:
        raise InputError("--noise-fraction must be between 0 and 1")
    device = resolve_device(args.device)
    info = distributed.init_from_env(device.type)
    try:
        records = discover_cases(args.data)
        if args.trust_labels:
            records = [dataclasses.replace(r, approved=True) for r in records]
        split = split_cases([r.case_id for r in records], args.val_cases, args.seed, args.limit_cases)
        by_id = {r.case_id: r for r in records}
        train_recs = [by_id[c] for c in split.train]
        val_recs = [by_id[c] for c in split.val]
        noisy, used = {}, {}
        if args.noise_fraction > 0:
            clean = {r.case_id: read_case(r)[1] for r in train_recs}
            noisy, used = corrupt_labels(clean, args.noise_fraction, seed=args.seed)
            changed = {c: int((noisy[c] != clean[c]).sum()) for c in noisy}
            train_recs = [
                dataclasses.replace(r, approved=False) if r.case_id in noisy else r for r in train_recs
            ]
        train_cases = load_cases(train_recs, config.patch, labels_override=noisy)
        val_cases = load_cases(val_recs, config.patch)
        too_big = [
            c.case_id
            for c in train_cases + val_cases
            if any(s > p for s, p in zip(c.shape, config.patch, strict=True))
        ]
        if too_big and info.is_main:
            print(
                f"note: {len(too_big)} cases are larger than the patch {config.patch}: training uses random "
                "crops and validation the centred patch",
                flush=True,
            )
        classes = read_classes(args.data)
        if start is not None:
            if classes and classes != start.classes:
                raise InputError(
                    f"--init-from model {start.model_id} has classes {start.classes}, "
                    f"the data {classes}: they must be the same"
                )
            classes = classes or start.classes
        elif classes and "num_classes" not in _overrides(args.config):
            config.num_classes = max(classes) + 1
        from napari_medseg.models.domain import dataset_modality, domain_from_images

        domain = domain_from_images(  # what the model may be used on: checked before every run
            [r.image_path for r in train_recs], classes, dataset_modality(args.data)
        )
        card_training = {
            "domain": domain,
            "data": str(args.data),
            "n_train": len(train_cases),
            "n_val": len(val_cases),
            "split": split.to_dict(),
            "approved_train_cases": sum(c.approved for c in train_cases),
            "noise": {
                "fraction": args.noise_fraction,
                "cases": used,
                "voxels_changed": changed if noisy else {},
                "mean_voxels_changed": float(np.mean(list(changed.values()))) if noisy else 0.0,
            },
            "command": "napari-medseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            **({"init_from": str(args.init_from)} if start is not None else {}),
            "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        }
        trainer = CoCorrectingTrainer(
            train_cases,
            val_cases,
            config,
            args.out,
            device=str(device),
            card_training=card_training,
            classes=classes,
            dist_info=info,
            model_id=args.model_id,
            parent_model=start.model_id if start is not None else None,
        )
        if start is not None:
            from napari_medseg.retraining.finetune import load_start_weights

            load_start_weights(trainer, start)
        if args.resume is not None:
            trainer.load_checkpoint(args.resume)
        if info.is_main:
            mode = "plain" if (config.plain or config.nets != "pair") else "co-correcting"
            print(
                f"training {config.nets} ({mode}) on {len(train_cases)} cases, validating on {len(val_cases)}, "
                f"{config.epochs} epochs on {device} x{info.world_size}",
                flush=True,
            )
        best = trainer.fit()
        if info.is_main:
            dice = ", ".join(
                f"{k[5:]}={v:.3f}" for k, v in best.items() if k.startswith("dice_") and k.endswith("mean")
            )
            print(f"best epoch {best['best_epoch']}: {dice}; model in {args.out}", flush=True)
    finally:
        distributed.shutdown(info)
    return 0
