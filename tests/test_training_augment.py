"""Batched torch augmentation: same transforms as the MONAI pipeline it replaced, geometry kept together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.training.augment import (
    AugmentSettings,
    CachedCases,
    apply_affines,
    augment_batch,
    sample_affines,
)
from napari_medseg.training.data import cases_from_msd, flat_canonical_index, load_cases


@pytest.fixture(scope="module")
def cases(hippo_dir):
    return load_cases(cases_from_msd(hippo_dir)[:4])


def test_label_image_and_coords_are_resampled_together(cases):
    loader = CachedCases(cases, (48, 64, 48), batch_size=4, augment=True, seed=3)
    batch = loader.batch([0, 1, 2, 3])
    moved = 0
    for b in range(4):
        case = cases[b]
        flat = flat_canonical_index(batch["coords"][b : b + 1], [case.label.shape])[0]
        inside = flat >= 0
        assert inside.float().mean() > 0.5
        # every voxel's label is the canonical label at the voxel its coordinates name: exact
        canon = torch.from_numpy(case.label.reshape(-1))[flat[inside]]
        assert torch.equal(canon, batch["label"][b][inside])
        assert (batch["label"][b][~inside] == 0).all()
        # the image (bilinear) follows the same grid: it correlates with the canonical image there
        img = torch.from_numpy(case.image.reshape(-1))[flat[inside]]
        aug = batch["image"][b, 0][inside]
        assert float(torch.corrcoef(torch.stack([img, aug]))[0, 1]) > 0.9
        moved += int(not torch.equal(flat.view(-1)[inside.view(-1)], torch.nonzero(inside.view(-1))[:, 0]))
    assert moved >= 1  # at least one of four samples was actually transformed (p = 0.8 each)


def _monai_affine(seed: int):
    from monai.transforms import RandAffined

    t = RandAffined(
        keys=["label"],
        prob=0.8,
        rotate_range=(0.15, 0.15, 0.15),
        scale_range=(0.1, 0.1, 0.1),
        mode="nearest",
        padding_mode="zeros",
        spatial_size=(48, 64, 48),
    )
    t.set_random_state(seed=seed)
    return t


def test_affine_distribution_matches_the_monai_pipeline(cases):
    """Foreground-volume change per draw (rotation keeps volume, scaling changes it): same law as MONAI."""
    label = torch.from_numpy(cases[0].label)
    before = float((label > 0).sum())
    n = 60
    monai_t = _monai_affine(seed=1)
    ours_ratio, monai_ratio = [], []
    gen = torch.Generator().manual_seed(1)
    image = torch.zeros(n, 1, *label.shape)
    coords = torch.zeros(n, 3, *label.shape, dtype=torch.long)
    _, lab, _ = augment_batch(image, label.expand(n, *label.shape).clone(), coords, gen)
    ours_ratio = [float((lab[k] > 0).sum()) / before for k in range(n)]
    for _ in range(n):
        out = monai_t({"label": label[None].float()})["label"]
        monai_ratio.append(float((torch.as_tensor(out) > 0).sum()) / before)
    ours, ref = np.log(ours_ratio), np.log(monai_ratio)
    # share of draws left untouched (probability 0.2 each)
    assert abs(np.mean(ours == 0) - 0.2) < 0.15 and abs(np.mean(ref == 0) - 0.2) < 0.15
    moved_o, moved_r = ours[ours != 0], ref[ref != 0]
    assert abs(moved_o.mean() - moved_r.mean()) < 0.05  # same direction of the scale convention
    assert 0.6 < moved_o.std() / moved_r.std() < 1.6  # same spread


def test_a_shift_moves_image_label_and_coords_as_monai_affine_does(cases):
    """A fixed translation: label identical and image equal to MONAI's ``Affine(translate_params=...)``."""
    from monai.transforms import Affine

    label = torch.from_numpy(cases[0].label).long()
    image = torch.from_numpy(cases[0].image).float()
    shift = (3.0, -5.0, 2.0)  # voxels along (D, H, W)
    mats = torch.zeros(1, 3, 4, dtype=torch.float64)
    mats[0, :, :3] = torch.eye(3)
    mats[0, :, 3] = torch.tensor(shift)
    axes = [torch.arange(1, n + 1) for n in label.shape]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]
    img, lab, crd = apply_affines(image[None, None], label[None], coords, mats)
    ref_lab = Affine(translate_params=shift, mode="nearest", padding_mode="zeros", image_only=True)(
        label[None].float()
    )
    ref_img = Affine(translate_params=shift, mode="bilinear", padding_mode="zeros", image_only=True)(
        image[None]
    )
    assert torch.equal(lab[0], torch.as_tensor(ref_lab)[0].long())
    assert float((img[0, 0] - torch.as_tensor(ref_img)[0]).abs().max()) < 1e-4
    # output voxel v shows input voxel v + shift: its coords name it, and 0 where padding came in
    assert torch.equal(crd[0, :, 10, 20, 10], torch.tensor([1 + 10 + 3, 1 + 20 - 5, 1 + 10 + 2]))
    assert (crd[0, :, :, :5] == 0).all() and (lab[0, :, :5] == 0).all()  # H shifted by -5


