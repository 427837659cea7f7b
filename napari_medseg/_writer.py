"""npe2 writer: a napari Labels layer → NIfTI label map on the source grid.

Manifest entry (napari.yaml): ``napari_medseg._writer:write_labels`` (single-layer writer, ``labels``,
``.nii.gz``/``.nii``). The grid comes from the layer's ``metadata`` as set by
:mod:`napari_medseg._reader` (affine + NIfTI qform/sform and codes); a layer without it (e.g. drawn in
napari on top of an image) gets the affine rebuilt from its ``scale``/``translate``/``rotate``/``shear``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

GEOMETRY_KEYS = ("qform", "qform_code", "sform", "sform_code", "xyz_units")


def _reference_affine(meta: dict[str, Any]) -> np.ndarray:
    from napari_medseg.io.napari_view import affine_from_layer

    layer_meta = meta.get("metadata") or {}
    if layer_meta.get("affine") is not None:
        return np.asarray(layer_meta["affine"], np.float64)
    rotate = meta.get("rotate")
    shear = meta.get("shear")
    return affine_from_layer(
        scale=meta.get("scale", (1.0, 1.0, 1.0)),
        translate=meta.get("translate", (0.0, 0.0, 0.0)),
        rotate=None if rotate is None else np.asarray(rotate),
        shear=None if shear is None or np.size(shear) == 0 else np.asarray(shear),
    )


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a labels layer (``data`` in display order ``(K, J, I)``) as NIfTI; return ``[path]``.

    A path without ``.nii``/``.nii.gz`` gets ``.nii.gz`` appended.

    Raises:
        InputError / GeometryError: non-integer labels, or data whose shape differs from the source grid.
    """
    from napari_medseg.errors import GeometryError
    from napari_medseg.io import Volume, save_labels
    from napari_medseg.io.napari_view import from_display

    labels = np.asarray(from_display(np.asarray(data)))
    layer_meta = meta.get("metadata") or {}
    shape = layer_meta.get("shape")
    if shape is not None and tuple(shape) != labels.shape:
        raise GeometryError(
            f"labels of shape {labels.shape} (I, J, K) do not match the source grid {tuple(shape)}"
        )
    geometry = {k: layer_meta[k] for k in GEOMETRY_KEYS if k in layer_meta}
    reference = Volume(
        array=labels, affine=_reference_affine(meta), modality="SEG", checksum="", meta=geometry
    )
    out = Path(path)
    if not out.name.lower().endswith((".nii", ".nii.gz")):
        out = out.with_name(out.name + ".nii.gz")
    return [str(save_labels(labels, reference, out))]
