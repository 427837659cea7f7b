"""Training data: recorded split, padded canonical grid, augmentation that keeps labels traceable."""

from __future__ import annotations

import numpy as np
import torch

from napari_medseg.training.curriculum import AgreementCurriculum, peer_dice
from napari_medseg.training.data import (
    cases_from_msd,
    load_cases,
    split_cases,
)


def test_split_is_seeded_disjoint_and_complete(hippo_dir):
    ids = [r.case_id for r in cases_from_msd(hippo_dir)]
    assert len(ids) == 240
    split = split_cases(ids, n_val=40, seed=0)
    assert len(split.train) == 200 and len(split.val) == 40
    assert not set(split.train) & set(split.val)
    assert split == split_cases(ids, n_val=40, seed=0)
    assert split.val != split_cases(ids, n_val=40, seed=1).val


def test_every_hippocampus_case_fits_the_default_patch_whole(hippo_cases):
    recs = cases_from_msd(hippo_cases[0][0].parent.parent)[:8]
    for case in load_cases(recs):
        assert case.image.shape == (48, 64, 48)
        assert case.label[case.region()].sum() == case.label.sum()  # nothing lost to cropping
        assert abs(float(case.image[case.region()].mean())) < 1e-3  # z-scored case


def test_curriculum_admits_the_most_agreeing_cases_first():
    cur = AgreementCurriculum(4, warmup_epochs=1, start_fraction=0.5, ramp_epochs=2)
    a = torch.zeros(4, 4, 4, 4, dtype=torch.long)
    a[:, :2] = 1
    b = a.clone()
    b[1] = 0  # case 1 disagrees completely
    b[3, :, :, :2] = 0  # case 3 half agrees
    cur.record(torch.arange(4), peer_dice(a, b, 3))
    cur.end_epoch()
    assert cur.admit(0, np.zeros(4, bool)).sum() == 0  # warm-up
    first = cur.admit(1, np.zeros(4, bool))
    assert first.tolist() == [True, False, True, False]
    second = cur.admit(2, first)
    assert second.tolist() == [True, False, True, True]
    assert cur.admit(3, second).all()


def test_store_cases_carry_their_approval(hippo_cases, tmp_path):
    from napari_medseg.store import CaseStore
    from napari_medseg.training.data import discover_cases

    store = CaseStore.init(
        tmp_path / "store", name="hippo", labels={0: "background", 1: "anterior", 2: "posterior"}
    )
    (img0, lab0), (img1, lab1) = hippo_cases[:2]
    a = store.import_case(img0, lab0, approved=True)
    b = store.import_case(img1, lab1, approved=False)
    records = {r.case_id: r for r in discover_cases(tmp_path / "store")}
    assert records[a].approved and not records[b].approved
    cases = load_cases([records[a], records[b]])
    assert cases[0].label.max() == 2
