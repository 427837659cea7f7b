"""The Co-Correcting trainer: a few steps on real cases lower the loss; checkpoints resume."""

from __future__ import annotations

import torch

from napari_medseg.training.cocorrecting import CoCorrectingTrainer, TrainConfig
from napari_medseg.training.data import cases_from_msd, load_cases

TINY = {
    "patch": (32, 48, 32),
    "unetr": {"hidden_size": 32, "mlp_dim": 64, "num_heads": 2, "feature_size": 4},
    "bsnet": {"filters": [4, 8, 16], "deep_supervision": 1},
    "progress": False,
    "augment": False,
    "warmup_epochs": 0,
    "curriculum_start": 1.0,
    "lr": 3e-3,
}


def _trainer(hippo_dir, tmp_path, **kw):
    recs = cases_from_msd(hippo_dir)[:5]
    cfg = TrainConfig(**{**TINY, "patch": TINY["patch"], **kw})
    return CoCorrectingTrainer(
        load_cases(recs[:4], cfg.patch), load_cases(recs[4:], cfg.patch), cfg, tmp_path
    )


def test_a_few_pair_steps_lower_the_loss_of_both_networks(hippo_dir, tmp_path):
    tr = _trainer(hippo_dir, tmp_path, batch_size=2, epochs=8)
    tr.correction.admitted[:] = True
    batch = next(iter(tr.loader))
    first = tr.train_step(batch, epoch=1)
    for _ in range(5):
        last = tr.train_step(batch, epoch=1)
    assert last["loss_unetr"] < first["loss_unetr"]
    assert last["loss_bsnet"] < first["loss_bsnet"]
    assert 0 < last["forget_rate"] <= 0.2
    assert "loss_labels" in last  # the label distributions took part


def test_checkpoint_resumes_nets_labels_and_epoch(hippo_dir, tmp_path):
    tr = _trainer(hippo_dir, tmp_path, batch_size=2, epochs=2)
    tr.correction.admitted[:] = True
    tr.train_step(next(iter(tr.loader)), epoch=1)
    tr.epoch = 1
    tr.save_checkpoint()
    again = _trainer(hippo_dir, tmp_path, batch_size=2, epochs=2)
    again.load_checkpoint(tmp_path)
    assert again.epoch == 1
    assert torch.equal(again.correction.logits, tr.correction.logits)
    assert again.correction.admitted.all()
    for name in tr.nets:
        for p, q in zip(tr.nets[name].parameters(), again.nets[name].parameters(), strict=True):
            assert torch.equal(p, q)
    assert again.optimizer.state_dict()["state"].keys() == tr.optimizer.state_dict()["state"].keys()
