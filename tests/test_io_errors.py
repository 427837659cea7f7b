"""Bad input gives one clear line (InputError / GeometryError), never a traceback from a library."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.errors import GeometryError, InputError
from napari_medseg.io import load_labels, load_volume

DIM_OFFSET = 40  # NIfTI-1 header: short dim[8] at byte 40


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def _raw_nifti(hippo_cases, tmp_path: Path) -> tuple[Path, bytes]:
    """The first hippocampus image as an uncompressed .nii (bytes and path)."""
    raw = gzip.decompress(hippo_cases[0][0].read_bytes())
    path = tmp_path / "raw.nii"
    path.write_bytes(raw)
    return path, raw


def _save_like(real: Path, array: np.ndarray, dest: Path) -> Path:
    img = nib.load(str(real))
    nib.save(nib.Nifti1Image(array, img.affine), str(dest))
    return dest


def test_truncated_gzip_is_an_input_error(hippo_cases, tmp_path):
    data = hippo_cases[0][0].read_bytes()
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        load_volume(bad)
    assert "truncated" in _one_line(err)


@pytest.mark.parametrize("damage", ["deflate", "crc"])
def test_damaged_compressed_voxels_are_an_input_error(tmp_path, damage):
    """Damage in the voxels of a .nii.gz (readable header) is one line, on the fast (ISA-L) gzip path too."""
    import zlib

    array = np.random.default_rng(0).integers(0, 1000, (100, 100, 100)).astype(np.int16)
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / "plain.nii"))
    raw = (tmp_path / "plain.nii").read_bytes()
    if damage == "deflate":  # 1 MB of good deflate data, then a block of the invalid type 3
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = deflate.compress(raw[:1_000_000]) + deflate.flush(zlib.Z_FULL_FLUSH) + b"\x07" + bytes(64)
        data = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body
    else:  # an intact stream with a wrong CRC-32 in the trailer
        data = bytearray(gzip.compress(raw, mtime=0))
        data[-8:-4] = bytes(4)
    bad = tmp_path / f"{damage}.nii.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        load_volume(bad)
    assert "truncated or corrupt" in _one_line(err)


def test_fast_gzip_reading_equals_nibabel(hippo_cases, totalseg_dir):
    """Voxels read through ISA-L equal nibabel's (dtype, byte order, Fortran order, values)."""
    from napari_medseg.io.nifti import _read_gzip_fast, _read_image

    pytest.importorskip("isal")
    for path in [hippo_cases[0][0], hippo_cases[0][1], *sorted(totalseg_dir.glob("*.nii.gz"))[:3]]:
        img = _read_image(path)
        fast = _read_gzip_fast(img, path)
        assert fast is not None, path
        expected = np.asanyarray(img.dataobj)
        assert fast.dtype == expected.dtype and fast.flags.f_contiguous and fast.flags.writeable
        np.testing.assert_array_equal(fast, expected)


def test_garbage_files_are_not_nifti(tmp_path):
    for name in ("garbage.nii.gz", "garbage.nii"):
        bad = tmp_path / name
        bad.write_bytes(b"this is not an image " * 40)
        with pytest.raises(InputError) as err:
            load_volume(bad)
        assert "NIfTI" in _one_line(err) or "corrupt" in _one_line(err)


def test_other_extensions_and_missing_files_are_refused(tmp_path):
    other = tmp_path / "scan.png"
    other.write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="neither a NIfTI"):
        load_volume(other)
    with pytest.raises(InputError, match="not found"):
        load_volume(tmp_path / "nope.nii.gz")


def test_2d_and_true_4d_images_are_refused_but_singleton_4d_is_squeezed(hippo_cases, tmp_path):
    real = hippo_cases[0][0]
    arr = np.asanyarray(nib.load(str(real)).dataobj)
    with pytest.raises(InputError, match="3D") as err:
        load_volume(_save_like(real, arr[:, :, 0], tmp_path / "slice.nii.gz"))
    _one_line(err)
    with pytest.raises(InputError, match="4D"):
        load_volume(_save_like(real, np.stack([arr, arr], axis=-1), tmp_path / "two.nii.gz"))
    vol = load_volume(_save_like(real, arr[..., None], tmp_path / "one.nii.gz"))
    np.testing.assert_array_equal(vol.array, arr)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_voxels_are_refused(hippo_cases, tmp_path, bad_value):
    real = hippo_cases[0][0]
    arr = np.asanyarray(nib.load(str(real)).dataobj).astype(np.float32)
    arr[3, 4, 5] = bad_value
    with pytest.raises(InputError, match="NaN or infinite"):
        load_volume(_save_like(real, arr, tmp_path / "nan.nii.gz"))


