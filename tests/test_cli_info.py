"""``napari-medseg info`` prints a scan's geometry, lists DICOM series, and fails with one line on bad input."""

from __future__ import annotations

import shutil

import pydicom

from napari_medseg.cli import main


def test_info_prints_geometry_of_a_nifti_file(totalseg_dir, capsys):
    assert main(["info", str(totalseg_dir / "example_mr_sm.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "117 x 91 x 20" in out
    assert "int16" in out
    assert "orientation: LPS" in out
    assert "3 x 3 x 3 mm" in out
    assert "modality:    MR" in out
    assert "sha256:" in out
    assert "168.5996" in out  # affine translation


def test_info_prints_a_dicom_series(totalseg_dir, capsys):
    assert main(["info", str(totalseg_dir / "ct_dicom")]) == 0
    out = capsys.readouterr().out
    assert "512 x 512 x 20" in out
    assert "modality:    CT" in out
    assert "orientation: LAS" in out
    assert "intensity:   -1024" in out


def test_info_lists_several_series_in_a_folder(totalseg_dir, tmp_path, capsys):
    for n, f in enumerate(sorted((totalseg_dir / "ct_dicom").iterdir())[:2]):
        ds = pydicom.dcmread(str(f), stop_before_pixels=False)
        ds.SeriesInstanceUID = f"1.2.826.0.9.{n}"
        ds.save_as(str(tmp_path / f"s{n}.dcm"))
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 DICOM series" in out
    assert "1.2.826.0.9.0" in out and "1.2.826.0.9.1" in out
    assert main(["info", str(tmp_path), "--series", "1.2.826.0.9.1"]) == 0
    assert "512 x 512 x 1" in capsys.readouterr().out


def test_info_on_a_broken_file_prints_one_error_line(hippo_cases, tmp_path, capsys):
    data = hippo_cases[0][0].read_bytes()
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(data[:300])
    code = main(["info", str(bad)])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "cut.nii.gz" in err


def test_info_on_a_folder_without_dicom_fails_cleanly(totalseg_dir, tmp_path, capsys):
    shutil.copy(totalseg_dir / "SOURCE.md", tmp_path)
    assert main(["info", str(tmp_path)]) != 0
    assert "no DICOM images" in capsys.readouterr().err
