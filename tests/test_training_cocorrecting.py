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


def _mixed_trainer(hippo_dir, tmp_path):
    """4 cases: 0 and 1 approved (trusted), 2 and 3 not; every case admitted to label correction."""
    import dataclasses

    recs = cases_from_msd(hippo_dir)[:5]
    recs = [dataclasses.replace(r, approved=i < 2) for i, r in enumerate(recs)]
    cfg = TrainConfig(**{**TINY, "batch_size": 2, "epochs": 4, "forget_ramp_epochs": 1})
    tr = CoCorrectingTrainer(load_cases(recs[:4], cfg.patch), load_cases(recs[4:], cfg.patch), cfg, tmp_path)
    tr.correction.admitted[:] = True
    return tr


def _step_inputs(tr, batch):
    from napari_medseg.training.cocorrecting import voxel_ce
    from napari_medseg.training.data import flat_canonical_index

    given = batch["label"]
    flat = flat_canonical_index(batch["coords"], [tr.shapes[i] for i in batch["index"].tolist()])
    corr = tr.correction.targets(batch["index"], flat, given)
    with torch.no_grad():
        logits = {n: tr._forward(n, batch["image"])[0].float() for n in tr.nets}
    probs = {n: torch.softmax(v, 1) for n, v in logits.items()}
    return given, corr, probs, {n: voxel_ce(v, corr.target) for n, v in logits.items()}


def test_approved_labels_are_never_dropped_nor_corrected(hippo_dir, tmp_path):
    tr = _mixed_trainer(hippo_dir, tmp_path)
    with torch.no_grad():  # make every label-distribution voxel disagree with its given label
        tr.correction.logits.copy_(-tr.correction.logits)
    batch = tr.loader.batch([0, 2])  # one approved, one unapproved sample
    given, corr, probs, losses = _step_inputs(tr, batch)
    tr.noise_estimate = 0.4  # as if the unapproved labels were 40 % noisy at the boundary
    tr.peer_scores = {"unetr": 0.8, "bsnet": 0.8}
    weights, forget = tr.voxel_weights(batch["approved"], given, probs, losses, epoch=3)
    assert forget > 0.3
    for w in weights.values():
        assert bool((w[0] == 1).all())  # the approved sample: every voxel kept
        assert bool((w[1] == 0).any())  # the unapproved one: some band voxels dropped
    onehot = torch.nn.functional.one_hot(given[0], 3).permute(3, 0, 1, 2).float()
    assert torch.equal(corr.target[0], onehot)  # approved: the given label, exactly
    assert not bool(corr.corrected[0].any())
    assert bool(corr.corrected[1].any())  # unapproved: its band follows the learnable labels


def test_a_weak_peer_stops_choosing_for_its_partner(hippo_dir, tmp_path):
    from napari_medseg.models.boundary import boundary_band
    from napari_medseg.training.selection import small_loss_mask

    tr = _mixed_trainer(hippo_dir, tmp_path)
    batch = tr.loader.batch([2, 3])
    given, _, probs, losses = _step_inputs(tr, batch)
    band = boundary_band(given, tr.cfg.band_radius)[:, 0]
    tr.peer_scores = {"unetr": 0.40, "bsnet": 0.85}  # UNETR far behind
    tr.noise_estimate = 0.3
    weights, forget = tr.voxel_weights(batch["approved"], given, probs, losses, epoch=3)
    assert forget > 0
    own = {n: small_loss_mask(losses[n], forget, band).float() for n in tr.nets}
    assert torch.equal(weights["bsnet"], own["bsnet"])  # BS-Net picks its own voxels
    assert torch.equal(weights["unetr"], own["bsnet"])  # and still chooses for the weak UNETR
    tr.peer_scores = {"unetr": 0.83, "bsnet": 0.85}  # peers of similar skill: they exchange
    tr.noise_estimate = 0.3
    weights, forget2 = tr.voxel_weights(batch["approved"], given, probs, losses, epoch=3)
    assert forget2 > 0  # (the rate may differ: now both nets judge the noise)
    own = {n: small_loss_mask(losses[n], forget2, band).float() for n in tr.nets}
    assert torch.equal(weights["bsnet"], own["unetr"])
    assert torch.equal(weights["unetr"], own["bsnet"])


def test_clean_trusted_labels_cost_no_supervision(hippo_dir, tmp_path):
    tr = _mixed_trainer(hippo_dir, tmp_path)
    batch = tr.loader.batch([0, 1])  # both approved
    given, _, probs, losses = _step_inputs(tr, batch)
    tr.noise_estimate = 0.4
    weights, _ = tr.voxel_weights(batch["approved"], given, probs, losses, epoch=3)
    assert all(bool((w == 1).all()) for w in weights.values())


