"""``napari-medseg retrain``: fine-tune the current model on a store's corrected labels; promote it only if better.

Output for people: one line per epoch, a progress bar in cases while the models are scored, and the
decision. ``--json`` prints the final result as one JSON object. ``--events`` (what the Train panel,
which runs this command as a separate process, reads) prints one machine line per event instead::

    PROGRESS {"stage": "train", "epoch": 1, "epochs": 5, "loss": 0.91, "dice": 0.62, ...}
    PROGRESS {"stage": "evaluate", "model": "candidate", "done": 3, "total": 8}
    RESULT {"status": "done", "promoted": true, "reason": "...", "model_id": "...", ...}

``status`` is ``done``, ``cancelled`` (Ctrl-C / SIGTERM: training stops at the next batch and the
model registry is left untouched) or ``error`` (with ``message``). Examples::

    napari-medseg retrain --store MYSTORE --epochs 5
    python -m napari_medseg.commands.retrain --store MYSTORE --time-budget 30 --min-delta 0.005
    torchrun --nproc_per_node 2 -m napari_medseg.commands.retrain --store MYSTORE --device cpu
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from typing import Any

from napari_medseg.errors import Cancelled, InputError, MedsegError

HELP = "Retrain the model on the store's corrected labels; keep it only if it is better."
DESCRIPTION = (
    "Fine-tune the store's current model (UNETR + BS-Net) on the latest labels of every case. "
    "Approved labels are trusted; other labels are corrected near their boundaries during training. "
    "About a fifth of the approved cases (always the same ones, chosen from the case name) are held out; "
    "the new model and the current one are both scored on them (Dice, HD95), and the new model "
    "replaces the current one only if its mean Dice is at least as good (plus --min-delta) and no "
    "structure gets much worse. Every trained model is kept: see 'napari-medseg models list'. "
    "Ctrl-C stops cleanly and changes nothing."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("retrain", help=HELP, description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, metavar="DIR", help="case store folder")
    p.add_argument("--epochs", type=int, default=5, help="most passes over the training cases (default 5)")
    p.add_argument(
        "--time-budget", type=float, default=None, metavar="MIN", help="stop training after about MIN minutes"
    )
    p.add_argument(
        "--nets",
        choices=("pair", "unetr", "bsnet"),
        default="pair",
        help="retrain both networks (default) or one (the other is kept)",
    )
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train (default auto)"
    )
    p.add_argument(
        "--min-delta",
        type=float,
        default=0.0,
        metavar="F",
        help="the new model's mean Dice must beat the current one by at least F (default 0)",
    )
    p.add_argument(
        "--max-class-drop",
        type=float,
        default=0.02,
        metavar="F",
        help="refuse the new model if any structure's Dice drops by more than F (default 0.02)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="share of approved cases held out (default 0.2)",
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=int, default=None, help="cases per step (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the training (default 0)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the result as one JSON object")
    out.add_argument(
        "--events", action="store_true", help="print PROGRESS/RESULT lines for a program (the Train panel)"
    )


def _emit(kind: str, payload: dict[str, Any]) -> None:
    print(f"{kind} {json.dumps(payload, default=str, allow_nan=False)}", flush=True)


class _Readable:
    """Progress and result for a person (default) or as one JSON object (``--json``)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.bar: Any = None

    def progress(self, event: dict[str, Any]) -> None:
        from tqdm import tqdm

        stage = event.get("stage")
        if stage == "train" and not self.as_json:
            dice = event.get("dice")
            scored = f", validation Dice {dice:.3f}" if isinstance(dice, int | float) else ""
            loss = event.get("loss")
            lost = f": loss {loss:.3f}" if isinstance(loss, int | float) else ""
            print(f"epoch {event.get('epoch')}/{event.get('epochs')}{lost}{scored}", flush=True)
        elif stage == "evaluate":
            total, done = int(event.get("total") or 0), int(event.get("done") or 0)
            if self.bar is None or self.bar.total != total or done < self.bar.n:
                self.close()
                self.bar = tqdm(
                    total=total, desc=f"scoring {event.get('model')}", unit="case", file=sys.stderr,
                    leave=False, disable=None,
                )  # fmt: skip
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def result(self, payload: dict[str, Any]) -> None:
        self.close()
        if self.as_json:
            print(json.dumps(payload, default=str, allow_nan=False), flush=True)
            return
        status = payload.get("status")
        if status == "cancelled":
            print("cancelled: nothing was registered, the current model is unchanged")
        elif status == "done":
            verdict = (
                "promoted: it is now the current model" if payload.get("promoted") else "kept, not promoted"
            )
            print(f"new model {payload.get('model_id')} {verdict}. {payload.get('reason', '')}".strip())
            for who in ("candidate", "current"):
                metrics = payload.get(f"{who}_metrics") or {}
                shown = ", ".join(
                    f"{k.replace('_', ' ')} {v:.3f}" for k, v in metrics.items() if isinstance(v, int | float)
                )
                if shown:
                    print(f"  {who}: {shown}")


def _clean(event: dict[str, Any]) -> dict[str, Any]:
    from napari_medseg.retraining.retrain import _finite

    return _finite(dict(event))


def run(args: argparse.Namespace) -> int:
    from napari_medseg.inference.cancel import CancelToken
    from napari_medseg.registry import PromotionRule
    from napari_medseg.retraining import retrain
    from napari_medseg.training import distributed
    from napari_medseg.training.cocorrecting import resolve_device

    if args.epochs < 1:
        raise InputError("--epochs must be at least 1")
    if args.time_budget is not None and args.time_budget <= 0:
        raise InputError("--time-budget must be a positive number of minutes")
    token = CancelToken()

    def _stop(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
        token.cancel()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    info = distributed.init_from_env(resolve_device(args.device).type)
    settings: dict[str, Any] = {"seed": args.seed}
    if args.lr is not None:
        settings["lr"] = args.lr
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    main = info.is_main
    readable = None if args.events else _Readable(args.json)
    report = _emit if args.events else lambda _kind, payload: readable.result(payload)
    progress = (
        (lambda e: _emit("PROGRESS", _clean(e))) if args.events else (lambda e: readable.progress(_clean(e)))
    )
    try:
        result = retrain(
            args.store,
            epochs=args.epochs,
            time_budget_s=args.time_budget * 60 if args.time_budget is not None else None,
            nets=args.nets,
            device=args.device,
            rule=PromotionRule(min_delta=args.min_delta, max_class_drop=args.max_class_drop),
            progress=progress if main else None,
            cancel=token,
            val_fraction=args.val_fraction,
            settings=settings,
            dist_info=info,
            command="napari-medseg retrain " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        )
    except Cancelled:
        if main:
            report(
                "RESULT",
                {"status": "cancelled", "promoted": False, "reason": "cancelled; registry unchanged"},
            )
        return 130
    except MedsegError as err:
        if main and args.events:  # a person reads the error line the CLI prints
            _emit("RESULT", {"status": "error", "promoted": False, "message": str(err)})
        if readable is not None:
            readable.close()
        raise
    finally:
        distributed.shutdown(info)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if main:
        report("RESULT", {"status": "done", **result.to_dict()})
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m napari_medseg.commands.retrain``: the same command without the ``napari-medseg`` dispatcher."""
    parser = argparse.ArgumentParser(prog="napari-medseg retrain", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except MedsegError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
