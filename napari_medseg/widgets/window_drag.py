"""Window/level with the right mouse button, as in radiology viewers: drag right/left to widen/narrow the
window, down/up to darken/brighten (:func:`napari_medseg.io.napari_view.dragged_window`). It acts on the
open case's image, else on the selected image layer (e.g. a scan opened with File > Open); napari itself
does nothing with a right-button drag on the canvas, so painting and panning are untouched."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from napari_medseg.io.napari_view import dragged_window, level_width
from napari_medseg.widgets import _layers

if TYPE_CHECKING:
    import napari

#: vispy's number for the right mouse button.
RIGHT_BUTTON = 2


def install_window_drag(viewer: napari.Viewer, on_change: Any = None) -> None:
    """Add the right-button window/level drag to ``viewer``; ``on_change(layer)`` runs after each step."""

    def window_level(viewer: napari.Viewer, event: Any) -> Generator[None, None, None]:
        layer = _layers.shown_image(viewer)
        if event.button != RIGHT_BUTTON or layer is None or layer.rgb or viewer.dims.ndisplay != 2:
            return  # (in 3D the right button belongs to the camera)
        start_pos, start = event.pos, tuple(layer.contrast_limits)
        yield
        while event.type == "mouse_move":
            low, high = dragged_window(start, event.pos[0] - start_pos[0], event.pos[1] - start_pos[1])
            lo_range, hi_range = layer.contrast_limits_range
            if low < lo_range or high > hi_range:  # napari clips limits to the range: widen it first
                layer.contrast_limits_range = (min(low, lo_range), max(high, hi_range))
            layer.contrast_limits = (low, high)
            level, width = level_width((low, high))
            viewer.status = f"window level {level:.4g}  width {width:.4g}"
            if on_change is not None:
                on_change(layer)
            yield

    viewer.mouse_drag_callbacks.append(window_level)
