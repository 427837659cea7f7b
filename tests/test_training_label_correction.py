"""Learnable label distributions: corrected toward agreeing networks, approved labels untouched."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from napari_medseg.training.label_correction import LabelCorrection, boundary_band


def _truth_and_planted(hippo_cases):
    truth = np.rint(np.asarray(nib.load(hippo_cases[0][1]).dataobj)).astype(np.int64)
    # plant a wrong label: background voxels right outside the anterior class flipped to anterior
    near = np.logical_and(
        np.asarray(np.pad(truth == 1, 1)[1:-1, 1:-1, 2:] | np.pad(truth == 1, 1)[1:-1, 1:-1, :-2]),
        truth == 0,
    )
    block = np.zeros_like(near)
    idx = np.argwhere(near)
    lo = idx.min(0)
    block[lo[0] : lo[0] + 6, :, :] = True
    planted = near & block
    given = truth.copy()
    given[planted] = 1
    return truth, given, planted


def _run(correction, labels_batch, truth_probs, steps=30, lr=0.5):
    opt = torch.optim.SGD([correction.logits], lr=lr)
    b = labels_batch.shape[0]
    flat = torch.arange(labels_batch[0].numel()).reshape(labels_batch.shape[1:])[None].repeat(b, 1, 1, 1)
    index = torch.arange(b)
    for _ in range(steps):
        batch = correction.targets(index, flat, labels_batch)
        loss = correction.loss(batch, [truth_probs, truth_probs], alpha=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return correction.targets(index, flat, labels_batch)


def test_planted_wrong_label_moves_toward_the_truth_when_the_networks_agree(hippo_cases):
    truth, given, planted = _truth_and_planted(hippo_cases)
    assert planted.sum() > 5
    assert boundary_band(given, 2)[planted].all()
    correction = LabelCorrection([given, given], approved=[False, True], num_classes=3, band_radius=2)
    correction.admitted[:] = True
    labels = torch.from_numpy(np.stack([given, given]))
    p_truth = F.one_hot(torch.from_numpy(truth), 3).permute(3, 0, 1, 2).float()[None].repeat(2, 1, 1, 1, 1)
    p_truth = 0.9 * p_truth + 0.1 / 3  # confident, agreeing networks
    before = correction.targets(torch.arange(2), *_identity(labels))
    after = _run(correction, labels, p_truth)

    mask = torch.from_numpy(planted)
    # not approved case: the planted voxels now lean to background (the truth)
    assert before.target[0, 1][mask].mean() > 0.85
    assert after.target[0, 0][mask].mean() > 0.6
    assert (after.target[0].argmax(0)[mask] == 0).float().mean() > 0.9
    # the approved case keeps the given (wrong) label exactly, as a one-hot target
    assert not after.corrected[1].any()
    assert torch.equal(after.target[1].argmax(0), labels[1])
    assert torch.equal(after.target[1], F.one_hot(labels[1], 3).permute(3, 0, 1, 2).float())
    # voxels outside the band are never corrected
    band = torch.from_numpy(boundary_band(given, 2))
    assert not after.corrected[0][~band].any()
    assert correction.stats()["lc_changed"] >= int(planted.sum())
    fixed = correction.corrected_label(0, given)
    assert (fixed[planted] == 0).mean() > 0.9


def test_cases_not_admitted_by_the_curriculum_keep_their_labels(hippo_cases):
    truth, given, _ = _truth_and_planted(hippo_cases)
    correction = LabelCorrection([given], approved=[False], num_classes=3)
    labels = torch.from_numpy(given[None])
    out = correction.targets(torch.arange(1), *_identity(labels))
    assert not out.corrected.any() and out.pos.numel() == 0


def _identity(labels: torch.Tensor):
    b = labels.shape[0]
    flat = torch.arange(labels[0].numel()).reshape(labels.shape[1:])[None].repeat(b, 1, 1, 1)
    return flat, labels
