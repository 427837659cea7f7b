"""Fine-tune a model pair with the Co-Correcting trainer, epoch by epoch, with progress, cancel and a time budget.

The networks are built by :class:`~napari_medseg.training.cocorrecting.CoCorrectingTrainer` with the
*starting model's* architecture (its cards' configs and patch size) and then loaded with its weights
(transfer learning). The epoch loop is driven here instead of ``trainer.fit()`` so that each epoch
reports ``{"epoch", "epochs", "loss", "dice", ...}``, a :class:`~napari_medseg.inference.cancel.CancelToken`
is checked between batches, and training stops early when the next epoch would not fit the time
budget. The weights of the epoch with the best validation Dice are kept in memory.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from napari_medseg.training import distributed

if TYPE_CHECKING:
    from napari_medseg.inference.cancel import CancelToken
    from napari_medseg.models.pair import ModelPair
    from napari_medseg.training.cocorrecting import CoCorrectingTrainer, TrainConfig
    from napari_medseg.training.data import CaseArrays

EventFn = Callable[[dict[str, Any]], None]


class _CancellableLoader:
    """Wraps the trainer's DataLoader: same length, checks ``cancel`` before each batch."""

    def __init__(self, loader: Any, cancel: CancelToken | None):
        self.loader, self.cancel = loader, cancel

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            if self.cancel is not None:
                self.cancel.check()
            yield batch


@dataclass
class FinetuneOutcome:
    """What the epoch loop did: per-epoch rows, best epoch and why it stopped."""

    history: list[dict[str, Any]] = field(default_factory=list)
    kept_epoch: int = 0
    kept_metrics: dict[str, float] = field(default_factory=dict)
    stopped_by_budget: bool = False
    seconds: float = 0.0


def config_from_pair(pair: ModelPair, **settings: Any) -> TrainConfig:
    """A TrainConfig whose networks match ``pair`` (configs, patch, classes), plus ``settings``."""
    from napari_medseg.training.cocorrecting import TrainConfig

    net_cfg = {name: dict(card["config"]) for name, card in pair.cards.items()}
    return TrainConfig(
        patch=pair.patch_size,
        num_classes=max(pair.classes) + 1,
        unetr=net_cfg.get("unetr", {}),
        bsnet=net_cfg.get("bsnet", {}),
        **settings,
    )


def build_trainer(
    start: ModelPair,
    train_cases: list[CaseArrays],
    val_cases: list[CaseArrays],
    config: TrainConfig,
    out_dir: Any,
    device: str,
    card_training: dict[str, Any],
    model_id: str,
    dist_info: distributed.DistInfo | None = None,
) -> CoCorrectingTrainer:
    """The trainer, with every network it trains initialised from ``start``'s weights."""
    from napari_medseg.models.domain import model_domain
    from napari_medseg.training.cocorrecting import CoCorrectingTrainer

    # a fine-tuned model keeps its start model's training domain (unless the caller records one)
    card_training = {"domain": model_domain(start.card), **card_training}
    trainer = CoCorrectingTrainer(
        train_cases,
        val_cases,
        config,
        out_dir,
        device=device,
        card_training=card_training,
        classes=start.classes,
        dist_info=dist_info,
        model_id=model_id,
    )
    for name, net in trainer.nets.items():
        net.load_state_dict(start.nets[name].state_dict())
    return trainer


def run_epochs(
    trainer: CoCorrectingTrainer,
    time_budget_s: float | None = None,
    on_epoch: EventFn | None = None,
    cancel: CancelToken | None = None,
    keep: str = "best",
) -> FinetuneOutcome:
    """Train ``trainer.cfg.epochs`` epochs (fewer if the budget runs out).

    ``keep="best"`` leaves the weights of the epoch with the best validation score loaded;
    ``keep="last"`` leaves the last epoch's (use it when the validation cases also judge the result:
    picking the epoch on them as well would bias that judgement upward). ``kept_epoch`` /
    ``kept_metrics`` of the outcome describe the kept weights either way.
    Raises ``Cancelled`` when ``cancel`` fires (the trainer's nets are then left as they are).
    """
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', not {keep!r}")
    import torch

    trainer.loader = _CancellableLoader(trainer.loader, cancel)
    info = trainer.dist
    out = FinetuneOutcome()
    best_state: dict[str, dict[str, torch.Tensor]] | None = None
    best_score = -math.inf
    t_start = time.perf_counter()
    epochs = trainer.cfg.epochs
    for epoch in range(epochs):
        t0 = time.perf_counter()
        stats = trainer.train_epoch(epoch)
        trainer.epoch = epoch + 1
        train_s = time.perf_counter() - t0
        stop = False
        # every rank validates the same cases: costs nothing in wall time (the others would wait at
        # the broadcast below) and cannot hang if validation ever synchronises across ranks again
        # (MONAI's DiceMetric.aggregate() all-gathers; rank-0-only validation with it hung torchrun)
        metrics = trainer.validate() if trainer.val_cases else {}
        if info.is_main:
            losses = [v for k, v in stats.items() if k.startswith("loss_") and k != "loss_labels"]
            score = trainer.score(metrics)
            row = {
                "epoch": epoch + 1,
                "epochs": epochs,
                "loss": float(sum(losses) / max(len(losses), 1)),
                "dice": float(score) if math.isfinite(score) else None,
                "train_s": round(train_s, 2),
                "elapsed_s": round(time.perf_counter() - t_start, 2),
                **{k: round(float(v), 5) for k, v in stats.items()},
                **{k: round(float(v), 5) for k, v in metrics.items()},
            }
            out.history.append(row)
            if keep == "last" or score > best_score or out.kept_epoch == 0:
                best_score, out.kept_epoch, out.kept_metrics = score, epoch + 1, dict(metrics)
                if keep == "best":
                    best_state = {n: copy.deepcopy(net.state_dict()) for n, net in trainer.nets.items()}
            if on_epoch is not None:
                on_epoch(row)
            elapsed = time.perf_counter() - t_start
            per_epoch = elapsed / (epoch + 1)
            if time_budget_s is not None and epoch + 1 < epochs and elapsed + per_epoch > time_budget_s:
                stop = out.stopped_by_budget = True
        stop = bool(distributed.broadcast_object(stop, info))
        out.stopped_by_budget = stop
        distributed.barrier(info)
        if cancel is not None:
            cancel.check()
        if stop:
            break
    if info.is_main and best_state is not None:
        for name, net in trainer.nets.items():
            net.load_state_dict(best_state[name])
    out.seconds = round(time.perf_counter() - t_start, 2)
    return out