def test_complex_and_colour_voxels_are_refused(hippo_cases, tmp_path):
    """MR phase/k-space saved as complex64 and RGB24 files are not greyscale scans: one line, not a silent
    cast that throws the imaginary part away (or a numpy error deep in the model)."""
    real = hippo_cases[0][0]
    arr = np.asanyarray(nib.load(str(real)).dataobj).astype(np.float32)
    with pytest.raises(InputError, match="complex values") as err:
        load_volume(_save_like(real, (arr + 1j * arr).astype(np.complex64), tmp_path / "phase.nii.gz"))
    _one_line(err)
    rgb = np.zeros(arr.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    with pytest.raises(InputError, match="colour"):
        load_volume(_save_like(real, rgb, tmp_path / "rgb.nii.gz"))


def test_absurd_header_dims_are_refused_before_reading(hippo_cases, tmp_path):
    path, raw = _raw_nifti(hippo_cases, tmp_path)
    header = bytearray(raw)
    dims = np.frombuffer(bytes(header[DIM_OFFSET : DIM_OFFSET + 16]), "<i2").copy()
    dims[1] = 30000
    dims[2] = 30000
    header[DIM_OFFSET : DIM_OFFSET + 16] = dims.astype("<i2").tobytes()
    path.write_bytes(bytes(header))
    with pytest.raises(InputError) as err:
        load_volume(path)
    assert "corrupt" in _one_line(err)


def test_zero_size_volume_is_refused(hippo_cases, tmp_path):
    path, raw = _raw_nifti(hippo_cases, tmp_path)
    header = bytearray(raw)
    dims = np.frombuffer(bytes(header[DIM_OFFSET : DIM_OFFSET + 16]), "<i2").copy()
    dims[3] = 0
    header[DIM_OFFSET : DIM_OFFSET + 16] = dims.astype("<i2").tobytes()
    path.write_bytes(bytes(header))
    with pytest.raises(InputError, match="empty"):
        load_volume(path)


def test_fractional_labels_are_refused(hippo_dir, tmp_path):
    real = hippo_dir / "labelsTr" / "hippocampus_003.nii.gz"
    arr = nib.load(str(real)).get_fdata().astype(np.float32)
    arr[arr == 1] = 1.5
    with pytest.raises(InputError, match="non-integer"):
        load_labels(_save_like(real, arr, tmp_path / "frac.nii.gz"))


def test_label_on_another_grid_is_a_geometry_error(hippo_cases, totalseg_dir, tmp_path):
    image_path, label_path = hippo_cases[0]
    image = load_volume(image_path)
    with pytest.raises(GeometryError, match="shape") as err:
        load_labels(hippo_cases[1][1], reference=image)
    _one_line(err)
    label = nib.load(str(label_path))
    shifted = label.affine.copy()
    shifted[:3, 3] += [0.0, 2.0, 0.0]
    moved = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(label.dataobj), shifted), str(moved))
    with pytest.raises(GeometryError, match="grid"):
        load_labels(moved, reference=image)


def test_folder_without_dicom_images_is_refused(totalseg_dir, tmp_path):
    with pytest.raises(InputError, match="no DICOM images"):
        load_volume(tmp_path)
    (tmp_path / "readme.txt").write_text("nothing to see")
    shutil.copy(totalseg_dir / "SOURCE.md", tmp_path / "SOURCE.md")
    with pytest.raises(InputError, match="no DICOM images") as err:
        load_volume(tmp_path)
    _one_line(err)


def test_truncated_dicom_pixel_data_is_an_input_error(totalseg_dir, tmp_path):
    for f in sorted((totalseg_dir / "ct_dicom").iterdir())[:3]:
        shutil.copy(f, tmp_path / f.name)
    victim = sorted(tmp_path.iterdir())[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 20000])
    with pytest.raises(InputError) as err:
        load_volume(tmp_path)
    _one_line(err)
