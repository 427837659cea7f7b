"""Layer plumbing shared by the panels: which layers a case shows, and how they are built.

Every array goes to napari through :mod:`napari_medseg.io.napari_view`: ``to_display`` gives a
``(K, J, I)`` *view* of the ``(I, J, K)`` array (so painting the working-labels layer edits
``ReviewSession.labels`` itself, with napari's undo), and ``layer_kwargs`` places voxels at their
physical position (mm, world axes ``(S, P, L)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.io.napari_view import (
    UNITS,
    VIEWS,
    default_contrast,
    from_display,
    layer_kwargs,
    to_display,
    view_markers,
)

if TYPE_CHECKING:
    import napari

    from napari_medseg.inference.prediction import Prediction
    from napari_medseg.review.diff import LabelDiff
    from napari_medseg.review.session import ReviewSession

#: Layer names (panels find their layers by these names).
IMAGE = "image"
LABELS = "labels"
PROPOSAL = "proposal"
UNCERTAINTY = "uncertainty"
DIFF = "changes vs proposal"
PROB_PREFIX = "p(foreground) "
MARKERS = "orientation"
REGION = "current region"
DIAMETERS = "diameters"

#: Default uncertainty overlay look: transparent below the threshold, then red to yellow.
OVERLAY_OPACITY = 0.75
OVERLAY_THRESHOLD = 0.5  # = inference.regions.DEFAULT_THRESHOLD: what is shown is what regions are made of
OVERLAY_COLOURS = [[1.0, 0.1, 0.0, 0.0], [1.0, 0.15, 0.0, 0.55], [1.0, 0.6, 0.0, 0.85], [1.0, 1.0, 0.2, 1.0]]


def overlay_colormap():  # noqa: ANN201 - napari Colormap
    """The uncertainty overlay's colormap (RGBA: low values see-through, so the anatomy stays visible)."""
    from napari.utils.colormaps import Colormap

    return Colormap(OVERLAY_COLOURS, name="uncertainty", controls=[0.0, 0.01, 0.5, 1.0])


def label_colormap(classes: dict[int, str] | None = None):  # noqa: ANN201 - DirectLabelColormap
    """The shared per-value label colours (:mod:`napari_medseg.io.label_colors`, the ones a DICOM SEG
    export recommends), background clear; ``classes`` is accepted for the callers that name them."""
    from napari.utils.colormaps import DirectLabelColormap

    from napari_medseg.io.label_colors import napari_color_dict

    return DirectLabelColormap(color_dict=napari_color_dict())


@contextmanager
def _keep_active(viewer: napari.Viewer) -> Iterator[None]:
    """Add helper layers (heat map, region circle, letters) without taking the active layer from the one
    being edited: napari makes every added layer the active one, and the brush follows it."""
    active = viewer.layers.selection.active
    try:
        yield
    finally:
        if active is not None and active in viewer.layers:
            viewer.layers.selection.active = active


def _name_classes(layer: Any, classes: dict[int, str]) -> None:
    """Class names in the layer's features, so napari's status bar says 'anterior', not '1'."""
    import pandas as pd

    values = sorted(classes)
    layer.features = pd.DataFrame({"index": values, "class": [classes[v] for v in values]})


def get(viewer: napari.Viewer, name: str):  # noqa: ANN201 - a napari layer or None
    """The layer called ``name``, or ``None``."""
    return viewer.layers[name] if name in viewer.layers else None


def _remove(viewer: napari.Viewer, name: str) -> None:
    if name in viewer.layers:
        viewer.layers.remove(name)


def shown_image(viewer: napari.Viewer) -> Any:
    """The image the window/level tools act on: the open case's, else the selected Image layer (e.g. a
    scan opened with File > Open); ``None`` if neither."""
    layer = get(viewer, IMAGE)
    if layer is None:
        active = viewer.layers.selection.active
        layer = active if active is not None and active._type_string == "image" else None
    return layer


