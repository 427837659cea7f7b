"""``napari-medseg predict``: proposal labels + boundary-uncertainty map for scans or a case store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "Segment scans with the model pair and map where its two networks disagree."
DESCRIPTION = (
    "Run the segmentation model on one or more scans (NIfTI files or DICOM series folders) and write, "
    "for each scan, on the scan's own voxel grid: <case>_label.nii.gz (the proposed segmentation), "
    "<case>_uncertainty.nii.gz (near the structure boundaries: 0 = the two networks agree and are sure, "
    "1 = they disagree, or together are split evenly between two classes) and <case>_regions.json (the uncertain regions, most important first, with "
    "their positions in voxels and millimetres). With --store, every case of a case store that has neither "
    "a model proposal nor a label made by a person gets one, saved as a label version marked as a proposal, "
    "with its uncertainty map and regions beside it and its case uncertainty score for the review queue; "
    "cases with a person's label keep it. A scan unlike the model's training images (modality, voxel size, "
    "field of view, intensities: see the model card's domain) is refused unless --outside-domain is given; "
    "such results are marked and never ranked in the review queue."
)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--net``, ``--device``, ``--overlap`` (shared with ``evaluate``)."""
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="MODELDIR",
        help="model folder with pair.json (default: the bundled model napari_medseg/resources/models/default)",
    )
    p.add_argument(
        "--net",
        choices=("pair", "unetr", "bsnet"),
        default="pair",
        help="use both networks (pair, default: average + disagreement map) or only one of them",
    )
    p.add_argument(
        "--device", default="auto", help="auto (GPU if present, else CPU), cpu, cuda or mps (default auto)"
    )
    p.add_argument(
        "--overlap",
        type=float,
        default=0.5,
        metavar="F",
        help="overlap of neighbouring windows for large scans, 0 to <1 (default 0.5)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command."""
    p = subparsers.add_parser("predict", help=HELP, description=DESCRIPTION)
    p.add_argument("inputs", nargs="*", type=Path, metavar="INPUT", help="NIfTI file(s) or DICOM folder(s)")
    add_model_arguments(p)
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="folder for the output files")
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        metavar="DIR",
        help="case store: propose labels for cases without one",
    )
    p.add_argument(
        "--author", default="model", help="author name recorded for store proposals (default model)"
    )
    p.add_argument(
        "--outside-domain",
        action="store_true",
        help="run even on scans outside the model's training domain (results are marked, never ranked)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object with every case's result")
    p.set_defaults(func=run)


def case_name(path: Path) -> str:
    """Output prefix of an input: file name without ``.nii(.gz)`` and ``_0000``, or the DICOM folder name."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.removesuffix("_0000") or "case"


def load_pair(model_dir: Path | None, net: str):  # noqa: ANN201 - ModelPair, imported lazily
    """Load the networks needed for ``net`` from ``model_dir`` (default: the bundled model)."""
    from napari_medseg.models.pair import ModelPair
    from napari_medseg.registry import current_model_dir

    names = ("unetr", "bsnet") if net == "pair" else (net,)
    return ModelPair.load(model_dir or current_model_dir(), device="cpu", nets=names)


def case_bar(total: int, what: str = "cases"):  # noqa: ANN201 - tqdm
    """A tqdm bar over cases on stderr (``done/total cases``), so stdout stays the results."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="case", file=sys.stderr, leave=False, disable=None)


def domain_refusal(check, hint: str = "add --outside-domain to run it anyway"):  # noqa: ANN001, ANN201
    """The ``OutsideDomainError`` for a refused :class:`~napari_medseg.models.domain.DomainCheck`."""
    from napari_medseg.models.domain import OutsideDomainError

    return OutsideDomainError(f"{check.message}: not run; {hint}")


def _predict(volume, pair, args: argparse.Namespace, desc: str):  # noqa: ANN001, ANN202
    from napari_medseg.inference.engine import predict_volume

    return predict_volume(
        volume,
        pair,
        net=args.net,
        device=args.device,
        overlap=args.overlap,
        warn=lambda m: print(f"warning: {desc}: {m}", file=sys.stderr),
        keep_probs=False,
    )


def class_voxels(labels, classes: dict[int, str]) -> dict[str, int]:  # noqa: ANN001
    """Voxels per foreground class, by class name (``{"anterior": 1234, ...}``)."""
    import numpy as np

    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64), minlength=max(classes) + 1)
    return {name: int(counts[v]) for v, name in sorted(classes.items()) if v != 0}


def result(case: str, pred, classes: dict[int, str], check) -> dict:  # noqa: ANN001
    """One case's result for the table and ``--json``."""
    top = pred.regions[0] if pred.regions else None
    return {
        "case": case,
        "voxels": class_voxels(pred.labels, classes),
        "uncertainty_score": round(float(pred.score), 4),
        "regions": len(pred.regions),
        "top_region_mm": [round(v, 1) for v in top.centroid_mm] if top else None,
        "inside_domain": check.inside,
        "seconds": round(pred.timings.get("total", 0.0), 2),
        "device": pred.device,
        "precision": pred.precision,
    }


