"""``napari-medseg predict``: proposal labels + boundary-uncertainty map for scans or a case store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Segment scans with the model pair and map where its two networks disagree."
DESCRIPTION = (
    "Run the segmentation model on one or more scans (NIfTI files or DICOM series folders) and write, "
    "for each scan, on the scan's own voxel grid: <case>_label.nii.gz (the proposed segmentation), "
    "<case>_uncertainty.nii.gz (near the structure boundaries: 0 = the two networks agree and are sure, "
    "1 = they disagree, or together are split evenly between two classes) and <case>_regions.json (the uncertain regions, most important first, with "
    "their positions in voxels and millimetres). With --store, every case of a case store that has no "
    "model proposal yet gets one, saved as a new label version marked as a proposal, with its case "
    "uncertainty score for the review queue."
)


def default_model_dir() -> Path:
    """The bundled default model of the installed package (``napari_medseg/resources/models/default``)."""
    from napari_medseg import bundled

    return bundled.default_model_dir()


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
    """Load the networks needed for ``net`` from ``model_dir`` (default bundled model)."""
    from napari_medseg.models.pair import ModelPair

    names = ("unetr", "bsnet") if net == "pair" else (net,)
    return ModelPair.load(model_dir or default_model_dir(), device="cpu", nets=names)


class _Bar:
    """tqdm bar over the windows of one case (callable as a progress callback)."""

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.desc = desc
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = self._tqdm(total=total, desc=self.desc, unit="window", leave=False, file=sys.stderr)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _predict(volume, pair, args: argparse.Namespace, desc: str):  # noqa: ANN001, ANN202
    from napari_medseg.inference.engine import predict_volume

    bar = _Bar(desc)
    try:
        return predict_volume(
            volume,
            pair,
            net=args.net,
            device=args.device,
            overlap=args.overlap,
            progress=bar,
            warn=lambda m: print(f"warning: {desc}: {m}", file=sys.stderr),
            keep_probs=False,
        )
    finally:
        bar.close()


def _line(case: str, pred) -> str:  # noqa: ANN001
    top = pred.regions[0] if pred.regions else None
    where = f", top region {top.size} vox at {tuple(round(v, 1) for v in top.centroid_mm)} mm" if top else ""
    return (
        f"{case}: {int((pred.labels > 0).sum())} foreground voxels, score {pred.score:.4f}, "
        f"{len(pred.regions)} uncertain regions{where} ({pred.timings.get('total', 0):.2f} s on {pred.device})"
    )


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
    for path, case in zip(args.inputs, names, strict=True):
        volume = load_volume(path)
        pred = _predict(volume, pair, args, case)
        written = write_prediction(pred, volume, args.out, case)
        print(_line(case, pred))
        for p in written.values():
            print(f"  wrote {p}")
    return 0


def run_store(args: argparse.Namespace) -> int:
    from napari_medseg.errors import Cancelled, MedsegError, ReadOnlyStoreError, StoreBusyError, user_message
    from napari_medseg.inference.prediction import write_prediction
    from napari_medseg.store import CaseStore

    store = CaseStore.open(args.store, write=True)
    todo = [c for c in store.case_ids() if store.proposal(c) is None]
    if not todo:
        print(f"every case in {args.store} already has a model proposal")
        return 0
    from napari_medseg.registry import ModelRegistry

    # without --model, a store uses its own current (promoted) model, else the bundled default
    pair = load_pair(args.model or ModelRegistry(args.store).current_model_dir(), args.net)
    failed: list[tuple[str, str]] = []
    for case in todo:
        try:  # a locked, missing or broken case is listed at the end; the others still get proposals
            volume = store.load_image(case)
            pred = _predict(volume, pair, args, case)
            info = store.save_version(
                case,
                pred.labels,
                author=args.author,
                source=pred.source,
                note=f"{pred.net} proposal, uncertainty score {pred.score:.4f}",
                is_proposal=True,
            )
            if store.case(case).status == "new":  # save_version normally does this already
                store.set_status(case, "proposed", args.author)
            store.set_uncertainty(case, pred.score, author=args.author)
            if args.out is not None:
                write_prediction(pred, volume, args.out, case)
        except (MedsegError, OSError) as err:
            if isinstance(err, Cancelled | StoreBusyError | ReadOnlyStoreError):
                raise
            failed.append((case, user_message(err) or str(err)))
            continue
        print(_line(case, pred) + f" -> version {info.number}")
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
