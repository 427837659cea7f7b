"""Display order and napari layer transforms put every voxel at its patient position (display world (S, P, L)
mm, DICOM's LPS reversed); reader/writer adapters."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_medseg._reader import get_reader
from napari_medseg._writer import write_labels
from napari_medseg.io import Volume, load_labels, load_volume
from napari_medseg.io.napari_view import affine_from_layer, from_display, layer_kwargs, to_display


def _rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [x for x in range(3) if x != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _oblique_affine() -> np.ndarray:
    """A flipped, doubly rotated, anisotropic grid (like a tilted LPS MR acquisition)."""
    affine = np.eye(4)
    affine[:3, :3] = _rotation(0, 17.0) @ _rotation(2, -31.0) @ np.diag([-0.8, -1.1, 3.5])
    affine[:3, 3] = [12.5, -40.0, 7.25]
    return affine


def _napari_world(kwargs: dict, display_index: np.ndarray) -> np.ndarray:
    """napari's data → world map, composed by hand: rotate @ shear @ diag(scale) @ x + translate."""
    rotate = kwargs.get("rotate", np.eye(3))
    shear = kwargs.get("shear", np.eye(3))
    return rotate @ shear @ np.diag(kwargs["scale"]) @ display_index + np.asarray(kwargs["translate"])


def _sample_indices(shape: tuple[int, int, int]) -> list[np.ndarray]:
    return [
        np.array(v) for v in [(0, 0, 0), (shape[0] - 1, 0, 0), (0, shape[1] - 1, 0), (3, 5, shape[2] - 1)]
    ]


def _spl(ras: np.ndarray) -> np.ndarray:
    """RAS+ point ``(x, y, z[, 1])`` -> display world ``(S, P, L)``."""
    return np.array([ras[2], -ras[1], -ras[0]])


def test_display_order_is_k_j_i_and_reversible():
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    view = to_display(arr)
    assert view.shape == (4, 3, 2)
    assert view[3, 2, 1] == arr[1, 2, 3]
    np.testing.assert_array_equal(from_display(view), arr)


@pytest.mark.parametrize("source", ["example_mr_sm.nii.gz", "example_ct_sm.nii.gz", "ct_dicom", "oblique"])
def test_layer_transform_maps_voxels_to_their_world_coordinates(totalseg_dir, source):
    if source == "oblique":
        vol = Volume(array=np.zeros((6, 7, 8), np.int16), affine=_oblique_affine())
    else:
        vol = load_volume(totalseg_dir / source)
    kwargs = layer_kwargs(vol)
    assert all(s > 0 for s in kwargs["scale"])
    for ijk in _sample_indices(vol.shape):
        expected = _spl(vol.affine @ np.r_[ijk, 1.0])  # world in display order (S, P, L)
        np.testing.assert_allclose(_napari_world(kwargs, ijk[::-1].astype(float)), expected, atol=1e-9)
    np.testing.assert_allclose(affine_from_layer(**kwargs), vol.affine, atol=1e-12)


def test_ras_volume_is_flipped_in_plane_for_the_radiological_view(totalseg_dir):
    kwargs = layer_kwargs(load_volume(totalseg_dir / "example_ct_sm.nii.gz"))
    assert set(kwargs) == {"scale", "translate", "rotate"}
    assert kwargs["scale"] == (3.0, 3.0, 3.0)
    # the slice axis (S) is kept; A and R run up and to the left on screen
    np.testing.assert_allclose(kwargs["rotate"], np.diag([1.0, -1.0, -1.0]))


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing")
def test_napari_image_layer_agrees_with_the_affine(totalseg_dir):
    napari = pytest.importorskip("napari")
    for vol in (
        load_volume(totalseg_dir / "example_mr_sm.nii.gz"),
        Volume(np.zeros((6, 7, 8)), _oblique_affine()),
    ):
        layer = napari.layers.Image(to_display(vol.array), **layer_kwargs(vol))
        for ijk in _sample_indices(vol.shape):
            expected = _spl(vol.affine @ np.r_[ijk, 1.0])
            np.testing.assert_allclose(layer.data_to_world(ijk[::-1]), expected, atol=1e-6)


def test_reader_claims_nifti_and_dicom_folders_only(totalseg_dir, tmp_path):
    assert get_reader(str(totalseg_dir / "example_mr_sm.nii.gz")) is not None
    assert get_reader(str(totalseg_dir / "ct_dicom")) is not None
    assert get_reader(str(totalseg_dir / "SOURCE.md")) is None
    assert get_reader(str(tmp_path)) is None


