"""DICOM folders with sub-folders (PACS / CD exports): the series loads exactly as from a flat folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from napari_medseg.errors import InputError
from napari_medseg.io import list_series, load_volume
from napari_medseg.io.dicom import sorted_series

SECOND_UID = "1.2.826.0.1.3680043.10.543.7"


@pytest.fixture(scope="module")
def flat(totalseg_dir: Path):
    return load_volume(totalseg_dir / "ct_dicom")


@pytest.fixture()
def nested(totalseg_dir: Path, tmp_path: Path) -> Path:
    """``PATIENT/STUDY/SERIES_A`` + ``.../SERIES_B`` holding the 20 real slices (split 12 + 8, renamed so
    path order is not slice order), a junk text file, a hidden file, a DICOMDIR, and a 2-slice copy of
    the series with another SeriesInstanceUID in ``.../OTHER/deeper``."""
    src = sorted((totalseg_dir / "ct_dicom").iterdir())
    study = tmp_path / "PATIENT" / "STUDY"
    for n, f in enumerate(src):
        sub = study / ("SERIES_A" if n % 5 < 3 else "SERIES_B")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, sub / f"IM{(7 * n) % 20:04d}")
    (study / "SERIES_A" / "notes.txt").write_text("not DICOM")
    shutil.copy(src[0], study / "SERIES_B" / ".hidden-copy")  # would be a duplicate slice if read
    hidden_dir = study / ".cache"
    hidden_dir.mkdir()
    shutil.copy(src[1], hidden_dir / "IM9999")  # idem
    shutil.copy(src[2], tmp_path / "PATIENT" / "DICOMDIR")  # a DICOMDIR is an index, never an image
    other = study / "OTHER" / "deeper"
    other.mkdir(parents=True)
    for f in src[3:5]:
        ds = pydicom.dcmread(str(f))
        ds.SeriesInstanceUID = SECOND_UID
        ds.SeriesDescription = "second series"
        ds.save_as(str(other / f.name))
    return tmp_path


def test_nested_series_loads_identically_to_the_flat_folder(flat, nested):
    series = {s.uid: s for s in list_series(nested)}
    assert len(series) == 2
    assert series[SECOND_UID].n_slices == 2
    (main_uid,) = set(series) - {SECOND_UID}
    assert series[main_uid].n_slices == 20
    with pytest.raises(InputError, match="2 series"):
        load_volume(nested)
    vol = load_volume(nested, series_uid=main_uid)
    assert vol.shape == flat.shape == (512, 512, 20)
    np.testing.assert_array_equal(vol.array, flat.array)
    np.testing.assert_array_equal(vol.affine, flat.affine)
    assert vol.array.dtype == flat.array.dtype
    assert vol.meta["series_uid"] == flat.meta["series_uid"]
    # the k-th slice comes from the same instance (same file content) as in the flat folder
    flat_bytes = [Path(p).read_bytes() for p in flat.meta["files"]]
    nested_bytes = [Path(p).read_bytes() for p in vol.meta["files"]]
    assert nested_bytes == flat_bytes

    second = load_volume(nested, series_uid=SECOND_UID)
    assert second.shape == (512, 512, 2)


def test_sorted_series_matches_load_series(flat, nested):
    uid = next(s.uid for s in list_series(nested) if s.uid != SECOND_UID)
    info = sorted_series(nested, uid)
    assert info.shape == flat.shape
    np.testing.assert_array_equal(info.affine, flat.affine)
    assert [p.read_bytes() for p in info.files] == [Path(p).read_bytes() for p in flat.meta["files"]]
    assert len(info.headers) == 20 and "PixelData" not in info.headers[0]


def test_nested_walk_is_deterministic_and_skips_junk(nested):
    from napari_medseg.io.dicom import iter_candidate_files

    files = list(iter_candidate_files(nested))
    names = {p.name for p in files}
    assert "notes.txt" in names  # offered to pydicom, which skips it
    assert not {"DICOMDIR", ".hidden-copy", "IM9999"} & names
    assert list(iter_candidate_files(nested)) == files  # same order every time
    assert list(iter_candidate_files(nested, max_depth=0)) == [p for p in files if p.parent == nested]


def test_folder_with_only_junk_in_sub_folders_is_refused(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "readme.txt").write_text("nothing")
    with pytest.raises(InputError, match="no DICOM images"):
        load_volume(tmp_path)


def test_napari_offers_its_reader_for_a_nested_dicom_export(nested, tmp_path):
    from napari_medseg._reader import get_reader

    assert get_reader(str(nested)) is not None
    junk = tmp_path / "notes" / "deeper"
    junk.mkdir(parents=True)
    (junk / "readme.txt").write_text("not DICOM")
    assert get_reader(str(tmp_path / "notes")) is None
