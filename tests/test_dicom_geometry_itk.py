"""Every NIfTI we write from a DICOM series, read back by SimpleITK (ITK), sits exactly on the series.

The reference is ITK's own reading of the DICOM series (``ImageSeriesReader``, GDCM), not ours. Each file
we write (store import of a DICOM folder, a saved label map, ``predict``'s label / uncertainty files) is
resampled by SimpleITK onto that grid with nearest neighbour: correct geometry reproduces values computed
from ITK's own pixels voxel for voxel, and any flip, shift or axis swap would not.

Array order: our NIfTI (like dcm2niix's) stores DICOM rows last-first, ITK stores them first-first; both
affines say so, so the physical geometry is identical. The dcm2niix test pins that we write the same array
and affine as dcm2niix.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.inference.prediction import Prediction, write_prediction
from napari_medseg.inference.regions import find_regions
from napari_medseg.io import load_volume, save_labels
from napari_medseg.store import CaseStore

sitk = pytest.importorskip("SimpleITK")

#: HU threshold of the label map the tests derive from the pixels (bone-ish).
BONE_HU = 200


@pytest.fixture(scope="module", params=["totalseg-ct", "ibsi-sts-001"])
def series_dir(request, totalseg_dir: Path) -> Path:
    if request.param == "totalseg-ct":
        return totalseg_dir / "ct_dicom"
    path = totalseg_dir.parent / "ibsi-sts-ct" / "dicom" / "STS_001" / "CT" / "image"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}")
    return path


@pytest.fixture(scope="module")
def itk_series(series_dir: Path):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series_dir)))
    return reader.Execute()


def _on_itk_grid(path: Path, reference) -> np.ndarray:  # noqa: ANN001 - sitk.Image
    """``path`` read by SimpleITK and resampled (nearest neighbour) onto ``reference``; ITK's (z, y, x) array."""
    moved = sitk.Resample(
        sitk.ReadImage(str(path)), reference, sitk.Transform(), sitk.sitkNearestNeighbor, -12345.0
    )
    return sitk.GetArrayFromImage(moved)


def _uncertainty_of(hu: np.ndarray) -> np.ndarray:
    return np.clip((hu.astype(np.float32) + 1000.0) / 3000.0, 0.0, 1.0)


def test_store_import_of_a_series_has_itks_geometry(series_dir, itk_series, tmp_path):
    store = CaseStore.init(tmp_path / "store", labels={0: "background", 1: "bone"}, modality="CT")
    case = store.import_case(series_dir, case_id="ct", author="importer")
    np.testing.assert_array_equal(
        _on_itk_grid(store.image_path(case), itk_series), sitk.GetArrayFromImage(itk_series)
    )


def test_saved_labels_and_prediction_files_have_itks_geometry(series_dir, itk_series, tmp_path):
    vol = load_volume(series_dir)
    labels = (vol.array > BONE_HU).astype(np.uint8)
    uncertainty = _uncertainty_of(vol.array)
    saved = save_labels(labels, vol, tmp_path / "labels.nii.gz")
    pred = Prediction(
        labels=labels,
        uncertainty=uncertainty.astype(np.float16),
        band=labels > 0,
        regions=find_regions(uncertainty, vol.affine, 0.9, 50),
        score=0.0,
    )
    paths = write_prediction(pred, vol, tmp_path / "out", "ct")
    itk_hu = sitk.GetArrayFromImage(itk_series)
    for path in (saved, paths["labels"]):
        np.testing.assert_array_equal(_on_itk_grid(path, itk_series), (itk_hu > BONE_HU).astype(np.uint8))
    np.testing.assert_allclose(
        _on_itk_grid(paths["uncertainty"], itk_series), _uncertainty_of(itk_hu), atol=1e-3
    )  # float16 rounding


def test_series_reads_as_dcm2niix_writes_it(series_dir, tmp_path):
    """Same voxel order and affine as dcm2niix (rows last-first, LAS for an axial series)."""
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix (Debian package dcm2niix) is not installed")
    done = subprocess.run(
        ["dcm2niix", "-z", "y", "-o", str(tmp_path), "-f", "series", str(series_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ref = nib.load(tmp_path / "series.nii.gz")
    vol = load_volume(series_dir)
    assert ref.shape == vol.shape
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(vol.array, np.asarray(ref.dataobj))
