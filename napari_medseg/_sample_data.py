"""npe2 sample data: one bundled hippocampus MRI case with its reference label."""

from __future__ import annotations

from typing import Any

#: The bundled case shown as napari's sample (package data resources/sample, MSD Task04, CC-BY-SA 4.0).
SAMPLE_CASE = "hippocampus_004"


def hippocampus_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """Image and label of the bundled hippocampus case, at physical scale in display order."""
    from napari_medseg.bundled import sample_dir
    from napari_medseg.io import load_labels, load_volume
    from napari_medseg.io.napari_view import layer_kwargs, to_display

    root = sample_dir()
    image = load_volume(root / "imagesTr" / f"{SAMPLE_CASE}.nii.gz")
    label = load_labels(root / "labelsTr" / f"{SAMPLE_CASE}.nii.gz", reference=image)
    geo = layer_kwargs(image)
    return [
        (to_display(image.array), {"name": f"{SAMPLE_CASE} MRI", "colormap": "gray", **geo}, "image"),
        (to_display(label.array), {"name": f"{SAMPLE_CASE} label", "opacity": 0.5, **geo}, "labels"),
    ]