def clear_case(viewer: napari.Viewer) -> None:
    """Remove every layer this plugin shows for a case.

    In one batch: napari runs a full garbage collection after each removal outside a batch (~0.5 s each
    in a process holding torch and a CT), so a case switch pays it once, not once per layer.
    """
    ours = (IMAGE, LABELS, PROPOSAL, UNCERTAINTY, DIFF, MARKERS, REGION, DIAMETERS)
    with viewer.layers.batched_update():
        for layer in list(viewer.layers):
            if layer.name in ours or layer.name.startswith(PROB_PREFIX):
                viewer.layers.remove(layer)


def set_editable(viewer: napari.Viewer, editable: bool) -> None:
    """Allow or stop painting on the working labels and the proposal (e.g. while another case loads)."""
    for name in (LABELS, PROPOSAL):
        layer = get(viewer, name)
        if layer is not None:
            layer.editable = editable


def _geometry(session: ReviewSession) -> dict[str, Any]:
    return {**layer_kwargs(session.image), "units": UNITS}


def show_image(viewer: napari.Viewer, session: ReviewSession) -> Any:
    """Replace the shown case by the image of ``session``'s case; :func:`show_labels` adds its labels
    (the controller shows the image while the labels still load)."""
    clear_case(viewer)
    image = viewer.add_image(
        to_display(session.image.array),
        name=IMAGE,
        colormap="gray",
        contrast_limits=default_contrast(session.image),  # CT: soft-tissue window
        **_geometry(session),
    )
    image.metadata["case_id"] = session.case_id
    image.metadata["modality"] = session.image.modality
    show_orientation(viewer, image)
    viewer.canvas.overlays.scale_bar.visible = True  # in mm: the layers' units
    # Radiological convention without a camera setting: the world is (S, P, L) (io.napari_view), so with
    # napari's default camera anterior is up and the patient's right on the left, as with File > Open.
    viewer.reset_view()
    step = [s // 2 for s in to_display(session.image.array).shape]
    viewer.dims.current_step = tuple(step)
    return image


def show_labels(viewer: napari.Viewer, session: ReviewSession) -> Any:
    """Add the working labels (editable outlines) and the proposal over the image :func:`show_image` shows."""
    classes = session.store.labels
    labels = viewer.add_labels(
        to_display(session.labels),
        name=LABELS,
        opacity=0.9,
        colormap=label_colormap(classes),
        **_geometry(session),
    )
    labels.contour = 2  # outlines: the anatomy and the uncertainty overlay stay visible inside
    labels.metadata["case_id"] = session.case_id
    _name_classes(labels, classes)
    if session.proposal is not None:
        show_proposal(viewer, session)
    for name in (MARKERS, REGION):  # the letters stay on top
        if name in viewer.layers:
            viewer.layers.move(viewer.layers.index(name), len(viewer.layers))
    viewer.layers.selection.active = labels
    return labels


def show_proposal(viewer: napari.Viewer, session: ReviewSession) -> None:
    """(Re)show the proposal as an editable Labels layer (outlines) under the working labels; it holds a
    copy, so edits to it never change the stored proposal until accepted."""
    data = to_display(session.proposal.copy(order="K"))
    layer = get(viewer, PROPOSAL)
    if layer is not None and layer.data.shape == data.shape:  # same case: no layer rebuild
        layer.data = data
        return
    _remove(viewer, PROPOSAL)
    classes = session.store.labels
    layer = viewer.add_labels(
        data,
        name=PROPOSAL,
        opacity=0.5,
        colormap=label_colormap(classes),
        **_geometry(session),
    )
    layer.contour = 1
    _name_classes(layer, classes)
    _move_below(viewer, PROPOSAL, LABELS)


#: How the orientation letters are drawn: a 3D Points layer whose points are invisible (only their text
#: shows); :func:`place_markers` keeps them on the slice shown, in whichever plane (napari's
#: ``projection_mode="all"`` does not show a Points layer's text on other slices, napari 0.9).
MARKER_STYLE: dict[str, Any] = {
    "size": 0.1,
    "face_color": "transparent",
    "border_width": 0,
    "text": {"string": "{letter}", "color": "yellow", "size": 16},
    "units": UNITS,
}


def show_orientation(viewer: napari.Viewer, image: Any) -> Any:
    """Orientation letters (A/P/R/L on an axial view, S/I/R/L coronal, S/I/A/P sagittal) at the edges of the
    view; they follow the camera and the reading plane (:func:`place_markers`), so they stay on screen when
    zoomed in and always name the patient direction at each edge."""
    _remove(viewer, MARKERS)
    marks = _markers(viewer, image)
    step = _image_step(image)
    with _keep_active(viewer):
        layer = viewer.add_points(
            np.array([point for _, point in marks]) / step,
            name=MARKERS,
            features={"letter": [letter for letter, _ in marks]},
            scale=step,
            **MARKER_STYLE,
        )
    layer.editable = False
    return layer


def _image_step(image: Any) -> np.ndarray:
    """The image's voxel size per world axis (mm). Helper Points layers take it as their scale (data =
    world / step): napari's sliders step by the smallest scale of any layer, so a Points layer at 1 mm
    would turn a 3.27 mm CT's 53 slices into 173 slider steps."""
    return np.abs(np.asarray(image.scale, dtype=np.float64)[-3:])


def _markers(viewer: napari.Viewer, image: Any) -> list[tuple[str, tuple[float, float, float]]]:
    lead = viewer.dims.ndim - 3  # a 4D layer elsewhere adds leading world axes
    order = [int(a) - lead for a in viewer.dims.order[-3:]]
    marks = view_markers(order, viewer.scene.camera.orientation2d, visible_box(viewer, image))
    slider, at = order[0], float(viewer.dims.point[order[0] + lead])
    return [(letter, tuple(at if a == slider else v for a, v in enumerate(p))) for letter, p in marks]


def visible_box(viewer: napari.Viewer, image: Any) -> np.ndarray:
    """``[[z0, y0, x0], [z1, y1, x1]]`` world box (S, P, L) of the image part the 2D view shows: the image's
    extent, cut to the canvas along the two displayed axes (whole image if unknown or in 3D)."""
    extent = np.asarray(image.extent.world, dtype=np.float64)[:, -3:]
    if viewer.dims.ndisplay != 2:
        return extent
    shown = [int(a) - (viewer.dims.ndim - 3) for a in viewer.dims.displayed]
    height, width = viewer.canvas.size
    half = np.array([height, width], dtype=np.float64) / (2.0 * max(viewer.scene.camera.zoom, 1e-9))
    centre = np.asarray(viewer.scene.camera.center[-2:], dtype=np.float64)
    low = np.maximum(extent[0, shown], centre - half)
    high = np.minimum(extent[1, shown], centre + half)
    if np.any(high <= low):
        return extent
    box = extent.copy()
    box[0, shown], box[1, shown] = low, high
    return box


def place_markers(viewer: napari.Viewer) -> None:
    """Move the orientation letters to the edges of what the view shows now, on the slice shown (4.6 ms),
    naming the current plane."""
    layer, image = get(viewer, MARKERS), get(viewer, IMAGE)
    if layer is None or image is None:
        return
    marks = _markers(viewer, image)
    letters = [letter for letter, _ in marks]
    layer.data = np.array([point for _, point in marks]) / np.asarray(layer.scale)  # always four points
    if layer.features["letter"].tolist() != letters:  # another plane: new letters
        layer.features = {"letter": letters}


def set_view(viewer: napari.Viewer, name: str) -> None:
    """Show the reading plane ``name`` (a :data:`~napari_medseg.io.napari_view.VIEWS` key) in the radiological
    convention, keeping the point under the sliders: after "Next region", coronal shows that region's slice."""
    order, orientation2d = VIEWS[name]
    viewer.dims.ndisplay = 2
    lead = viewer.dims.ndim - 3  # a 4D layer elsewhere adds leading world axes
    viewer.dims.order = (*range(lead), *(int(a) + lead for a in order))
    viewer.scene.camera.orientation2d = orientation2d
    viewer.reset_view()
    place_markers(viewer)


def show_region(viewer: napari.Viewer, world: tuple[float, ...], radius_mm: float) -> Any:
    """Mark the current uncertain region: a thin cyan circle around it (on its centre slice)."""
    layer = get(viewer, REGION)
    image = get(viewer, IMAGE)
    step = _image_step(image) if image is not None else np.ones(3)
    point = np.asarray([world], dtype=np.float64)[:, -3:] / step
    # a little outside the region, so its colours stay visible (mm; point sizes are in data units)
    size = (2.0 * radius_mm + 4.0) / float(step.min())
    if layer is not None and not np.allclose(layer.scale, step):  # another case's grid
        _remove(viewer, REGION)
        layer = None
    if layer is None:
        with _keep_active(viewer):
            layer = viewer.add_points(
                point,
                name=REGION,
                scale=step,
                symbol="disc",
                size=size,
                face_color="transparent",
                border_color="cyan",
                border_width=0.06,
                units=UNITS,
            )
        layer.editable = False
    else:
        layer.data = point
        layer.size = size
    return layer


#: Colours of the drawn long and short axis (RECIST calipers).
DIAMETER_COLOURS = ("yellow", "cyan")


def show_diameters(viewer: napari.Viewer, segments: list[tuple[Any, Any]]) -> Any:
    """Draw the long and the short axis of a measured structure: line segments ``(world0, world1)`` (mm,
    display axis order) on their slice, in :data:`DIAMETER_COLOURS`; replaces the ones drawn before."""
    _remove(viewer, DIAMETERS)
    image = get(viewer, IMAGE)
    step = _image_step(image) if image is not None else np.ones(3)
    lines = [np.array([a, b], dtype=np.float64)[:, -3:] / step for a, b in segments]
    with _keep_active(viewer):
        layer = viewer.add_shapes(
            lines,
            shape_type="line",
            name=DIAMETERS,
            scale=step,  # no slider steps of its own (see _image_step)
            edge_color=list(DIAMETER_COLOURS[: len(lines)]),
            edge_width=1.5 / float(step.min()),
            units=UNITS,
        )
    layer.editable = False
    return layer


def _move_below(viewer: napari.Viewer, name: str, other: str) -> None:
    if name in viewer.layers and other in viewer.layers:
        src = viewer.layers.index(name)
        dst = viewer.layers.index(other)
        if src > dst:
            viewer.layers.move(src, dst)


def show_uncertainty(
    viewer: napari.Viewer, session: ReviewSession, band_only: bool = True, visible: bool = True
) -> Any:
    """Show (or update) the uncertainty heat map over the label outlines, with its colour bar.

    Transparent below the threshold (the lower contrast limit), then red to yellow; translucent
    blending, so the image and the outlines stay visible through it.
    """
    data = session.uncertainty_map(band_only=band_only)
    if data is None:
        _remove(viewer, UNCERTAINTY)
        return None
    layer = get(viewer, UNCERTAINTY)
    if layer is not None and layer.data.shape == to_display(data).shape:
        layer.data = to_display(data)
        return layer
    _remove(viewer, UNCERTAINTY)
    with _keep_active(viewer):
        layer = viewer.add_image(
            to_display(data),
            name=UNCERTAINTY,
            colormap=overlay_colormap(),
            blending="translucent",
            opacity=OVERLAY_OPACITY,
            contrast_limits=(OVERLAY_THRESHOLD, 1.0),
            visible=visible,
            **_geometry(session),
        )
    layer.metadata["band_only"] = band_only
    layer.colorbar.visible = True
    for name in (MARKERS, REGION):  # markers stay on top
        if name in viewer.layers:
            viewer.layers.move(viewer.layers.index(name), len(viewer.layers))
    return layer


def show_probabilities(viewer: napari.Viewer, session: ReviewSession, prediction: Prediction) -> None:
    """One hidden Image layer per network: foreground probability ``1 - p(background)``."""
    for name, probs in prediction.probs.items():
        fg = 1.0 - np.asarray(probs[0], dtype=np.float32)
        _remove(viewer, PROB_PREFIX + name)
        with _keep_active(viewer):
            viewer.add_image(
                to_display(fg),
                name=PROB_PREFIX + name,
                colormap="viridis",
                contrast_limits=(0.0, 1.0),
                blending="additive",
                visible=False,
                **_geometry(session),
            )


def show_diff(viewer: napari.Viewer, session: ReviewSession, diff: LabelDiff) -> Any:
    """Added voxels green, removed voxels red, as a (read-only by convention) Labels layer."""
    from napari.utils.colormaps import DirectLabelColormap

    from napari_medseg.review.diff import ADDED, REMOVED

    _remove(viewer, DIFF)
    cmap = DirectLabelColormap(
        color_dict={
            None: (0, 0, 0, 0),
            0: (0, 0, 0, 0),
            ADDED: (0.1, 0.9, 0.2, 1.0),
            REMOVED: (1.0, 0.15, 0.15, 1.0),
        }
    )
    with _keep_active(viewer):
        layer = viewer.add_labels(
            to_display(diff.map), name=DIFF, colormap=cmap, opacity=0.9, **_geometry(session)
        )
    layer.editable = False
    return layer


def pull_labels(viewer: napari.Viewer, session: ReviewSession) -> None:
    """Make sure the session holds what the working-labels layer shows (if its data was replaced)."""
    layer = get(viewer, LABELS)
    if layer is None or session.labels is None or layer.metadata.get("case_id") != session.case_id:
        return
    data = np.asarray(layer.data)
    if not np.shares_memory(data, session.labels):
        session.set_labels(from_display(data))


def refresh_labels(viewer: napari.Viewer, session: ReviewSession) -> None:
    """Redraw the working-labels layer after the session changed its array in place."""
    layer = get(viewer, LABELS)
    if layer is None:
        return
    if not np.shares_memory(np.asarray(layer.data), session.labels):
        layer.data = to_display(session.labels)
    layer.refresh()


def voxel_to_world(viewer: napari.Viewer, ijk: tuple[float, float, float]) -> tuple[float, ...]:
    """World coordinates (mm, display axis order) of a voxel index ``(i, j, k)`` of the image."""
    layer = get(viewer, IMAGE)
    display_index = np.asarray(ijk, dtype=np.float64)[::-1]  # (k, j, i)
    if layer is None:
        return tuple(float(v) for v in display_index)
    return tuple(float(v) for v in layer.data_to_world(display_index))


def slice_number(viewer: napari.Viewer, world: tuple[float, ...], axis: int | None = None) -> int:
    """The slice number napari's slider shows (0-based) when the plane shown passes through ``world`` (mm,
    display axis order): in an axial view the axial slice, in a coronal view the coronal one. ``axis``:
    the number along that world axis's slider instead (0 = axial, whatever the view)."""
    axis = int(viewer.dims.order[0]) if axis is None else axis + viewer.dims.ndim - 3
    start, _stop, step = viewer.dims.range[axis]
    return int(round((float(world[axis]) - float(start)) / float(step))) if step else 0


def centre_on(viewer: napari.Viewer, world: tuple[float, ...]) -> None:
    """Move the sliders of all three axes and the camera to ``world`` (mm, display axis order)."""
    viewer.dims.set_point(range(len(world)), world)
    displayed = list(viewer.dims.displayed)
    viewer.scene.camera.center = (
        tuple(world[d] for d in displayed) if viewer.dims.ndisplay == 2 else tuple(world)
    )