def _line(r: dict) -> str:
    voxels = ", ".join(f"{name} {n}" for name, n in r["voxels"].items())
    where = f", most uncertain at {tuple(r['top_region_mm'])} mm" if r["top_region_mm"] else ""
    mark = " [outside the training domain: not ranked]" if r["inside_domain"] is False else ""
    return (
        f"{r['case']}: {voxels} voxels; uncertainty score {r['uncertainty_score']:.3f}, {r['regions']} "
        f"uncertain regions{where} ({r['seconds']:.1f} s on {r['device']}, {r['precision']}){mark}"
    )


def _check(volume, pair, model_dir, args: argparse.Namespace):  # noqa: ANN001, ANN202
    """Domain check of one scan; raises the refusal unless ``--outside-domain``."""
    from napari_medseg.models.domain import check_domain, image_stats, model_domain
    from napari_medseg.registry import current_model_dir

    domain = model_domain(pair.card, model_dir or current_model_dir())
    check = check_domain(image_stats(volume), domain, pair.model_id)
    if check.refused and not args.outside_domain:
        raise domain_refusal(check)
    if check.inside is None:
        print(f"warning: {check.message}", file=sys.stderr)
    return check


def _emit(results: list[dict], args: argparse.Namespace, extra: dict | None = None) -> None:
    if args.json:
        print(json.dumps({"cases": results, **(extra or {})}, indent=2))


def run_files(args: argparse.Namespace) -> int:
    from napari_medseg.errors import InputError
    from napari_medseg.inference.prediction import write_prediction
    from napari_medseg.io import load_volume

    if args.out is None:
        raise InputError("give an output folder with --out DIR")
    pair = load_pair(args.model, args.net)
    names = [case_name(p) for p in args.inputs]
    if len(set(names)) != len(names):
        raise InputError("two inputs have the same case name; predict them into different --out folders")
    results = []
    with case_bar(len(names)) as bar:
        for path, case in zip(args.inputs, names, strict=True):
            volume = load_volume(path)
            check = _check(volume, pair, args.model, args)
            pred = _predict(volume, pair, args, case)
            written = write_prediction(pred, volume, args.out, case)
            r = {**result(case, pred, pair.classes, check), "files": {k: str(p) for k, p in written.items()}}
            results.append(r)
            if not args.json:
                bar.write(_line(r) + "".join(f"\n  wrote {p}" for p in written.values()), file=sys.stdout)
            bar.update()
    _emit(results, args)
    return 0


def run_store(args: argparse.Namespace) -> int:
    from napari_medseg.errors import Cancelled, MedsegError, ReadOnlyStoreError, StoreBusyError, user_message
    from napari_medseg.inference.prediction import write_prediction
    from napari_medseg.registry import current_model_dir
    from napari_medseg.review.proposals import human_reference, store_prediction
    from napari_medseg.store import CaseStore

    store = CaseStore.open(args.store, write=True)
    kept = [c for c in store.case_ids() if human_reference(store, c) is not None]
    todo = [c for c in store.case_ids() if store.proposal(c) is None and c not in kept]
    note = f"{len(kept)} cases keep the labels a person made (not predicted)" if kept else ""
    if not todo:
        if not args.json:
            print(f"every case in {args.store} already has a model proposal or a person's label")
        _emit([], args, {"kept_human_labels": kept})
        return 0
    # without --model, a store uses its own current (promoted) model, else the bundled default
    model_dir = args.model or current_model_dir(args.store)
    pair = load_pair(model_dir, args.net)
    results = []
    failed: list[tuple[str, str]] = []
    with case_bar(len(todo)) as bar:
        for case in todo:
            try:  # a locked, missing or broken case is listed at the end; the others still get proposals
                volume = store.load_image(case)
                check = _check(volume, pair, model_dir, args)
                pred = _predict(volume, pair, args, case)
                saved = store_prediction(store, case, pred, args.author, check, volume)
                if args.out is not None:
                    write_prediction(pred, volume, args.out, case)
            except (MedsegError, OSError) as err:
                if isinstance(err, Cancelled | StoreBusyError | ReadOnlyStoreError):
                    raise
                failed.append((case, user_message(err) or str(err)))
                bar.update()
                continue
            r = {**result(case, pred, pair.classes, check), "version": saved.version.number}
            results.append(r)
            if not args.json:
                bar.write(_line(r) + f" -> version {saved.version.number}", file=sys.stdout)
            bar.update()
    if note and not args.json:
        print(note)
    _emit(results, args, {"kept_human_labels": kept, "failed": [{"case": c, "error": m} for c, m in failed]})
    return report_failed(failed, len(todo))


def report_failed(failed: list[tuple[str, str]], total: int) -> int:
    """List the cases a batch could not do on stderr; exit code 1 if there are any, else 0."""
    if not failed:
        return 0
    print(f"{len(failed)} of {total} case(s) failed:", file=sys.stderr)
    for case, message in failed:
        print(f"  {case}: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from napari_medseg.errors import InputError

    if args.store is not None and args.inputs:
        raise InputError("give either input scans or --store, not both")
    if args.store is None and not args.inputs:
        raise InputError("give at least one scan (NIfTI file or DICOM folder) or --store DIR")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; give a folder for the output files")
    return run_store(args) if args.store is not None else run_files(args)
