"""Structure volumes in mL on real label maps: isotropic MRI, anisotropic CT, a rotated grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED_DATA

from napari_medseg.io import load_labels, load_volume
from napari_medseg.review.volumes import StructureVolume, class_volumes_ml, structure_volumes, voxel_volume_ml

HIPPO_NAMES = {0: "background", 1: "anterior", 2: "posterior"}


def test_hippocampus_volumes_are_voxel_counts_at_one_cubic_millimetre(hippo_cases):
    image, label = hippo_cases[0]
    vol = load_volume(image)
    truth = np.asarray(nib.load(str(label)).dataobj).astype(int)
    assert voxel_volume_ml(vol.affine) == pytest.approx(0.001)  # 1 x 1 x 1 mm voxels
    got = class_volumes_ml(load_labels(label, reference=vol).array, vol.affine, [1, 2])
    assert got == {c: pytest.approx((truth == c).sum() / 1000) for c in (1, 2)}
    assert 0.5 < got[1] + got[2] < 10  # an adult hippocampus crop: a few mL, not mm³ or litres


def test_ct_tumour_volume_uses_the_anisotropic_voxel_and_ignores_rotation(tmp_path):
    image = SHARED_DATA / "ibsi-sts-ct" / "imagesTr" / "sts_003.nii.gz"
    if not image.exists():
        pytest.skip(f"real data not found at {image}")
    vol = load_volume(image)
    mask = load_labels(image.parents[1] / "labelsTr" / image.name, reference=vol).array
    sx, sy, sz = vol.spacing  # 0.977 x 0.977 x 3.27 mm
    expected = int((mask == 1).sum()) * sx * sy * sz / 1000
    assert class_volumes_ml(mask, vol.affine, [1])[1] == pytest.approx(expected, rel=1e-9)
    turn = np.eye(4)
    turn[:2, :2] = [[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]]  # an oblique acquisition
    assert class_volumes_ml(mask, turn @ vol.affine, [1])[1] == pytest.approx(expected, rel=1e-9)


def test_working_labels_beside_the_proposal(hippo_cases):
    image, label = hippo_cases[1]
    vol = load_volume(image)
    working = load_labels(label, reference=vol).array
    proposal = working.copy()
    proposal[proposal == 2] = 0  # the model missed the posterior part entirely
    proposal[working == 1] = 1
    rows = structure_volumes(working, vol.affine, {**HIPPO_NAMES, 3: "unused"}, proposal)
    assert [r.class_id for r in rows] == [1, 2]  # a class in neither map is left out
    anterior, posterior = rows
    assert anterior.proposal_ml == anterior.working_ml and "+0.0 %" in anterior.text()
    assert posterior.proposal_ml == 0 and posterior.text().endswith("(proposal: none)")
    assert structure_volumes(working, vol.affine, HIPPO_NAMES)[0].proposal_ml is None


@pytest.mark.parametrize(
    ("working", "proposal", "text"),
    [
        (1.92, 1.85, "anterior 1.92 mL (proposal 1.85, +3.8 %)"),
        (0.004321, None, "anterior 0.0043 mL"),
        (1530.4, 1600.0, "anterior 1530 mL (proposal 1600, -4.3 %)"),
    ],
)
def test_volume_text(working, proposal, text):
    assert StructureVolume(1, "anterior", working, proposal).text() == text