def test_reader_layers_carry_geometry_and_writer_puts_labels_back_on_the_source_grid(totalseg_dir, tmp_path):
    label_path = totalseg_dir / "example_seg_mr.nii.gz"
    [(data, kwargs, layer_type)] = get_reader(str(label_path))(str(label_path))
    assert layer_type == "labels"
    assert data.shape == (20, 91, 117)
    assert kwargs["metadata"]["orientation"] == "LPS"
    assert kwargs["metadata"]["sform_code"] == 2

    [written] = write_labels(str(tmp_path / "edited.nii.gz"), data, kwargs)
    src, out = nib.load(str(label_path)), nib.load(written)
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), np.asanyarray(src.dataobj))
    np.testing.assert_array_equal(out.affine, src.affine)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (0, 2)

    # A labels layer drawn in napari has no metadata: the affine comes from scale/translate/rotate.
    bare = {k: v for k, v in kwargs.items() if k != "metadata"}
    [written] = write_labels(str(tmp_path / "drawn"), data, bare)
    assert written.endswith("drawn.nii.gz")
    np.testing.assert_allclose(load_labels(written).affine, src.affine, atol=1e-4)


def test_reader_shows_dicom_series_as_a_ct_image_at_physical_size(totalseg_dir):
    folder = str(totalseg_dir / "ct_dicom")
    [(data, kwargs, layer_type)] = get_reader(folder)(folder)
    assert layer_type == "image"
    assert data.shape == (20, 512, 512)
    np.testing.assert_allclose(kwargs["scale"], (2.0, 0.9765625, 0.9765625))
    assert kwargs["metadata"]["modality"] == "CT"


BOX = np.array([[0.0, 0.0, 0.0], [90.0, 300.0, 360.0]])  # world (S, P, L) mm


def _edges(order, orientation2d):
    from napari_medseg.io.napari_view import view_markers

    marks = view_markers(order, orientation2d, BOX, inset=0.0)
    return dict(zip(("top", "bottom", "left", "right"), marks, strict=True))


@pytest.mark.parametrize(
    ("view", "letters"),
    [
        ("axial", ("A", "P", "R", "L")),  # from the feet: anterior up, the patient's right on the left
        ("coronal", ("S", "I", "R", "L")),  # from the front
        ("sagittal", ("S", "I", "A", "P")),  # from the patient's left: anterior on the left
    ],
)
def test_each_reading_plane_names_its_edges_radiologically(view, letters):
    from napari_medseg.io.napari_view import VIEWS, view_name

    order, orientation2d = VIEWS[view]
    assert view_name(order, orientation2d) == view
    edges = _edges(order, orientation2d)
    assert tuple(edges[side][0] for side in ("top", "bottom", "left", "right")) == letters
    _, vert, horiz = order
    # each letter sits at the end of the displayed axis that lies in its direction: I/A/R at the low end
    low_end = {"I", "A", "R"}
    for side, axis in (("top", vert), ("bottom", vert), ("left", horiz), ("right", horiz)):
        letter, point = edges[side]
        assert point[axis] == (BOX[0, axis] if letter in low_end else BOX[1, axis])
    # and in the middle of the box along the other two axes (so a projecting layer shows it on any slice)
    assert edges["top"][1][horiz] == BOX[:, horiz].mean()


def test_letters_stay_true_after_napari_transposes_or_flips_the_view():
    from napari_medseg.io.napari_view import view_name

    # coronal transposed by napari's button: the patient's left-right runs vertically, up = +L
    edges = _edges((1, 2, 0), ("up", "right"))
    assert [edges[s][0] for s in ("top", "bottom", "left", "right")] == ["L", "R", "I", "S"]
    assert view_name((1, 2, 0), ("up", "right")) is None
    # axial with the horizontal axis flipped: neurological convention, the patient's right on the right
    edges = _edges((0, 1, 2), ("down", "left"))
    assert [edges[s][0] for s in ("top", "bottom", "left", "right")] == ["A", "P", "L", "R"]
    assert view_name((0, 1, 2), ("down", "left")) is None


def test_window_drag_is_scale_free_and_goes_the_usual_way():
    from napari_medseg.io.napari_view import WINDOW_DRAG_PIXELS, dragged_window, level_width, window_limits

    soft = window_limits(40, 400)  # CT soft tissue, HU
    assert dragged_window(soft, 0, 0) == soft
    level, width = level_width(dragged_window(soft, WINDOW_DRAG_PIXELS, 0))
    assert level == pytest.approx(40) and width == pytest.approx(400 * np.e)  # right: wider
    level, width = level_width(dragged_window(soft, 0, WINDOW_DRAG_PIXELS / 4))
    assert level == pytest.approx(140) and width == pytest.approx(400)  # down: a quarter width darker
    mr = (0.0, 2.0)  # an MR in arbitrary units: the same drag, the same relative change
    assert level_width(dragged_window(mr, 90, -30))[1] / 2.0 == pytest.approx(
        level_width(dragged_window(soft, 90, -30))[1] / 400
    )
