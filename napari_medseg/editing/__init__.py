"""Headless label-correction tools (numpy / SciPy / scikit-image; no Qt, no napari).

Each tool takes a label map and returns an :class:`EditResult` ``(labels, changed)``: a NEW array of
the same shape and dtype and the number of voxels changed. The napari Tools panel applies the
difference through the layer's undo history.

Public API::

    interpolate_slices(labels, class_id, axis=0, start=None, stop=None, overwrite=False, spacing=None)
    labelled_slices(labels, class_id, axis) -> ndarray of slice indices
    remove_islands(labels, min_size=10, classes=None, keep_largest=False, connectivity=1)
    fill_holes(labels, classes=None, axis=None, overwrite=False)
    smooth_labels(labels, method="majority" | "opening" | "closing", radius=1, classes=None)
"""

from napari_medseg.editing.holes import fill_holes
from napari_medseg.editing.interpolate import interpolate_slices, labelled_slices
from napari_medseg.editing.islands import remove_islands
from napari_medseg.editing.result import EditResult
from napari_medseg.editing.smooth import SMOOTH_METHODS, smooth_labels

__all__ = [
    "SMOOTH_METHODS",
    "EditResult",
    "fill_holes",
    "interpolate_slices",
    "labelled_slices",
    "remove_islands",
    "smooth_labels",
]
