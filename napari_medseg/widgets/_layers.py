"""Layer plumbing shared by the panels: which layers a case shows, and how they are built.

Every array goes to napari through :mod:`napari_medseg.io.napari_view`: ``to_display`` gives a
``(K, J, I)`` *view* of the ``(I, J, K)`` array (so painting the working-labels layer edits
``ReviewSession.labels`` itself, with napari's undo), and ``layer_kwargs`` places voxels at their
physical position (mm, world axes ``(S, A, R)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.io.napari_view import from_display, layer_kwargs, to_display

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

#: Default uncertainty overlay look.
OVERLAY_COLORMAP = "inferno"
OVERLAY_OPACITY = 0.8
OVERLAY_THRESHOLD = 0.2  # shown from here up (regions start at inference.regions.DEFAULT_THRESHOLD)


def get(viewer: napari.Viewer, name: str):  # noqa: ANN201 - a napari layer or None
    """The layer called ``name``, or ``None``."""
    return viewer.layers[name] if name in viewer.layers else None


def _remove(viewer: napari.Viewer, name: str) -> None:
    if name in viewer.layers:
        viewer.layers.remove(name)


def clear_case(viewer: napari.Viewer) -> None:
    """Remove every layer this plugin shows for a case."""
    for layer in list(viewer.layers):
        if layer.name in (IMAGE, LABELS, PROPOSAL, UNCERTAINTY, DIFF) or layer.name.startswith(PROB_PREFIX):
            viewer.layers.remove(layer)


def _geometry(session: ReviewSession) -> dict[str, Any]:
    return layer_kwargs(session.image)


def show_case(viewer: napari.Viewer, session: ReviewSession) -> None:
    """Show the open case: image, working labels (editable), and the proposal when there is one."""
    clear_case(viewer)
    geo = _geometry(session)
    image = viewer.add_image(to_display(session.image.array), name=IMAGE, colormap="gray", **geo)
    image.metadata["case_id"] = session.case_id
    labels = viewer.add_labels(to_display(session.labels), name=LABELS, opacity=0.6, **geo)
    labels.metadata["case_id"] = session.case_id
    if session.proposal is not None:
        show_proposal(viewer, session)
    viewer.layers.selection.active = labels
    # Radiological convention without a camera setting: the world is (S, P, L) (io.napari_view), so with
    # napari's default camera anterior is up and the patient's right on the left, as with File > Open.
    viewer.reset_view()
    step = [s // 2 for s in to_display(session.image.array).shape]
    viewer.dims.current_step = tuple(step)


def show_proposal(viewer: napari.Viewer, session: ReviewSession) -> None:
    """(Re)show the proposal as an editable Labels layer (outlines) under the working labels; it holds a
    copy, so edits to it never change the stored proposal until accepted."""
    _remove(viewer, PROPOSAL)
    layer = viewer.add_labels(
        to_display(session.proposal.copy()), name=PROPOSAL, opacity=0.9, **_geometry(session)
    )
    layer.contour = 1
    _move_below(viewer, PROPOSAL, LABELS)


def _move_below(viewer: napari.Viewer, name: str, other: str) -> None:
    if name in viewer.layers and other in viewer.layers:
        src = viewer.layers.index(name)
        dst = viewer.layers.index(other)
        if src > dst:
            viewer.layers.move(src, dst)


def show_uncertainty(
    viewer: napari.Viewer, session: ReviewSession, band_only: bool = True, visible: bool = True
) -> Any:
    """Show (or update) the uncertainty heat map: additive, ``inferno``, threshold = lower contrast limit."""
    data = session.uncertainty_map(band_only=band_only)
    if data is None:
        _remove(viewer, UNCERTAINTY)
        return None
    layer = get(viewer, UNCERTAINTY)
    if layer is not None and layer.data.shape == to_display(data).shape:
        layer.data = to_display(data)
        return layer
    _remove(viewer, UNCERTAINTY)
    layer = viewer.add_image(
        to_display(data),
        name=UNCERTAINTY,
        colormap=OVERLAY_COLORMAP,
        blending="additive",
        opacity=OVERLAY_OPACITY,
        contrast_limits=(OVERLAY_THRESHOLD, 1.0),
        visible=visible,
        **_geometry(session),
    )
    layer.metadata["band_only"] = band_only
    return layer


def show_probabilities(viewer: napari.Viewer, session: ReviewSession, prediction: Prediction) -> None:
    """One hidden Image layer per network: foreground probability ``1 - p(background)``."""
    for name, probs in prediction.probs.items():
        fg = 1.0 - np.asarray(probs[0], dtype=np.float32)
        _remove(viewer, PROB_PREFIX + name)
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
    layer = viewer.add_labels(
        to_display(diff.map), name=DIFF, colormap=cmap, opacity=0.9, **_geometry(session)
    )
    layer.editable = False
    if LABELS in viewer.layers:
        viewer.layers.selection.active = viewer.layers[LABELS]
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


def centre_on(viewer: napari.Viewer, world: tuple[float, ...]) -> None:
    """Move the sliders of all three axes and the camera to ``world`` (mm, display axis order)."""
    viewer.dims.set_point(range(len(world)), world)
    displayed = list(viewer.dims.displayed)
    viewer.scene.camera.center = (
        tuple(world[d] for d in displayed) if viewer.dims.ndisplay == 2 else tuple(world)
    )
