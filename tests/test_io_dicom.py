"""DICOM series: geometry equals the label map made on it, HU rescale, slice sorting, several series."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_medseg.errors import InputError
from napari_medseg.io import list_series, load_labels, load_volume, save_labels, save_volume


@pytest.fixture(scope="module")
def ct_series(totalseg_dir):
    return load_volume(totalseg_dir / "ct_dicom")


def _copy_slices(src: Path, dest: Path, n: int, uid: str | None = None, start: int = 0) -> list[Path]:
    """Copy ``n`` slices of the real series to ``dest`` (optionally re-labelled with a SeriesInstanceUID)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for f in sorted(src.iterdir())[start : start + n]:
        target = dest / f"{uid or 'x'}-{f.name}"
        if uid is None:
            shutil.copy(f, target)
        else:
            ds = pydicom.dcmread(str(f))
            ds.SeriesInstanceUID = uid
            ds.SeriesDescription = f"copy {uid}"
            ds.save_as(str(target))
        out.append(target)
    return out


def test_ct_series_has_the_geometry_of_its_label_map(ct_series, totalseg_dir):
    label_path = totalseg_dir / "example_seg_dicom.nii.gz"
    assert ct_series.shape == (512, 512, 20)
    assert ct_series.modality == "CT"
    np.testing.assert_allclose(ct_series.affine, nib.load(str(label_path)).affine, atol=1e-3)
    assert ct_series.orientation == "LAS"
    labels = load_labels(label_path, reference=ct_series)  # raises GeometryError otherwise
    assert labels.shape == ct_series.shape


def test_ct_voxel_order_puts_organs_inside_the_body(ct_series, totalseg_dir):
    labels = load_labels(totalseg_dir / "example_seg_dicom.nii.gz").array > 0
    body = ct_series.array > -500
    inside = np.count_nonzero(labels & body) / np.count_nonzero(labels)
    assert inside > 0.95
    # The DICOM row order (not reversed) would misplace the organs: the check can tell them apart.
    inside_unflipped = np.count_nonzero(labels & body[:, ::-1, :]) / np.count_nonzero(labels)
    assert inside_unflipped < inside - 0.1


def test_ct_rescale_gives_hounsfield_units_in_int16(ct_series, totalseg_dir):
    assert ct_series.array.dtype == np.int16
    files = sorted((totalseg_dir / "ct_dicom").iterdir())
    ds = pydicom.dcmread(str(files[0]))
    z_ras = float(ds.ImagePositionPatient[2])
    k = int(round((z_ras - ct_series.affine[2, 3]) / ct_series.affine[2, 2]))
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    # i = column, j = row reversed
    np.testing.assert_array_equal(ct_series.array[:, ::-1, k], hu.T)
    assert ct_series.array.min() == -1024


def test_slices_are_sorted_by_position_not_by_file_name(totalseg_dir, tmp_path):
    src = sorted((totalseg_dir / "ct_dicom").iterdir())[:4]
    for n, f in enumerate(src):  # reverse the file-name order
        shutil.copy(f, tmp_path / f"slice{9 - n}.dcm")
    (tmp_path / "README.txt").write_text("not dicom")
    vol = load_volume(tmp_path)
    assert vol.shape == (512, 512, 4)
    assert vol.affine[2, 2] == pytest.approx(2.0)
    zs = [float(pydicom.dcmread(str(f), stop_before_pixels=True).ImagePositionPatient[2]) for f in src]
    assert vol.affine[2, 3] == pytest.approx(min(zs))


def test_several_series_are_listed_and_one_must_be_chosen(totalseg_dir, tmp_path):
    src = totalseg_dir / "ct_dicom"
    _copy_slices(src, tmp_path, 3, uid="1.2.826.0.1.1")
    _copy_slices(src, tmp_path, 2, uid="1.2.826.0.1.2", start=5)
    (tmp_path / "notes.txt").write_text("ignore me")
    series = {s.uid: s for s in list_series(tmp_path)}
    assert set(series) == {"1.2.826.0.1.1", "1.2.826.0.1.2"}
    assert series["1.2.826.0.1.1"].n_slices == 3
    assert series["1.2.826.0.1.2"].modality == "CT"
    with pytest.raises(InputError, match="2 series") as err:
        load_volume(tmp_path)
    assert "1.2.826.0.1.1" in str(err.value) and "1.2.826.0.1.2" in str(err.value)
    vol = load_volume(tmp_path, series_uid="1.2.826.0.1.2")
    assert vol.shape == (512, 512, 2)
    assert vol.meta["series_uid"] == "1.2.826.0.1.2"
    with pytest.raises(InputError, match="not in"):
        load_volume(tmp_path, series_uid="9.9.9")


def test_missing_slice_is_reported(totalseg_dir, tmp_path):
    files = _copy_slices(totalseg_dir / "ct_dicom", tmp_path, 6)
    files[2].unlink()
    with pytest.raises(InputError, match="missing"):
        load_volume(tmp_path)


def test_dicom_volume_and_its_labels_round_trip_through_nifti(ct_series, totalseg_dir, tmp_path):
    out = save_volume(ct_series, tmp_path / "ct.nii.gz")
    again = load_volume(out)
    np.testing.assert_array_equal(again.array, ct_series.array)
    np.testing.assert_array_equal(again.affine, ct_series.affine.astype(np.float32))  # NIfTI stores float32

    label_path = totalseg_dir / "example_seg_dicom.nii.gz"
    labels = load_labels(label_path, reference=ct_series)
    lab_out = save_labels(labels.array, ct_series, tmp_path / "seg.nii.gz")
    reloaded = load_labels(lab_out, reference=load_volume(label_path))
    np.testing.assert_array_equal(reloaded.array, labels.array)
