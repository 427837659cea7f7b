"""DICOM SEG export of the real TotalSegmentator label map on the real CT series, and its way back.

The shipped ``ct_dicom`` series is anonymised: StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID are
blank in the datasets (the SOP Instance UIDs survive in the file meta headers). A SEG cannot reference
such a series, so most tests use a copy whose study/series UIDs are filled in, as a PACS export has them;
pixels, positions and file names are untouched, so the grid is the same as the shipped series'.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from highdicom import color as hd_color

from napari_medseg.cli import main
from napari_medseg.errors import GeometryError, InputError
from napari_medseg.io import load_labels, load_volume, save_labels
from napari_medseg.io.dicom_seg import CUSTOM_SCHEME, DEFAULT_CONTENT_CREATOR, read_dicom_seg, write_dicom_seg
from napari_medseg.io.label_colors import label_rgb

STUDY_UID = "1.2.826.0.1.3680043.10.543.100"
SERIES_UID = "1.2.826.0.1.3680043.10.543.101"
#: Names for some of the label values present (TotalSegmentator v2 "total" class map); 20 etc. stay unnamed.
CLASSES = {1: "spleen", 5: "liver", 6: "stomach", 7: "pancreas", 8: "adrenal_gland_right"}
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def series_dir(totalseg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real ``ct_dicom`` series with its study/series/instance UIDs restored (see the module docstring)."""
    out = tmp_path_factory.mktemp("ct_dicom_uids")
    for f in sorted((totalseg_dir / "ct_dicom").iterdir()):
        ds = pydicom.dcmread(str(f))
        ds.StudyInstanceUID = STUDY_UID
        ds.SeriesInstanceUID = SERIES_UID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.save_as(str(out / f.name))
    return out


@pytest.fixture(scope="module")
def volume(series_dir: Path):
    return load_volume(series_dir)


@pytest.fixture(scope="module")
def labels(volume, totalseg_dir: Path) -> np.ndarray:
    """The real 31-structure label map ``(512, 512, 20)`` on the series grid."""
    return load_labels(totalseg_dir / "example_seg_dicom.nii.gz", reference=volume).array


