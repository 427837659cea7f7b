"""``napari-medseg failures``: where does the model go wrong? Approved cases ranked worst first.

Example::

    napari-medseg failures --store MYSTORE --report reports/r003
    python -m napari_medseg.commands.failures --store MYSTORE --model MYSTORE/.medseg/models/r003-... --report OUT

Writes ``OUT/failures.csv`` (one row per case, worst mean Dice first, per-class Dice and HD95 in mm,
then mean and sd rows) and ``OUT/failures_hist.png`` (histogram of the per-case mean Dice).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_medseg.errors import MedsegError

HELP = "Rank the store's approved cases by how badly the model segments them (worst first)."
DESCRIPTION = (
    "Run a model on every case whose labels a clinician approved, and compare: Dice overlap per "
    "structure (1 = perfect) and HD95, the 95th-percentile surface distance in millimetres (0 = "
    "perfect). Cases are listed worst first so you can look at the failures; --report writes the "
    "table as CSV and a histogram of the Dice scores as PNG. Without --model the store's current "
    "model is used."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("failures", help=HELP, description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, type=Path, metavar="DIR", help="case store folder")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="MODELDIR",
        help="model folder (default: the store's current model)",
    )
    p.add_argument(
        "--net", choices=("pair", "unetr", "bsnet"), default="pair", help="networks to use (default pair)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="OUT",
        help="folder for failures.csv and failures_hist.png",
    )
    p.add_argument("--no-hd95", action="store_true", help="skip HD95 (faster)")


def run(args: argparse.Namespace) -> int:
    from napari_medseg.evaluation.failures import failure_report, write_report

    def _progress(done: int, total: int) -> None:
        print(f"\rscored {done}/{total} cases", end="", file=sys.stderr, flush=True)

    report = failure_report(
        args.store,
        args.model,
        args.net,
        args.device,
        hd95=not args.no_hd95,
        keep_arrays=False,
        progress=_progress,
    )
    print(file=sys.stderr)
    print(
        f"model {report.model_id} ({report.checkpoint_hash}) on {len(report.cases)} approved cases, worst first"
    )
    print(report.to_evaluation_report().format_table())
    if args.report is not None:
        paths = write_report(report, args.report)
        print(f"wrote {paths['csv']} and {paths['png']}")
    from napari_medseg.commands.predict import report_failed

    return report_failed(report.failed, len(report.cases) + len(report.failed))


def main(argv: list[str] | None = None) -> int:
    """``python -m napari_medseg.commands.failures`` (same as ``napari-medseg failures``)."""
    parser = argparse.ArgumentParser(prog="napari-medseg failures", description=DESCRIPTION)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except MedsegError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
