"""``napari-medseg evaluate``: Dice and HD95 of a model on labelled cases, per case and mean ± sd."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_medseg.commands.predict import add_model_arguments, load_pair, report_failed
from napari_medseg.errors import InputError, MedsegError, user_message

HELP = "Measure a model's accuracy (Dice, HD95) on labelled cases."
DESCRIPTION = (
    "Segment labelled cases with a model and compare with the reference labels: Dice overlap (1 = "
    "perfect) and HD95, the 95th-percentile surface distance in millimetres (0 = perfect), for each "
    "structure. DIR is a dataset folder in MSD layout (imagesTr/, labelsTr/) or a case store (only "
    "clinician-approved labels are used). For an MSD folder the validation cases recorded in the "
    "model card are used when present, so training cases are not scored. Prints one line per case "
    "and the mean ± standard deviation; --out also writes a CSV table."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser("evaluate", help=HELP, description=DESCRIPTION)
    add_model_arguments(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", type=Path, metavar="DIR", help="MSD dataset folder or case store")
    where.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="case store: score its approved cases worst first (same report as the Failures panel)",
    )
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="OUT",
        help="with --store: folder for the CSV + PNG report",
    )
    p.add_argument("--cases", type=int, default=None, metavar="N", help="score only the first N cases")
    p.add_argument(
        "--split",
        choices=("auto", "val", "all"),
        default="auto",
        help="auto (default): the model card's validation cases if recorded, else all; val: require them",
    )
    p.add_argument("--out", type=Path, default=None, metavar="CSV", help="write the per-case table as CSV")
    p.add_argument("--no-hd95", action="store_true", help="skip HD95 (faster on large scans)")
    p.add_argument("--json", action="store_true", help="print the per-case rows and the summary as JSON")
    p.set_defaults(func=run)


def named_metrics(metrics: dict[str, float], classes: dict[int, str]) -> dict[str, float]:
    """``dice_1`` → ``dice_anterior`` (the model card's class names; values unchanged)."""
    out = {}
    for key, value in metrics.items():
        kind, _, tail = key.rpartition("_")
        out[f"{kind}_{classes[int(tail)]}" if tail.isdigit() and int(tail) in classes else key] = value
    return out


def band_uncertainty(pred) -> float:  # noqa: ANN001 - Prediction
    """Mean voxel uncertainty in the boundary band, on the map's own 0..1 scale (NaN without a map)."""
    import numpy as np

    if pred.uncertainty is None or not pred.band.any():
        return float("nan")
    return float(np.asarray(pred.uncertainty, dtype=np.float32)[pred.band].mean())


def validation_ids(card: dict[str, Any]) -> list[str] | None:
    """Validation case ids recorded in a model card, or ``None``.

    Looked up at ``card["training"]["split"]["val"]`` (what ``training`` writes), then
    ``card["training"]["val_cases"]`` and ``card["split"]["val"]``.
    """
    training = card.get("training") or {}
    for holder, key in ((training.get("split"), "val"), (training, "val_cases"), (card.get("split"), "val")):
        if isinstance(holder, dict) and isinstance(holder.get(key), list):
            return [str(c) for c in holder[key]]
    return None


def labelled_cases(data: Path, card: dict[str, Any], split: str) -> tuple[list[tuple[str, Any, Any]], str]:
    """``[(case_id, image_path_or_loader, label_path_or_loader)]`` to score, and a note on where they came from."""
    from napari_medseg.errors import InputError

    if not data.is_dir():
        raise InputError(f"data folder {data} does not exist")
    if (data / ".medseg").is_dir():
        from napari_medseg.commands.store import note_read_only
        from napari_medseg.store import CaseStore

        store = CaseStore.open(data, write=False)
        note_read_only(store)
        items = [it for it in store.training_items() if it["approved"]]
        if not items:
            raise InputError(f"the case store {data} has no approved labels to evaluate against")
        cases = [(it["case_id"], Path(it["image"]), Path(it["label"])) for it in items]
        return sorted(cases), f"{len(cases)} approved cases of the store"
    from napari_medseg.training.data import cases_from_msd

    records = cases_from_msd(data)
    cases = [(r.case_id, Path(r.image_path), Path(r.label_path)) for r in records]
    val = validation_ids(card) if split != "all" else None
    if split == "val" and val is None:
        raise InputError("the model card records no validation cases; use --split all")
    if val is not None:
        keep = set(val)
        chosen = [c for c in cases if c[0] in keep]
        if chosen:
            return chosen, f"{len(chosen)} validation cases recorded in the model card"
        if split == "val":
            raise InputError(f"none of the model card's validation cases are in {data}")
    return cases, f"all {len(cases)} labelled cases (no recorded validation split applies)"


def run(args: argparse.Namespace) -> int:
    if args.store is not None:  # the failure-inspection report, headless
        from napari_medseg.commands import failures

        return failures.run(args)
    if args.report is not None:
        raise InputError("--report needs --store (for a dataset folder, use --out CSV)")
    if args.out is not None and args.out.is_dir():
        raise InputError(f"--out {args.out} is a folder; give the name of the CSV file to write")
    from tqdm import tqdm

    from napari_medseg.evaluation.metrics import case_metrics
    from napari_medseg.evaluation.report import EvaluationReport
    from napari_medseg.inference.engine import predict_volume
    from napari_medseg.io import load_labels, load_volume

    pair = load_pair(args.model, args.net)
    cases, origin = labelled_cases(args.data, pair.card, args.split)
    if args.cases is not None:
        cases = cases[: max(args.cases, 0)]
    classes = sorted(c for c in pair.classes if c != 0)
    heading = f"model {pair.model_id} ({args.net}) on {origin}" + (
        f", first {len(cases)}" if args.cases else ""
    )
    if not args.json:
        print(heading)
    report = EvaluationReport(meta={"model_id": pair.model_id, "net": args.net, "data": str(args.data)})
    failed: list[tuple[str, str]] = []
    precisions: set[str] = set()  # bf16 where the device computes it natively, else fp32
    for case, image_path, label_path in tqdm(
        cases, desc="evaluate", unit="case", file=sys.stderr, leave=False, disable=None
    ):
        try:  # a missing or broken case is listed at the end; the others are still scored
            volume = load_volume(image_path)
            truth = load_labels(label_path, reference=volume)
        except (MedsegError, OSError) as err:
            failed.append((case, user_message(err) or str(err)))
            continue
        pred = predict_volume(
            volume, pair, net=args.net, device=args.device, overlap=args.overlap, keep_probs=False
        )
        precisions.add(pred.precision)
        metrics = case_metrics(pred.labels, truth.array, classes, volume.spacing, hd95=not args.no_hd95)
        metrics = named_metrics(metrics, pair.classes)
        metrics["uncertainty_band_mean"] = band_uncertainty(pred)  # 0..1, like the overlay
        report.add(case, metrics)
    if failed and len(failed) == len(cases):
        raise InputError(
            f"none of the {len(cases)} case(s) could be read; first: {failed[0][0]}: {failed[0][1]}"
        )
    report.meta["precision"] = "+".join(sorted(precisions))
    written = report.to_csv(args.out) if args.out is not None else None
    if args.json:
        import json

        def finite(v: Any) -> Any:
            return None if isinstance(v, float) and v != v else v  # NaN -> null (valid JSON)

        summary = {
            k: {"mean": finite(m), "sd": finite(sd), "n": n} for k, (m, sd, n) in report.summary().items()
        }
        rows = [{k: finite(v) for k, v in row.items()} for row in report.rows]
        failures = [{"case": c, "error": m} for c, m in failed]
        out = {
            "model_id": pair.model_id,
            "net": args.net,
            "precision": report.meta["precision"],
            "cases": rows,
            "summary": summary,
            "failed": failures,
        }
        print(json.dumps(out))
        return 1 if failed else 0
    print(report.format_table())
    print("uncertainty_band_mean: mean voxel uncertainty in the boundary band (0 = sure, 1 = split evenly)")
    if written is not None:
        print(f"wrote {written}")
    return report_failed(failed, len(cases))
