"""The ``napari-medseg`` command.

Each sub-command lives in its own module under ``napari_medseg.commands`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. Errors meant for
the user (:class:`~napari_medseg.errors.MedsegError`) are printed as one line and turned into a
non-zero exit code; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from napari_medseg import __version__
from napari_medseg.errors import MedsegError

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = (
    "demo",
    "info",
    "store",
    "predict",
    "train",
    "evaluate",
    "failures",
    "retrain",
    "models",
    "dicom_seg",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-medseg",
        description=(
            "Review, correct and retrain 3D segmentations (CT/MRI). Proposals come from a "
            "UNETR + BS-Net pair; where the two disagree the viewer shows an uncertainty heat map."
        ),
    )
    parser.add_argument("--version", action="version", version=f"napari-medseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"napari_medseg.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except MedsegError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`napari-medseg store list | head`): stop quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
