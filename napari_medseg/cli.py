"""The ``napari-medseg`` command.

Each sub-command lives in its own module under ``napari_medseg.commands`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

Exit codes (also in the README): 0 done; 1 done, but problems were found or some cases failed
(each listed); 2 an error in the input or the environment stopped the command (one ``error:``
line on stderr: our :class:`~napari_medseg.errors.MedsegError`, disk full, permission denied, a
file where a folder was expected, a store database that stayed locked or is damaged); 3 internal
error (a bug: one line naming the file that holds the traceback; ``MEDSEG_DEBUG=1`` shows it
instead); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from napari_medseg import __version__
from napari_medseg.errors import MedsegError, user_message

#: Exit code for a fault of the input or environment, and for a bug.
EXIT_USER_ERROR = 2
EXIT_BUG = 3

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
    "pacs",
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`napari-medseg store list | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
        return 141
    except Exception as err:  # noqa: BLE001 - every fault ends as one line, never a traceback
        message = user_message(err)
        if message is not None:
            print(f"error: {_one_line(message)}", file=sys.stderr)
            return err.exit_code if isinstance(err, MedsegError) else EXIT_USER_ERROR
        if os.environ.get("MEDSEG_DEBUG"):
            raise
        where = _save_traceback(err)
        print(
            f"internal error: {type(err).__name__}: {_one_line(str(err))[:200]} - this is a bug in "
            f"napari-medseg; please report it with {where}",
            file=sys.stderr,
        )
        return EXIT_BUG


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _save_traceback(err: BaseException) -> str:
    """Write ``err``'s traceback to a file in the temp folder; return its path (or a note if that fails)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    text = "".join(traceback.format_exception(err))
    try:
        fd, name = tempfile.mkstemp(prefix=f"napari-medseg-crash-{stamp}-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            fh.write(f"napari-medseg {__version__}\nargv: {sys.argv}\n\n{text}")
        return str(Path(name))
    except OSError:
        return "MEDSEG_DEBUG=1 (the traceback could not be saved)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
