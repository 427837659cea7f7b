"""npe2 reader: NIfTI files and DICOM series folders → napari layers at physical size.

Manifest entry (napari.yaml): ``napari_medseg._reader:get_reader``. Each layer's data is in display
order ``(K, J, I)`` with ``scale``/``translate``/``rotate`` from the affine
(:mod:`napari_medseg.io.napari_view`); its ``metadata`` holds what :mod:`napari_medseg._writer` needs
to write labels back on the source grid: ``affine`` (4×4 voxel → RAS+ mm), ``shape`` ``(I, J, K)``,
``qform``/``qform_code``/``sform``/``sform_code``, ``source``, ``modality``, ``checksum``.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.nifti import is_nifti_path

LayerData = tuple[Any, dict[str, Any], str]
#: Folder names whose NIfTI files are opened as label layers (MSD/nnU-Net layout).
LABEL_FOLDERS = ("labelstr", "labelsts", "labels", "labelsva")


def _looks_like_dicom_folder(folder: Path, max_files: int = 16, max_depth: int = 4) -> bool:
    """True when one of the first ``max_files`` candidate files (the DICOM loader's own walk, sub-folders
    up to ``max_depth`` deep, as PACS/CD exports nest them) carries the DICOM preamble ``DICM``."""
    from napari_medseg.io.dicom import iter_candidate_files

    for path in islice(iter_candidate_files(folder, max_depth), max_files):
        try:
            with open(path, "rb") as fh:
                head = fh.read(132)
        except OSError:
            continue
        if head[128:132] == b"DICM":
            return True
    return False


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_layers` for a NIfTI file or a folder holding DICOM files, else ``None``."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths:
        return None
    for p in map(Path, paths):
        if p.is_dir():
            if not _looks_like_dicom_folder(p):
                return None
        elif not is_nifti_path(p):
            return None
    return read_layers


def layer_metadata(vol: Any) -> dict[str, Any]:
    """The geometry a writer needs, as plain Python/numpy values (see the module docstring)."""
    meta = {
        "affine": np.asarray(vol.affine, np.float64).copy(),
        "shape": tuple(vol.shape),
        "source": vol.source,
        "modality": vol.modality,
        "checksum": vol.checksum,
        "orientation": vol.orientation,
    }
    for key in ("qform", "qform_code", "sform", "sform_code", "xyz_units", "series_uid", "format"):
        if key in vol.meta:
            meta[key] = vol.meta[key]
    return meta


def _is_label_file(path: Path) -> bool:
    name = path.name.lower()
    return (
        path.parent.name.lower() in LABEL_FOLDERS
        or "_seg" in name
        or name.startswith("seg")
        or "label" in name
    )


def _layer(vol: Any, layer_type: str, name: str) -> LayerData:
    from napari_medseg.io.napari_view import UNITS, default_contrast, layer_kwargs, to_display

    kwargs = {"name": name, "metadata": layer_metadata(vol), **layer_kwargs(vol), "units": UNITS}
    if layer_type == "image":
        kwargs["contrast_limits"] = default_contrast(vol)  # CT: soft-tissue window, as in the case view
    return (to_display(vol.array), kwargs, layer_type)


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read every path into LayerData tuples (one per DICOM series; labels for label-named NIfTI files).

    Raises:
        InputError: unreadable input (napari shows the one-line message).
    """
    from napari_medseg.errors import InputError
    from napari_medseg.io import dicom, load_labels, load_volume

    paths = [path] if isinstance(path, str | Path) else list(path)
    layers: list[LayerData] = []
    for p in map(Path, paths):
        if p.is_dir():
            series = dicom.list_series(p)
            for s in series:
                vol = dicom.load_series(p, series_uid=s.uid)
                name = s.description or p.name if len(series) == 1 else f"{p.name} {s.description or s.uid}"
                layers.append(_layer(vol, "image", name))
            continue
        stem = p.name[: -len(".nii.gz")] if p.name.lower().endswith(".nii.gz") else p.stem
        if _is_label_file(p):
            try:
                layers.append(_layer(load_labels(p), "labels", stem))
                continue
            except InputError:
                pass  # not integer-valued after all: show it as an image
        layers.append(_layer(load_volume(p), "image", stem))
    return layers
