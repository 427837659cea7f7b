"""``run_epochs`` keeps the best or the last epoch's weights, as asked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from napari_medseg.retraining.finetune import run_epochs
from napari_medseg.training.distributed import DistInfo


class _Trainer:
    """Stands in for CoCorrectingTrainer: epoch e sets the weight to e; validation peaks at epoch 2."""

    def __init__(self, epochs: int = 4):
        self.cfg = SimpleNamespace(epochs=epochs)
        self.nets = {"net": nn.Linear(1, 1, bias=False)}
        self.loader = []
        self.val_cases = ["case"]
        self.dist = DistInfo()
        self.epoch = 0

    def train_epoch(self, epoch: int) -> dict[str, float]:
        with torch.no_grad():
            self.nets["net"].weight.fill_(epoch + 1)
        return {"loss_net": 1.0 / (epoch + 1)}

    def validate(self) -> dict[str, float]:
        return {"dice_pair_mean": [0.5, 0.9, 0.7, 0.6][self.epoch - 1]}

    def score(self, metrics: dict[str, float]) -> float:
        return metrics["dice_pair_mean"]


@pytest.mark.parametrize(("keep", "epoch"), [("best", 2), ("last", 4)])
def test_kept_weights_are_the_best_or_the_last_epoch(keep, epoch):
    trainer = _Trainer()
    outcome = run_epochs(trainer, keep=keep)
    assert len(outcome.history) == 4
    assert outcome.kept_epoch == epoch
    assert float(trainer.nets["net"].weight.detach()) == epoch
    assert outcome.kept_metrics["dice_pair_mean"] == [0.5, 0.9, 0.7, 0.6][epoch - 1]


def test_unknown_keep_is_refused():
    with pytest.raises(ValueError, match="keep"):
        run_epochs(_Trainer(), keep="median")
