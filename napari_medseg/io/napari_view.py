"""Volume geometry in napari's terms (pure numpy; napari itself is not imported).

Display order is ``(K, J, I)``: :func:`to_display` transposes a ``(I, J, K)`` array so napari's first
(slider) axis walks ``K``, which shows axial slices for RAS/LPS/LAS volumes. The layer keywords from
:func:`layer_kwargs` place every voxel at its patient position in DICOM's LPS+ millimetres, in display
order ``(z, y, x) = (S, P, L)``::

    world_display = rotate @ diag(scale) @ index_display + translate
    world_display == W @ (affine @ [i, j, k, 1])[:3],  W = RAS (x, y, z) -> (S, P, L) = (z, -y, -x)
    index_display = (k, j, i)

With napari's default camera (``y`` down, ``x`` right) this is the radiological convention without any
camera setting: anterior at the top, the patient's right on the screen's left. So a volume opened with
File > Open (our reader) and a case opened in the review panels look the same, and napari's status bar
shows the scanner's (DICOM) patient coordinates.

``rotate`` is napari's "rotation" matrix, which (as in ``napari.utils.transforms``' own decomposition)
may contain a reflection: flipped axes (LPS, LAS) keep positive scales. ``shear`` is only given for
non-orthogonal grids (e.g. gantry tilt).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_medseg.io.volume import Volume

#: Permutation (I, J, K) -> display (K, J, I).
DISPLAY_AXES = (2, 1, 0)
_P = np.eye(3)[list(DISPLAY_AXES)]
#: Units of every layer's world axes (napari's scale bar and status bar read them).
UNITS = ("mm", "mm", "mm")
#: RAS+ (x, y, z) -> display world (S, P, L): reversed axes, A and R negated.
_W = np.diag([1.0, -1.0, -1.0]) @ _P


def to_display(arr: np.ndarray) -> np.ndarray:
    """``(I, J, K, ...)`` → ``(K, J, I, ...)`` view (no copy)."""
    return np.swapaxes(arr, 0, 2)


def from_display(arr_view: np.ndarray) -> np.ndarray:
    """``(K, J, I, ...)`` → ``(I, J, K, ...)`` view; inverse of :func:`to_display`."""
    return np.swapaxes(arr_view, 0, 2)


def display_affine(affine: np.ndarray) -> np.ndarray:
    """4×4 map from display indices ``(k, j, i)`` to display world ``(S, P, L)`` mm."""
    affine = np.asarray(affine, np.float64)
    out = np.eye(4)
    out[:3, :3] = _W @ affine[:3, :3] @ _P.T
    out[:3, 3] = _W @ affine[:3, 3]
    return out


def layer_kwargs(vol: Volume | np.ndarray) -> dict[str, Any]:
    """napari layer keywords ``scale``, ``translate`` (mm, display world ``(S, P, L)``) and, when needed,
    ``rotate``/``shear``.

    Args:
        vol: a Volume, or a 4×4 voxel → RAS+ affine.

    Returns:
        dict with ``scale`` (3 floats > 0), ``translate`` (3 floats) and, when not identity, ``rotate``
        (3×3 orthogonal matrix, possibly improper) and ``shear`` (3×3 upper-triangular, unit diagonal).
    """
    affine = vol.affine if isinstance(vol, Volume) else np.asarray(vol, np.float64)
    disp = display_affine(affine)
    linear = disp[:3, :3]
    # numpy's QR, not scipy's: the same LAPACK factorisation, without importing scipy.linalg in the GUI
    # thread on the first open (0.17 s)
    q, tri = np.linalg.qr(linear)  # linear = q @ tri, tri upper triangular
    signs = np.sign(np.diag(tri))
    signs[signs == 0] = 1.0
    q = q * signs  # flip columns so that diag(tri) > 0
    tri = signs[:, None] * tri
    scale = np.diag(tri).copy()
    shear = tri / scale[None, :]  # unit diagonal: tri = shear @ diag(scale)
    out: dict[str, Any] = {
        "scale": tuple(float(s) for s in scale),
        "translate": tuple(float(t) for t in disp[:3, 3]),
    }
    q = np.where(np.abs(q) < 1e-12, 0.0, q)
    if not np.allclose(q, np.eye(3), atol=1e-12):
        out["rotate"] = q
    if not np.allclose(shear, np.eye(3), atol=1e-9):
        out["shear"] = shear
    return out


def affine_from_layer(scale: Any, translate: Any, rotate: Any = None, shear: Any = None) -> np.ndarray:
    """Inverse of :func:`layer_kwargs`: the 4×4 voxel ``(i, j, k)`` → RAS+ mm affine of a 3D layer.

    ``rotate``/``shear`` are 3×3 matrices (or ``None``); shear must be given as a matrix.
    """
    scale = np.asarray(scale, np.float64)[-3:]
    translate = np.asarray(translate, np.float64)[-3:]
    rot = np.eye(3) if rotate is None else np.asarray(rotate, np.float64)[-3:, -3:]
    sh = np.eye(3) if shear is None else np.asarray(shear, np.float64)
    if sh.ndim == 1:  # napari's upper-triangular vector form
        m = np.eye(3)
        m[np.triu_indices(3, 1)] = sh
        sh = m
    linear_disp = rot @ sh[-3:, -3:] @ np.diag(scale)
    affine = np.eye(4)
    affine[:3, :3] = _W.T @ linear_disp @ _P
    affine[:3, 3] = _W.T @ translate
    return affine


#: CT window presets, name -> (level, width) in HU (the usual radiology reading windows).
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
#: The window a CT opens with.
DEFAULT_CT_WINDOW = "soft tissue"


def window_limits(level: float, width: float) -> tuple[float, float]:
    """Contrast limits ``(low, high)`` of a window given as level (centre) and width."""
    return (float(level - width / 2), float(level + width / 2))


#: Screen pixels of mouse drag that change the window width by a factor e (and the level by one width).
WINDOW_DRAG_PIXELS = 300.0


def dragged_window(
    start: tuple[float, float], dx_px: float, dy_px: float, pixels: float = WINDOW_DRAG_PIXELS
) -> tuple[float, float]:
    """Contrast limits after a window/level drag that began at limits ``start = (low, high)``.

    Right widens the window (less contrast), left narrows it; down raises the level (darker), up lowers it
    (brighter). Scale-free, so the same drag suits CT's Hounsfield units and MR's arbitrary intensities:
    the width changes by ``exp(dx / pixels)``, the level by ``dy / pixels`` widths.
    """
    low, high = (float(v) for v in start)
    width = max(high - low, 1e-6)
    level = (low + high) / 2 + width * dy_px / pixels
    width = width * float(np.exp(dx_px / pixels))
    return window_limits(level, width)


def level_width(limits: tuple[float, float]) -> tuple[float, float]:
    """``(level, width)`` of contrast limits ``(low, high)``; inverse of :func:`window_limits`."""
    low, high = (float(v) for v in limits)
    return (low + high) / 2, high - low


def default_contrast(vol: Volume) -> tuple[float, float]:
    """Contrast limits a volume opens with: CT the soft-tissue window, other images their 0.5-99.5 %
    intensity range (MR intensities have no absolute scale)."""
    if vol.modality == "CT":
        return window_limits(*CT_WINDOWS[DEFAULT_CT_WINDOW])
    arr = np.asarray(vol.array)
    step = max(1, int(round((arr.size / 1_000_000) ** (1 / 3))))
    lo, hi = (float(v) for v in np.percentile(arr[::step, ::step, ::step], [0.5, 99.5]))
    return (lo, hi if hi > lo else lo + 1.0)


#: Patient direction at the low and the high end of each display world axis ``(S, P, L)``.
AXIS_ENDS = (("I", "S"), ("A", "P"), ("R", "L"))

#: The radiologist's reading planes: ``dims.order`` (slider axis first, then the vertical and the
#: horizontal world axis) and napari's ``camera.orientation2d`` (which way those two point on screen).
#: Radiological convention: axial seen from the feet (anterior up, the patient's right on the screen's
#: left), coronal seen from the front (superior up, right on the left), sagittal seen from the patient's
#: left (superior up, anterior on the left).
VIEWS: dict[str, tuple[tuple[int, int, int], tuple[str, str]]] = {
    "axial": ((0, 1, 2), ("down", "right")),
    "coronal": ((1, 0, 2), ("up", "right")),
    "sagittal": ((2, 0, 1), ("up", "right")),
}


def view_name(order: Any, orientation2d: Any) -> str | None:
    """The reading plane (:data:`VIEWS` key) that a ``dims.order`` and ``camera.orientation2d`` show, or
    ``None`` for another arrangement (e.g. after napari's transpose button)."""
    key = (tuple(int(a) for a in order)[-3:], tuple(str(o) for o in orientation2d))
    return next((name for name, view in VIEWS.items() if view == key), None)


def view_markers(
    order: Any, orientation2d: Any, extent_world: np.ndarray, inset: float = 0.04
) -> list[tuple[str, tuple[float, float, float]]]:
    """Orientation letters at the top, bottom, left and right edges of a 2D view, with their world
    positions ``(S, P, L)`` in mm (in the middle of the box along the slider axis).

    Works for any display arrangement, not only :data:`VIEWS`: the letters say which patient direction
    lies at each edge of the screen, so they stay true when napari's own transpose button is used.

    Args:
        order: ``dims.order`` (3 world axes, slider first; the last two are shown vertically, horizontally).
        orientation2d: ``camera.orientation2d``: ``(vertical, horizontal)``, each ``"up"``/``"down"`` or
            ``"left"``/``"right"`` (the direction in which the world coordinate grows on screen).
        extent_world: ``[[z0, y0, x0], [z1, y1, x1]]`` world box (S, P, L) to place the letters in.
        inset: how far inside the edges, as a share of the side.

    Returns:
        ``[(letter, (s, p, l)), ...]`` for the top, bottom, left and right edges, in that order.
    """
    _, vert, horiz = (int(a) for a in tuple(order)[-3:])  # letters sit mid-box along the slider axis
    box = np.asarray(extent_world, dtype=np.float64)
    mid = box.mean(axis=0)
    low, high = box[0] + (box[1] - box[0]) * inset, box[1] - (box[1] - box[0]) * inset
    v_dir, h_dir = (str(o) for o in orientation2d)
    top_is_low = v_dir == "down"  # the coordinate grows downwards: its low end is at the top
    left_is_low = h_dir == "right"
    out = []
    for axis, first_is_low in ((vert, top_is_low), (horiz, left_is_low)):
        for end in (0, 1) if first_is_low else (1, 0):  # (top, bottom) or (left, right)
            point = mid.copy()
            point[axis] = low[axis] if end == 0 else high[axis]
            out.append((AXIS_ENDS[axis][end], (float(point[0]), float(point[1]), float(point[2]))))
    return out


#: Colours of label values 1, 2, ... (RGB 0..1), cycled; blues, greens and purples, so they never look
#: like the uncertainty heat map's reds and yellows.
def class_colour(value: int) -> tuple[float, float, float]:
    """RGB colour (0..1) of label value ``value`` (``value >= 1``): the shared
    :func:`napari_medseg.io.label_colors.label_rgb`, which DICOM SEG export recommends too."""
    from napari_medseg.io.label_colors import label_rgb

    r, g, b = label_rgb(value)
    return r / 255, g / 255, b / 255
