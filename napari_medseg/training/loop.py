"""The one epoch loop, for training from scratch (``napari-medseg train``) and for retraining.

:func:`run_epochs` drives a :class:`~napari_medseg.training.cocorrecting.CoCorrectingTrainer` from its
current epoch to ``cfg.epochs``: train an epoch (the cancel token is checked before every batch),
validate (every DDP rank, so the peer scores that gate voxel selection and the proposal weight agree
on all ranks), build the epoch's row, keep the best or the last epoch's weights, report the row, stop
early when the next epoch would not fit the time budget. With ``persist=True`` (training runs) each
epoch also writes ``train_log.csv``, the resumable checkpoint and — when the score improved — the
model folder; retraining keeps everything in memory and judges the candidate itself.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from napari_medseg.training import distributed

if TYPE_CHECKING:
    from napari_medseg.inference.cancel import CancelToken
    from napari_medseg.training.cocorrecting import CoCorrectingTrainer

EventFn = Callable[[dict[str, Any]], None]
KEEP = ("best", "last")


@dataclass
class LoopOutcome:
    """What the loop did: per-epoch rows, the kept epoch and its metrics, and why it stopped."""

    history: list[dict[str, Any]] = field(default_factory=list)
    kept_epoch: int = 0
    kept_metrics: dict[str, float] = field(default_factory=dict)
    stopped_by_budget: bool = False
    seconds: float = 0.0


def _round(v: Any) -> Any:
    return round(float(v), 5) if isinstance(v, float) else v


def _snapshot(trainer: CoCorrectingTrainer) -> dict[str, Any]:
    return {
        "nets": {n: copy.deepcopy(net.state_dict()) for n, net in trainer.nets.items()},
        "proposal_weight": getattr(trainer, "proposal_weight", None),
    }


def _restore(trainer: CoCorrectingTrainer, snap: dict[str, Any]) -> None:
    for name, net in trainer.nets.items():
        net.load_state_dict(snap["nets"][name])
    if snap["proposal_weight"] is not None:
        trainer.proposal_weight = snap["proposal_weight"]


def run_epochs(
    trainer: CoCorrectingTrainer,
    time_budget_s: float | None = None,
    on_epoch: EventFn | None = None,
    cancel: CancelToken | None = None,
    keep: str = "best",
    persist: bool = False,
) -> LoopOutcome:
    """Train from ``trainer.epoch`` to ``trainer.cfg.epochs`` (fewer if the budget runs out).

    Args:
        trainer: the trainer (its nets, loader, optimiser, validation cases).
        time_budget_s: stop before an epoch that would end past this many seconds.
        on_epoch: called on the main rank with each epoch's row (``epoch``, ``epochs``, ``loss``,
            ``dice``, ``train_s``, ``epoch_s``, ``elapsed_s``, the trainer's stats and metrics).
        cancel: checked before every batch and after every epoch; raises ``Cancelled`` (the nets
            are left as they are).
        keep: ``"best"`` leaves the weights (and proposal weight) of the epoch with the best
            validation score loaded; ``"last"`` leaves the last epoch's — use it when the validation
            cases also judge the result, or picking the epoch on them would bias that judgement.
        persist: write log, checkpoint and best model into ``trainer.out_dir`` after each epoch.
    Returns:
        The :class:`LoopOutcome`; ``kept_epoch`` / ``kept_metrics`` describe the kept weights.
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be 'best' or 'last', not {keep!r}")
    info = trainer.dist
    out = LoopOutcome()
    best_score = getattr(trainer, "best_score", -math.inf)
    snap: dict[str, Any] | None = None
    t_start = time.perf_counter()
    epochs = trainer.cfg.epochs
    first = trainer.epoch
    for epoch in range(first, epochs):
        t0 = time.perf_counter()
        stats = trainer.train_epoch(epoch, cancel=cancel)
        trainer.epoch = epoch + 1
        train_s = time.perf_counter() - t0
        metrics = trainer.validate() if trainer.val_cases else {}
        stop = False
        if info.is_main:
            losses = [v for k, v in stats.items() if k.startswith("loss_") and k != "loss_labels"]
            score = trainer.score(metrics)
            sched = getattr(trainer, "scheduler", None)
            row = {
                "epoch": epoch + 1,
                "epochs": epochs,
                "lr": sched.get_last_lr()[0] if sched is not None else None,
                "loss": float(sum(losses) / max(len(losses), 1)),
                "dice": float(score) if math.isfinite(score) else None,
                "train_s": round(train_s, 2),
                "epoch_s": round(time.perf_counter() - t0, 2),
                "elapsed_s": round(time.perf_counter() - t_start, 2),
                **{k: _round(v) for k, v in stats.items()},
                **{k: _round(v) for k, v in metrics.items()},
            }
            trainer.history.append(row)
            out.history.append(row)
            improved = score > best_score or out.kept_epoch == 0 and best_score == -math.inf
            if keep == "last" or improved:
                out.kept_epoch, out.kept_metrics = epoch + 1, dict(metrics)
            if improved:
                best_score = score
                trainer.best_score, trainer.best_epoch = score, epoch + 1
                if keep == "best":
                    snap = _snapshot(trainer)
                if persist:
                    trainer.save_model(trainer.out_dir, metrics)
            if persist:
                trainer.write_log()
                trainer.save_checkpoint()
                print(trainer.summary(row), flush=True)
            if on_epoch is not None:
                on_epoch(row)
            elapsed = time.perf_counter() - t_start
            per_epoch = elapsed / (epoch + 1 - first)
            if time_budget_s is not None and epoch + 1 < epochs and elapsed + per_epoch > time_budget_s:
                stop = out.stopped_by_budget = True
        stop = bool(distributed.broadcast_object(stop, info))
        out.stopped_by_budget = stop
        distributed.barrier(info)
        if cancel is not None:
            cancel.check()
        if stop:
            break
    if info.is_main and keep == "best" and snap is not None:
        _restore(trainer, snap)
    out.seconds = round(time.perf_counter() - t_start, 2)
    return out