def test_only_the_nets_that_choose_judge_the_noise(hippo_dir, tmp_path):
    from napari_medseg.models.boundary import boundary_band
    from napari_medseg.training.selection import noise_share

    tr = _mixed_trainer(hippo_dir, tmp_path)
    batch = tr.loader.batch([2, 3])  # unapproved: their band is judged
    given, _, probs, losses = _step_inputs(tr, batch)
    band = boundary_band(given, tr.cfg.band_radius)[:, 0]
    k = probs["bsnet"].shape[1]
    # BS-Net contradicts every given label confidently; UNETR agrees with every one (it learned the bias)
    wrong = torch.nn.functional.one_hot((given + 1) % k, k).permute(0, 4, 1, 2, 3).float()
    probs = {"unetr": torch.nn.functional.one_hot(given, k).permute(0, 4, 1, 2, 3).float(), "bsnet": wrong}
    tr.peer_scores = {"unetr": 0.83, "bsnet": 0.85}  # similar skill: both judge, UNETR vetoes everything
    tr.noise_estimate = None
    tr.voxel_weights(batch["approved"], given, probs, losses, epoch=3)
    assert tr.noise_estimate == 0.0
    tr.peer_scores = {"unetr": 0.40, "bsnet": 0.85}  # UNETR far behind: BS-Net alone judges
    tr.noise_estimate = None
    _, forget = tr.voxel_weights(batch["approved"], given, probs, losses, epoch=3)
    assert tr.noise_estimate == 1.0 == noise_share([wrong], given, band)
    assert forget == tr.cfg.forget_max  # capped, fully ramped in at epoch 3


def test_a_net_alone_starts_where_it_starts_in_the_pair(hippo_dir, tmp_path):
    # arms of one seed (bench/pair_vs_single.py) must differ by the method, not by initial weights
    pair = _trainer(hippo_dir, tmp_path / "pair", seed=3)
    for name in ("unetr", "bsnet"):
        alone = _trainer(hippo_dir, tmp_path / name, seed=3, nets=name).nets[name].state_dict()
        for key, value in pair.nets[name].state_dict().items():
            assert torch.equal(value, alone[key]), (name, key)
    other = _trainer(hippo_dir, tmp_path / "other", seed=4, nets="bsnet").nets["bsnet"].state_dict()
    assert not all(torch.equal(v, other[k]) for k, v in pair.nets["bsnet"].state_dict().items())


def test_the_forget_floor_applies_only_while_approved_labels_anchor_the_boundary(hippo_dir, tmp_path):
    tr = _mixed_trainer(hippo_dir, tmp_path / "mixed")  # two approved, two unapproved cases
    batch = tr.loader.batch([0, 2])
    given, _corr, probs, losses = _step_inputs(tr, batch)
    tr.peer_scores = {"unetr": 0.8, "bsnet": 0.8}
    tr.noise_estimate = 0.0
    tr.cfg.noise_confidence = 1.0  # no voxel can count as contradicted: the estimate stays 0
    assert tr.anchored
    _, forget = tr.voxel_weights(batch["approved"], given, probs, losses, epoch=3)
    assert forget == tr.cfg.forget_floor  # estimate 0, yet half the unapproved band is forgotten
    tr.anchored = False  # as with no approved case at all: the rate follows the estimate alone
    tr.noise_estimate = 0.0
    _, forget = tr.voxel_weights(batch["approved"], given, probs, losses, epoch=3)
    assert forget == 0.0


def test_with_every_label_approved_there_is_no_forget_rate(hippo_dir, tmp_path):
    """Nothing may be dropped, so the trainer applies (and logs) no forget rate, floor or not."""
    import dataclasses

    recs = [dataclasses.replace(r, approved=True) for r in cases_from_msd(hippo_dir)[:3]]
    cfg = TrainConfig(**{**TINY, "batch_size": 2, "epochs": 4, "forget_ramp_epochs": 1})
    tr = CoCorrectingTrainer(load_cases(recs[:2], cfg.patch), load_cases(recs[2:], cfg.patch), cfg, tmp_path)
    assert tr.anchored and tr.all_approved
    batch = tr.loader.batch([0, 1])
    given, _corr, probs, losses = _step_inputs(tr, batch)
    weights, forget = tr.voxel_weights(batch["approved"], given, probs, losses, epoch=3)
    assert forget == 0.0
    assert all(bool((w == 1).all()) for w in weights.values())


def test_a_step_on_network_threads_equals_the_step_in_order(hippo_dir, tmp_path):
    """On the CPU each network's forward and backward run on its own Python thread: the same update as
    one thread running them in turn (label correction included)."""
    before = torch.get_num_threads()
    batch = None
    steps = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            tr = _trainer(hippo_dir, tmp_path / str(threads), batch_size=2, epochs=2)
            tr.correction.admitted[:] = True
            if batch is None:
                batch = next(iter(tr.loader))
            logged = [tr.train_step(batch, epoch=1) for _ in range(2)]
            assert torch.get_num_threads() == threads
            steps[threads] = (tr, logged)
    finally:
        torch.set_num_threads(before)
    (one, log_one), (two, log_two) = steps[1], steps[2]
    assert "loss_labels" in log_two[-1]
    for a, b in zip(log_one, log_two, strict=True):
        for key in ("loss_unetr", "loss_bsnet", "loss_labels"):
            assert abs(a[key] - b[key]) <= 1e-4 * max(1.0, abs(a[key])), key
    for name in one.nets:
        for p, q in zip(one.nets[name].parameters(), two.nets[name].parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(one.correction.logits, two.correction.logits, rtol=1e-4, atol=1e-5)
