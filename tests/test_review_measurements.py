"""Structure volumes (mL) and axial diameters (mm) on real label maps: isotropic MRI, anisotropic CT,
a rotated grid; diameters checked against a brute-force search over every voxel pair."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED_DATA

from napari_medseg.io import load_labels, load_volume
from napari_medseg.review.measurements import (
    Diameters,
    StructureMeasurement,
    axial_diameters,
    class_volumes_ml,
    measure_structures,
    voxel_volume_ml,
)

HIPPO_NAMES = {0: "background", 1: "anterior", 2: "posterior"}


def _sts_tumour(name: str) -> tuple:
    """A real sarcoma CT (0.98 x 0.98 x 3.27 mm) and its expert tumour mask (boolean, (I, J, K))."""
    image = SHARED_DATA / "ibsi-sts-ct" / "imagesTr" / f"{name}.nii.gz"
    if not image.exists():
        pytest.skip(f"real data not found at {image}")
    vol = load_volume(image)
    return vol, load_labels(image.parents[1] / "labelsTr" / image.name, reference=vol).array == 1


def _turned(affine: np.ndarray, angle: float) -> np.ndarray:
    """The same grid rotated in its slice plane (an oblique acquisition)."""
    turn = np.eye(4)
    turn[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return turn @ affine


def test_hippocampus_volumes_are_voxel_counts_at_one_cubic_millimetre(hippo_cases):
    image, label = hippo_cases[0]
    vol = load_volume(image)
    truth = np.asarray(nib.load(str(label)).dataobj).astype(int)
    assert voxel_volume_ml(vol.affine) == pytest.approx(0.001)  # 1 x 1 x 1 mm voxels
    got = class_volumes_ml(load_labels(label, reference=vol).array, vol.affine, [1, 2])
    assert got == {c: pytest.approx((truth == c).sum() / 1000) for c in (1, 2)}
    assert 0.5 < got[1] + got[2] < 10  # an adult hippocampus crop: a few mL, not mm³ or litres


def test_ct_tumour_volume_uses_the_anisotropic_voxel_and_ignores_rotation():
    vol, mask = _sts_tumour("sts_003")
    labels = mask.astype(np.uint8)
    sx, sy, sz = vol.spacing  # 0.977 x 0.977 x 3.27 mm
    expected = int(mask.sum()) * sx * sy * sz / 1000
    assert class_volumes_ml(labels, vol.affine, [1])[1] == pytest.approx(expected, rel=1e-9)
    assert class_volumes_ml(labels, _turned(vol.affine, 0.3), [1])[1] == pytest.approx(expected, rel=1e-9)


def test_working_labels_beside_the_proposal(hippo_cases):
    image, label = hippo_cases[1]
    vol = load_volume(image)
    working = load_labels(label, reference=vol).array
    proposal = working.copy()
    proposal[proposal == 2] = 0  # the model missed the posterior part entirely
    proposal[working == 1] = 1
    rows = measure_structures(working, vol.affine, {**HIPPO_NAMES, 3: "unused"}, proposal)
    assert [r.class_id for r in rows] == [1, 2]  # a class in neither map is left out
    anterior, posterior = rows
    assert anterior.proposal_ml == anterior.working_ml and "+0.0 %" in anterior.text()
    assert posterior.proposal_ml == 0 and "(proposal: none), 17 × 14 mm on axial slice" in posterior.text()
    assert measure_structures(working, vol.affine, HIPPO_NAMES)[0].proposal_ml is None
    assert posterior.diameters == axial_diameters(working == 2, vol.affine)


@pytest.mark.parametrize(
    ("working", "proposal", "text"),
    [
        (1.92, 1.85, "anterior 1.92 mL (proposal 1.85, +3.8 %)"),
        (0.004321, None, "anterior 0.0043 mL"),
        (1530.4, 1600.0, "anterior 1530 mL (proposal 1600, -4.3 %)"),
    ],
)
def test_volume_text(working, proposal, text):
    assert StructureMeasurement(1, "anterior", working, proposal).text() == text


def _brute_force_long_axis(mask: np.ndarray, affine: np.ndarray) -> float:
    """Largest distance (mm) between two voxel centres of one K slice, over every pair."""
    cols = np.asarray(affine, np.float64)[:3, :2]
    best = 0.0
    for k in np.flatnonzero(mask.any(axis=(0, 1))):
        pts = np.argwhere(mask[:, :, k]).astype(np.float64) @ cols.T
        for start in range(0, len(pts), 2048):  # blocks: a big slice has ~10^4 voxels
            block = pts[start : start + 2048]
            best = max(best, float(np.sqrt(((block[:, None] - pts[None]) ** 2).sum(-1)).max()))
    return best


def test_tumour_long_axis_equals_the_brute_force_search_on_a_real_ct():
    vol, mask = _sts_tumour("sts_002")
    got = axial_diameters(mask, vol.affine)
    assert got.long_mm == pytest.approx(_brute_force_long_axis(mask, vol.affine), rel=1e-9)
    assert 0 < got.short_mm <= got.long_mm and mask[:, :, got.k].any()
    oblique = _turned(vol.affine, 0.4)  # the same tumour on an oblique grid: the same millimetres
    assert axial_diameters(mask, oblique).long_mm == pytest.approx(got.long_mm, rel=1e-9)


def test_long_and_short_axis_of_known_shapes():
    i, j = np.mgrid[:201, :201]
    ellipse = np.zeros((201, 201, 3), bool)
    ellipse[..., 1] = (i - 100) ** 2 / 80**2 + (j - 100) ** 2 / 30**2 <= 1  # axes 160 x 60 voxels
    # 160 voxels of 0.5 mm across i, 60 of 2 mm across j: the long axis is j's 120 mm, not the most voxels
    assert axial_diameters(ellipse, np.diag([0.5, 2.0, 3.0, 1.0])) == Diameters(120.0, 80.0, 1)
    diagonal = np.zeros((50, 50, 2), bool)
    diagonal[np.arange(40), np.arange(40), 0] = True  # one voxel thick, on the diagonal
    got = axial_diameters(diagonal, np.eye(4))
    assert got.long_mm == pytest.approx(39 * np.sqrt(2)) and got.short_mm == pytest.approx(0.0, abs=1e-9)
    assert axial_diameters(np.zeros((4, 4, 4), bool), np.eye(4)) is None


def test_text_with_diameters():
    row = StructureMeasurement(1, "tumour", 80.4, None, Diameters(53.1, 50.9, 23))
    assert row.text() == "tumour 80.4 mL, 53 × 51 mm on axial slice 23"
    assert row.text(axial_slice=29).endswith("on axial slice 29")  # as a viewer numbers it


def test_store_measure_reports_the_approved_cases_and_writes_csv(hippo_cases, tmp_path, capsys):
    """`napari-medseg store measure`: one row per approved case and structure (what a volumetry study
    needs), the same figures as the Review panel; --all adds the cases nobody approved yet."""
    import csv

    from napari_medseg.cli import main
    from napari_medseg.store import CaseStore

    root = tmp_path / "store"
    with CaseStore.init(root, name="hippo", labels=HIPPO_NAMES) as store:
        first = store.import_case(*hippo_cases[0])
        store.import_case(*hippo_cases[1])
        store.approve(first, "rad")
    capsys.readouterr()
    assert main(["store", "measure", str(root), "--csv", str(tmp_path / "vol.csv")]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "vol.csv").open()))
    assert [(r["case"], r["structure"]) for r in rows] == [(first, "anterior"), (first, "posterior")]
    vol = load_volume(hippo_cases[0][0])
    truth = load_labels(hippo_cases[0][1], reference=vol).array
    for row, c in zip(rows, (1, 2), strict=True):
        assert float(row["volume_ml"]) == pytest.approx((truth == c).sum() / 1000, abs=1e-4)
        assert float(row["long_axis_mm"]) == pytest.approx(
            axial_diameters(truth == c, vol.affine).long_mm, abs=0.01
        )
        assert row["kind"] == "person" and row["case"] in printed
    assert main(["store", "measure", str(root), "--all"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 4  # header + 2 cases x 2 structures


def test_axis_segments_to_draw_have_the_measured_lengths_and_cross_at_right_angles():
    vol, mask = _sts_tumour("sts_003")
    for affine in (vol.affine, _turned(vol.affine, 0.4)):  # oblique too: segments in voxels, lengths in mm
        d = axial_diameters(mask, affine)
        cols = np.asarray(affine)[:3, :2]
        long_v, short_v = (cols @ (np.subtract(*seg[::-1])) for seg in (d.long_axis, d.short_axis))
        assert np.linalg.norm(long_v) == pytest.approx(d.long_mm) and np.linalg.norm(
            short_v
        ) == pytest.approx(d.short_mm)
        assert abs(long_v @ short_v) < 1e-6 * d.long_mm * d.short_mm  # perpendicular in millimetres
        (i0, j0), (i1, j1) = d.long_axis
        assert (
            mask[int(i0), int(j0), d.k] and mask[int(i1), int(j1), d.k]
        )  # from tumour voxel to tumour voxel
        offset = cols @ (np.mean(d.short_axis, axis=0) - np.mean(d.long_axis, axis=0))
        assert abs(offset @ long_v) < 1e-6 * d.long_mm**2  # it runs through the long axis's middle