@pytest.fixture(scope="module")
def seg_file(labels, series_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BINARY SEG of the whole label map, drawn by hand (no algorithm)."""
    out = tmp_path_factory.mktemp("seg") / "labels.dcm"
    assert write_dicom_seg(labels, series_dir, out, CLASSES, author="Doe^Jane") == out
    return out


def _no_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")]


def test_round_trip_gives_back_the_label_map_voxel_exact(seg_file, labels, series_dir, volume):
    assert volume.shape == (512, 512, 20)
    back = read_dicom_seg(seg_file, series_dir)
    assert back.shape == labels.shape
    assert np.count_nonzero(np.unique(labels)) == 31
    np.testing.assert_array_equal(back, labels)


def test_labelmap_encoding_round_trips_too(labels, series_dir, tmp_path):
    few = np.where(np.isin(labels, [1, 5, 20, 117]), labels, 0)
    out = write_dicom_seg(few, series_dir, tmp_path / "lm.dcm", CLASSES, segmentation_type="LABELMAP")
    assert pydicom.dcmread(str(out), stop_before_pixels=True).SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"
    np.testing.assert_array_equal(read_dicom_seg(out, series_dir), few)


def test_a_map_without_background_round_trips(labels, series_dir, tmp_path):
    full = np.where(labels == 5, 5, 300).astype(np.uint16)  # every voxel labelled; value > 255
    out = write_dicom_seg(full, series_dir, tmp_path / "full.dcm", {300: "body"})
    back = read_dicom_seg(out, series_dir)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, full)


def test_each_frame_holds_the_slice_of_the_instance_it_references(seg_file, labels, volume, series_dir):
    """Independent of highdicom's reader and of the package's slice sorting: locate each referenced
    instance by its own ImagePositionPatient on the volume affine, and compare the frame pixels."""
    k_of_uid, ipp_of_uid = {}, {}
    for f in series_dir.iterdir():
        ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        ipp_of_uid[ds.SOPInstanceUID] = [float(v) for v in ds.ImagePositionPatient]
        ras = np.array([-1.0, -1.0, 1.0]) * np.array(ipp_of_uid[ds.SOPInstanceUID])
        ijk = np.linalg.solve(volume.affine[:3, :3], ras - volume.affine[:3, 3])
        np.testing.assert_allclose(ijk[[0, 1]], [0, 511], atol=1e-3)  # first stored pixel = (i 0, j last)
        k_of_uid[ds.SOPInstanceUID] = int(round(ijk[2]))
    assert sorted(k_of_uid.values()) == list(range(20))

    seg = pydicom.dcmread(str(seg_file))
    value_of_segment = {
        int(s.SegmentNumber): int(s.SegmentDescription.rsplit(" ", 1)[-1].rstrip(")"))
        for s in seg.SegmentSequence
    }
    frames = seg.pixel_array  # (n_frames, rows, columns), 0/1
    assert frames.ndim == 3 and frames.shape[1:] == (512, 512)
    seen = set()
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        k = k_of_uid[uid]
        expected = (labels[:, ::-1, k].T == value_of_segment[segment]).astype(frame.dtype)
        np.testing.assert_array_equal(frame, expected)
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, ipp_of_uid[uid], atol=1e-4)
        seen.add((k, value_of_segment[segment]))
    # every (slice, label) pair holding voxels has its frame, and no other frame exists
    present = {(k, int(v)) for k in range(20) for v in np.unique(labels[..., k]) if v}
    assert seen == present and len(frames) == len(present)


def test_seg_references_the_source_series_and_names_the_classes(seg_file, series_dir):
    seg = pydicom.dcmread(str(seg_file))
    src = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in sorted(series_dir.iterdir())]
    assert seg.SOPClassUID == SEG_STORAGE and seg.Modality == "SEG"
    assert seg.StudyInstanceUID == STUDY_UID == src[0].StudyInstanceUID
    assert seg.SeriesInstanceUID not in (SERIES_UID, "")
    assert seg.FrameOfReferenceUID == src[0].FrameOfReferenceUID
    assert seg.PatientID == src[0].PatientID
    (ref_series,) = seg.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == SERIES_UID
    source_uids = {d.SOPInstanceUID for d in src}
    assert {r.ReferencedSOPInstanceUID for r in ref_series.ReferencedInstanceSequence} == source_uids
    per_frame = {
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for f in seg.PerFrameFunctionalGroupsSequence
    }
    assert per_frame <= source_uids and len(per_frame) == 20  # every slice holds some structure

    segments = list(seg.SegmentSequence)
    assert [int(s.SegmentNumber) for s in segments] == list(range(1, 32))
    by_label = {s.SegmentLabel: s for s in segments}
    assert set(CLASSES.values()) <= set(by_label)
    assert "label 20" in by_label and "label 117" in by_label  # values without a class name
    liver = by_label["liver"]
    assert liver.SegmentDescription == "liver (label value 5)"
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SCT Liver
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Anatomical Structure"
    adrenal = by_label["adrenal_gland_right"].SegmentedPropertyTypeCodeSequence[0]
    assert adrenal.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Right"
    unnamed = by_label["label 20"].SegmentedPropertyTypeCodeSequence[0]
    assert (unnamed.CodeValue, unnamed.CodingSchemeDesignator) == ("L20", CUSTOM_SCHEME)
    assert seg.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == CUSTOM_SCHEME
    # every segment recommends the colour the viewer paints its label value in, and no two share one
    lab = {s.SegmentLabel: tuple(s.RecommendedDisplayCIELabValue) for s in segments}
    assert len(set(lab.values())) == len(segments)
    for s in segments:
        rgb = hd_color.CIELabColor.from_dicom_value(tuple(s.RecommendedDisplayCIELabValue)).to_rgb()
        value = int(s.SegmentDescription.rsplit(" ", 1)[-1].rstrip(")"))
        np.testing.assert_allclose(rgb, label_rgb(value), atol=2)
    assert {s.SegmentAlgorithmType for s in segments} == {"MANUAL"}
    assert "SegmentAlgorithmName" not in liver
    assert str(seg.ContentCreatorName) == "Doe^Jane"


def test_seg_without_author_names_the_default_content_creator(labels, series_dir, tmp_path):
    few = np.where(labels == 5, labels, 0)
    out = write_dicom_seg(few, series_dir, tmp_path / "anon.dcm", CLASSES)
    assert (
        str(pydicom.dcmread(str(out), stop_before_pixels=True).ContentCreatorName) == DEFAULT_CONTENT_CREATOR
    )
    with warnings.catch_warnings():  # a login name is written as a valid one-component person name
        warnings.simplefilter("error")
        out = write_dicom_seg(few, series_dir, tmp_path / "login.dcm", CLASSES, author="alice")
    assert str(pydicom.dcmread(str(out), stop_before_pixels=True).ContentCreatorName) == "alice^"


def _dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's (dicom3tools) error lines for ``path``; the test is skipped where it is not installed."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def test_binary_seg_passes_dciodvfy(seg_file):
    """David Clunie's DICOM validator (dicom3tools) finds no error in our binary SEG."""
    assert _dciodvfy_errors(seg_file) == []


def test_binary_seg_is_read_by_dcmtk(seg_file):
    """DCMTK's dcmdump parses the whole file (every element, pixel data included) without complaint."""
    if shutil.which("dcmdump") is None:
        pytest.skip("dcmdump (Debian package dcmtk) is not installed")
    done = subprocess.run(
        ["dcmdump", "-q", "+E", "--print-all", str(seg_file)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "SegmentSequence" in done.stdout and "RecommendedDisplayCIELabValue" in done.stdout
    assert done.stderr.strip() == ""


def test_model_id_makes_a_semiautomatic_seg(labels, series_dir, tmp_path):
    few = np.where(labels == 5, labels, 0)
    out = write_dicom_seg(few, series_dir, tmp_path / "semi.dcm", CLASSES, algorithm="hippo-pair-cpu-v2")
    (segment,) = pydicom.dcmread(str(out), stop_before_pixels=True).SegmentSequence
    assert segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert segment.SegmentAlgorithmName == "hippo-pair-cpu-v2"
    algo = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "hippo-pair-cpu-v2"
    assert algo.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    out = write_dicom_seg(
        few, series_dir, tmp_path / "auto.dcm", CLASSES, algorithm="m", algorithm_type="automatic"
    )
    assert pydicom.dcmread(str(out)).SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"


def test_bad_inputs_are_refused_before_anything_is_written(labels, series_dir, totalseg_dir, tmp_path):
    out = tmp_path / "seg.dcm"
    with pytest.raises(GeometryError, match="shape"):
        write_dicom_seg(labels[:, :, :10], series_dir, out, CLASSES)
    with pytest.raises(InputError, match="integer"):
        write_dicom_seg(labels.astype(np.float32), series_dir, out, CLASSES)
    with pytest.raises(InputError, match="empty"):
        write_dicom_seg(np.zeros_like(labels), series_dir, out, CLASSES)
    with pytest.raises(InputError, match="negative"):
        write_dicom_seg(labels.astype(np.int16) - 1, series_dir, out, CLASSES)
    with pytest.raises(InputError, match="MANUAL"):
        write_dicom_seg(labels, series_dir, out, CLASSES, algorithm_type="AUTOMATIC")
    # the shipped, anonymised series has no study/series UIDs to reference
    with pytest.raises(InputError, match="StudyInstanceUID") as err:
        write_dicom_seg(labels, totalseg_dir / "ct_dicom", out, CLASSES)
    assert "\n" not in str(err.value)
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_reader_refuses_a_seg_of_another_series(seg_file, series_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for f in sorted(series_dir.iterdir())[:3]:
        ds = pydicom.dcmread(str(f))
        ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
        ds.save_as(str(other / f.name))
    with pytest.raises(InputError, match="not in series"):
        read_dicom_seg(seg_file, other)


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(["dicom-seg", *map(str, argv)])
    return code, capsys.readouterr().err


def test_cli_writes_a_seg(series_dir, totalseg_dir, labels, tmp_path, capsys):
    classes = tmp_path / "dataset.json"
    classes.write_text('{"name": "x", "labels": {"0": "background", "1": "spleen", "5": "liver"}}')
    out = tmp_path / "pacs" / "seg.dcm"
    code = main(
        [
            "dicom-seg",
            str(totalseg_dir / "example_seg_dicom.nii.gz"),
            "--series",
            str(series_dir),
            "--out",
            str(out),
            "--classes",
            str(classes),
            "--author",
            "Doe^Jane",
            "--model-id",
            "hippo-pair-cpu-v2",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "31 segment(s)" in captured.out
    seg = pydicom.dcmread(str(out), stop_before_pixels=True)
    names = {s.SegmentLabel for s in seg.SegmentSequence}
    assert {"spleen", "liver", "label 6"} <= names
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"SEMIAUTOMATIC"}
    np.testing.assert_array_equal(read_dicom_seg(out, series_dir), labels)
    _no_leftovers(out.parent)


def test_cli_refuses_bad_label_maps_with_one_line(series_dir, volume, totalseg_dir, tmp_path, capsys):
    out = tmp_path / "seg.dcm"
    empty = save_labels(np.zeros(volume.shape, np.uint8), volume, tmp_path / "empty.nii.gz")
    fractional = tmp_path / "float.nii.gz"
    data = np.zeros(volume.shape, np.float32)
    data[200:210, 200:210, 5] = 1.5
    nib.save(nib.Nifti1Image(data, volume.affine), str(fractional))
    cases = [
        (totalseg_dir / "example_seg.nii.gz", series_dir, "shape"),  # a label map of another scan
        (empty, series_dir, "empty"),
        (fractional, series_dir, "non-integer"),
        (totalseg_dir / "example_seg_dicom.nii.gz", totalseg_dir / "ct_dicom", "StudyInstanceUID"),
    ]
    for label_path, folder, message in cases:
        code, err = _cli(capsys, label_path, "--series", folder, "--out", out)
        assert code != 0, label_path
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert message in err
        assert not out.exists()
    code, err = _cli(capsys, empty, "--series", series_dir, "--out", out, "--classes", "{not json")
    assert code != 0 and err.startswith("error: ") and "JSON" in err
    # a failed export leaves an existing file untouched
    out.write_bytes(b"previous export")
    code, _ = _cli(capsys, empty, "--series", series_dir, "--out", out)
    assert code != 0 and out.read_bytes() == b"previous export"
    _no_leftovers(tmp_path)


def test_dicom_seg_module_is_headless():
    code = (
        "import sys, napari_medseg.io.dicom_seg, napari_medseg.commands.dicom_seg\n"
        "bad = [m for m in sys.modules if m == 'napari' or m.startswith(('napari.', 'qtpy', 'PyQt'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