def test_translations_are_drawn_as_monai_translate_range_with_the_affine():
    """Shifts uniform in ±translate voxels per axis, only on the samples that draw an affine; none by default."""
    n = 4000
    settings = AugmentSettings(translate=6.0)
    mats = sample_affines(n, settings, torch.Generator().manual_seed(0))
    t = mats[:, :, 3]
    moved = (mats[:, :, :3] != torch.eye(3, dtype=mats.dtype)).any(-1).any(-1)
    assert abs(float(moved.float().mean()) - 0.8) < 0.03
    assert (t[~moved] == 0).all()
    assert float(t.abs().max()) <= 6.0
    assert abs(float(t[moved].std()) - 6.0 / 3**0.5) < 0.15  # uniform on [-6, 6]
    assert abs(float(t[moved].mean())) < 0.15
    # the default draws no shift, and the other draws are those of a run without translation
    plain = sample_affines(n, AugmentSettings(), torch.Generator().manual_seed(0))
    assert (plain[:, :, 3] == 0).all()
    assert torch.equal(plain[:, :, :3], mats[:, :, :3])


def test_intensity_augmentation_probabilities_and_ranges():
    n = 2000
    image = torch.ones(n, 1, 2, 2, 2)
    label = torch.zeros(n, 2, 2, 2, dtype=torch.long)
    coords = torch.zeros(n, 3, 2, 2, 2, dtype=torch.long)
    settings = AugmentSettings(affine_prob=0.0)
    out, lab, _ = augment_batch(image, label, coords, torch.Generator().manual_seed(0), settings)
    unchanged = (out == 1).flatten(1).all(1).float().mean()
    assert abs(float(unchanged) - 0.7 * 0.5) < 0.05  # no noise (p 0.7) and no scaling (p 0.5)
    spread = out.flatten(1).std(1)
    noisy = spread > 0
    assert abs(float(noisy.float().mean()) - 0.3) < 0.05
    assert float(spread.max()) < 0.05 * 1.1 * 2  # noise std drawn in [0, 0.05]
    scale = out.flatten(1).mean(1)[~noisy]
    assert float((scale - 1).abs().max()) <= 0.1 + 1e-6
    assert torch.equal(lab, label)


def test_epochs_shuffle_and_ranks_share_out_the_cases(cases):
    one = CachedCases(cases, (48, 64, 48), batch_size=1, augment=False, seed=0)
    order0 = [int(b["index"]) for b in one]
    one.set_epoch(1)
    order1 = [int(b["index"]) for b in one]
    assert sorted(order0) == sorted(order1) == [0, 1, 2, 3]
    ranks = [
        CachedCases(cases, (48, 64, 48), batch_size=1, augment=False, seed=0, rank=r, world_size=2)
        for r in (0, 1)
    ]
    seen = [[int(b["index"]) for b in r] for r in ranks]
    assert len(ranks[0]) == 2 and sorted(seen[0] + seen[1]) == [0, 1, 2, 3]


def test_windows_of_cases_larger_than_the_patch_name_their_canonical_voxels(hippo_dir):
    patch = (32, 48, 32)  # smaller than the hippocampus grid: windows start inside the case
    cases = load_cases(cases_from_msd(hippo_dir)[:2], patch)
    for augment in (False, True):
        batch = CachedCases(cases, patch, batch_size=2, augment=augment, seed=5).batch([0, 1])
        for b, case in enumerate(cases):
            flat = flat_canonical_index(batch["coords"][b : b + 1], [case.label.shape])[0]
            inside = flat >= 0
            assert int(batch["coords"][b][:, inside].min()) >= 1
            canon = torch.from_numpy(case.label.reshape(-1))[flat[inside]]
            assert torch.equal(canon, batch["label"][b][inside])
        if not augment:  # centred windows: the first voxel is the window's start, 1-based
            start = [(n - w) // 2 + 1 for n, w in zip(cases[0].label.shape, patch, strict=True)]
            assert batch["coords"][0][:, 0, 0, 0].tolist() == start
