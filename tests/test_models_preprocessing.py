"""Intensity normalisation on real MRI volumes and edge cases (constant, uint8, NaN)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.errors import InputError
from napari_medseg.models.preprocessing import normalize_intensity


@pytest.fixture(scope="module")
def real_image(hippo_cases) -> np.ndarray:
    return np.asarray(nib.load(hippo_cases[0][0]).dataobj)


def test_zscore_gives_zero_mean_unit_std_float32(real_image):
    out = normalize_intensity(real_image)
    assert out.dtype == np.float32 and out.shape == real_image.shape
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-4


def test_percentile_clips_outliers_and_scales_to_unit_range(real_image):
    spiked = real_image.astype(np.float32).copy()
    spiked.flat[0] = 1e6
    out = normalize_intensity(spiked, "percentile")
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    # the spike is clipped, so the bulk keeps its spread instead of collapsing near 0
    assert np.median(out) > 0.05


@pytest.mark.parametrize("scheme", ["zscore", "percentile"])
def test_constant_volume_becomes_zeros_without_nan(scheme):
    out = normalize_intensity(np.full((4, 5, 6), 7, np.int16), scheme)
    assert out.dtype == np.float32 and not out.any()


def test_uint8_input_does_not_wrap_around():
    arr = np.array([0, 255, 0, 255], np.uint8).reshape(1, 2, 2)
    out = normalize_intensity(arr)
    np.testing.assert_allclose(out.ravel(), [-1, 1, -1, 1], atol=1e-6)


def test_unknown_scheme_and_non_finite_values_raise_input_error():
    with pytest.raises(InputError, match="unknown intensity normalisation"):
        normalize_intensity(np.zeros((2, 2, 2)), "minmax")
    with pytest.raises(InputError, match="NaN"):
        normalize_intensity(np.array([[[1.0, np.nan]]]))


def test_device_percentile_is_numpys_linear_percentile():
    """The selection used on a GPU (two kthvalues) equals numpy's default percentile."""
    import torch

    from napari_medseg.models.preprocessing import _percentile

    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 1000, 20001):
        values = rng.normal(size=n).round(2)  # ties included
        flat = torch.from_numpy(values)
        for q in (0.0, 0.005, 0.25, 0.5, 0.995, 1.0):
            assert float(_percentile(flat, q)) == pytest.approx(np.percentile(values, 100 * q), abs=1e-12)


@pytest.mark.parametrize("scheme", ["zscore", "percentile"])
def test_memory_order_and_byte_order_do_not_change_the_result(scheme):
    """A Fortran-ordered (NIfTI) volume keeps its order (no transposing copy); big-endian input works."""
    rng = np.random.default_rng(4)
    image = rng.integers(-1000, 2000, size=(20, 30, 16)).astype(np.int16)
    expected = normalize_intensity(image, scheme)
    fortran = normalize_intensity(np.asfortranarray(image), scheme)
    assert fortran.flags.f_contiguous
    np.testing.assert_array_equal(fortran, expected)
    np.testing.assert_array_equal(normalize_intensity(image.astype(">i2"), scheme), expected)
