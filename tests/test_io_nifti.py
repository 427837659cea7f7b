"""NIfTI load/save keeps voxels and geometry exactly (hippocampus MR, LPS MR, RAS CT)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.errors import GeometryError, InputError
from napari_medseg.io import Volume, load_labels, load_volume, save_labels, save_volume


def _header_codes(path: Path) -> tuple[int, int]:
    hdr = nib.load(str(path)).header
    return int(hdr["qform_code"]), int(hdr["sform_code"])


def test_hippocampus_image_round_trip_is_bit_exact(hippo_cases, tmp_path):
    image_path, _ = hippo_cases[0]
    vol = load_volume(image_path)
    src = nib.load(str(image_path))
    assert vol.shape == src.shape
    np.testing.assert_array_equal(vol.array, np.asanyarray(src.dataobj))
    np.testing.assert_array_equal(vol.affine, src.affine)
    assert vol.modality == "MR"  # from the MSD dataset.json

    out = save_volume(vol, tmp_path / "img.nii.gz")
    again = load_volume(out)
    assert again.array.dtype == vol.array.dtype
    np.testing.assert_array_equal(again.array, vol.array)
    np.testing.assert_array_equal(again.affine, vol.affine)
    assert again.checksum == vol.checksum
    assert _header_codes(out) == _header_codes(image_path)


def test_float_hippocampus_label_is_cast_to_uint8_and_saved_on_the_image_grid(hippo_dir, tmp_path):
    image_path = hippo_dir / "imagesTr" / "hippocampus_003.nii.gz"
    label_path = hippo_dir / "labelsTr" / "hippocampus_003.nii.gz"
    assert nib.load(str(label_path)).get_data_dtype() == np.float32
    image = load_volume(image_path)
    labels = load_labels(label_path, reference=image)
    assert labels.array.dtype == np.uint8
    np.testing.assert_array_equal(labels.array, nib.load(str(label_path)).get_fdata().astype(np.uint8))
    assert set(np.unique(labels.array)) == {0, 1, 2}

    out = save_labels(labels.array, image, tmp_path / "lab.nii.gz")
    written = nib.load(str(out))
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), labels.array)
    np.testing.assert_array_equal(written.affine, nib.load(str(image_path)).affine)
    assert _header_codes(out) == _header_codes(image_path)


@pytest.mark.parametrize(
    ("image_name", "label_name", "orientation"),
    [
        ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz", "LPS"),
        ("example_ct_sm.nii.gz", "example_seg.nii.gz", "RAS"),
    ],
)
def test_totalseg_volumes_load_unreoriented_and_labels_round_trip(
    totalseg_dir, tmp_path, image_name, label_name, orientation
):
    image_path, label_path = totalseg_dir / image_name, totalseg_dir / label_name
    image = load_volume(image_path)
    assert image.orientation == orientation
    np.testing.assert_array_equal(image.array, np.asanyarray(nib.load(str(image_path)).dataobj))
    labels = load_labels(label_path, reference=image)

    out = save_labels(labels.array, image, tmp_path / "seg.nii.gz")
    again = load_labels(out, reference=image)
    np.testing.assert_array_equal(again.array, labels.array)
    np.testing.assert_array_equal(again.affine, nib.load(str(label_path)).affine)
    assert _header_codes(out) == _header_codes(label_path) == (0, 2)
    assert (
        nib.load(str(out)).header.get_sform().tolist()
        == nib.load(str(label_path)).header.get_sform().tolist()
    )

    vol_out = save_volume(image, tmp_path / "img.nii.gz")
    np.testing.assert_array_equal(load_volume(vol_out).array, image.array)


def _world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask).mean(axis=0)
    return (affine @ np.r_[ijk, 1.0])[:3]


def test_label_saved_on_lps_grid_lands_on_its_structure(totalseg_dir, tmp_path):
    image = load_volume(totalseg_dir / "example_mr_sm.nii.gz")
    seg = load_labels(totalseg_dir / "example_seg_mr.nii.gz", reference=image)
    ids, counts = np.unique(seg.array[seg.array > 0], return_counts=True)
    structure = int(ids[np.argmax(counts)])
    derived = (seg.array == structure).astype(np.uint8) * 7

    out = save_labels(derived, image.with_array(image.array), tmp_path / "structure.nii.gz")
    reloaded = load_labels(out, reference=image)
    np.testing.assert_array_equal(reloaded.array, derived)

    # Independent check: reorient the original label map to RAS with nibabel and find the same
    # structure there; its world centroid must equal the centroid of what we saved.
    canonical = nib.as_closest_canonical(nib.load(str(totalseg_dir / "example_seg_mr.nii.gz")))
    assert "".join(nib.aff2axcodes(canonical.affine)) == "RAS"
    expected = _world_centroid(np.asanyarray(canonical.dataobj) == structure, canonical.affine)
    got = _world_centroid(reloaded.array == 7, reloaded.affine)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_with_array_keeps_nifti_codes_for_saving(totalseg_dir, tmp_path):
    image = load_volume(totalseg_dir / "example_mr_sm.nii.gz")
    blank = image.with_array(np.zeros(image.shape, np.uint8), modality="SEG")
    out = save_labels(blank.array, blank, tmp_path / "blank.nii.gz")
    assert _header_codes(out) == (0, 2)


@pytest.mark.parametrize(("max_label", "dtype"), [(255, np.uint8), (256, np.uint16), (70000, np.int32)])
def test_label_dtype_is_the_smallest_that_holds_the_labels(hippo_cases, tmp_path, max_label, dtype):
    image = load_volume(hippo_cases[0][0])
    labels = np.zeros(image.shape, np.int64)
    labels[1, 2, 3] = max_label
    out = save_labels(labels, image, tmp_path / "l.nii.gz")
    assert nib.load(str(out)).get_data_dtype() == dtype
    assert load_labels(out).array[1, 2, 3] == max_label


def test_save_labels_refuses_wrong_shape_and_fractions_and_leaves_no_file(hippo_cases, tmp_path):
    image = load_volume(hippo_cases[0][0])
    with pytest.raises(GeometryError, match="shape"):
        save_labels(np.zeros((3, 3, 3), np.uint8), image, tmp_path / "a.nii.gz")
    with pytest.raises(InputError, match="non-integer"):
        save_labels(np.full(image.shape, 0.5, np.float32), image, tmp_path / "b.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_in_memory_volume_is_saved_with_scanner_codes(tmp_path):
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    vol = Volume(array=np.arange(24, dtype=np.int16).reshape(2, 3, 4), affine=affine)
    out = save_volume(vol, tmp_path / "mem.nii")
    again = load_volume(out)
    np.testing.assert_array_equal(again.array, vol.array)
    np.testing.assert_array_equal(again.affine, affine)
    assert _header_codes(out) == (1, 1)


def test_scaled_nifti_is_returned_in_modality_units_as_integers(totalseg_dir, tmp_path):
    src = nib.load(str(totalseg_dir / "example_ct_sm.nii.gz"))
    hu = np.asanyarray(src.dataobj)
    stored = nib.Nifti1Image((hu.astype(np.int32) + 2048).astype(np.uint16), src.affine)
    stored.header.set_slope_inter(1.0, -2048.0)
    nib.save(stored, str(tmp_path / "scaled.nii.gz"))
    vol = load_volume(tmp_path / "scaled.nii.gz")
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, hu)
    assert vol.modality == "CT"  # from the HU range (no "ct" in the name)
