"""The one epoch loop (``training.loop.run_epochs``) keeps the best or the last epoch's weights, as asked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from napari_medseg.training.distributed import DistInfo
from napari_medseg.training.loop import run_epochs


class _Trainer:
    """Stands in for CoCorrectingTrainer: epoch e sets the weight to e; validation peaks at epoch 2."""

    def __init__(self, epochs: int = 4):
        self.cfg = SimpleNamespace(epochs=epochs)
        self.nets = {"net": nn.Linear(1, 1, bias=False)}
        self.loader = []
        self.val_cases = ["case"]
        self.dist = DistInfo()
        self.epoch = 0
        self.history = []

    def train_epoch(self, epoch: int, cancel=None) -> dict[str, float]:
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


def test_retraining_and_training_share_the_one_loop():
    from napari_medseg.retraining import finetune
    from napari_medseg.training import loop
    from napari_medseg.training.cocorrecting import CoCorrectingTrainer

    assert finetune.run_epochs is loop.run_epochs
    assert CoCorrectingTrainer.fit.__doc__ and "run_epochs" in CoCorrectingTrainer.fit.__doc__


def test_cancel_is_checked_between_batches_of_the_real_trainer(hippo_dir, tmp_path):
    from conftest import tiny_bsnet_trainer

    from napari_medseg.inference.cancel import Cancelled, CancelToken

    tr = tiny_bsnet_trainer(hippo_dir, tmp_path, n_train=4, batch_size=1, epochs=3)
    token = CancelToken()
    steps = []
    real_step = tr.train_step

    def step(batch, epoch):
        steps.append(epoch)
        if len(steps) == 2:
            token.cancel()
        return real_step(batch, epoch)

    tr.train_step = step
    with pytest.raises(Cancelled):
        run_epochs(tr, cancel=token)
    assert len(steps) == 2  # stopped before the third batch of the first epoch
    assert tr.epoch == 0


def test_time_budget_stops_before_an_epoch_that_would_not_fit(monkeypatch):
    from napari_medseg.training import loop

    clock = iter(range(0, 1000, 10))  # every perf_counter call advances 10 s
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    trainer = _Trainer()
    outcome = run_epochs(trainer, time_budget_s=100, keep="last")
    assert outcome.stopped_by_budget
    assert 1 <= len(outcome.history) < 4
