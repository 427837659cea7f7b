"""Fine-tune a model pair with the Co-Correcting trainer: networks built like the starting model.

The networks are built by :class:`~napari_medseg.training.cocorrecting.CoCorrectingTrainer` with the
*starting model's* architecture (its cards' configs and patch size) and then loaded with its weights
(transfer learning). The epoch loop (progress per epoch, cancel between batches, time budget, keep
best or last) is the one training uses: :func:`napari_medseg.training.loop.run_epochs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_medseg.training import distributed
from napari_medseg.training.loop import LoopOutcome, run_epochs

if TYPE_CHECKING:
    from napari_medseg.models.pair import ModelPair
    from napari_medseg.training.cocorrecting import CoCorrectingTrainer, TrainConfig
    from napari_medseg.training.data import CaseArrays

__all__ = ["LoopOutcome", "build_trainer", "config_from_pair", "load_start_weights", "run_epochs"]

#: TrainConfig fields that fix the networks' architecture: a model's weights load only into its own.
ARCHITECTURE_FIELDS = ("patch", "num_classes", "unetr", "bsnet")


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


def load_start_weights(trainer: CoCorrectingTrainer, start: ModelPair) -> None:
    """Load ``start``'s weights into every network ``trainer`` trains (built with ``start``'s architecture)."""
    for name, net in trainer.nets.items():
        net.load_state_dict(start.nets[name].state_dict())


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
    """The trainer, with every network it trains initialised from ``start``'s weights and proposal weights."""
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
        parent_model=start.model_id,
    )
    load_start_weights(trainer, start)
    # the candidate proposes like its parent: the validation cases judge promotion, so they must not
    # also pick the proposal weight
    trainer.proposal_weight = float(start.proposal_weights.get("unetr", 0.5))
    trainer.pick_proposal_weight = False
    return trainer
