"""What a model proposal keeps beside its label version: the uncertainty map and the regions.

A proposal version ``.medseg/versions/<case>/<n>.nii.gz`` may have, written once after the version
(atomically, never changed later, like the version itself)::

    <n>.uncertainty.nii.gz   float32 (I, J, K) in [0, 1] on the image grid
    <n>.prediction.json      the prediction's summary: model, net, score, regions, domain check

so reopening the case shows proposal and overlay without running the model again. Only the version
file is recorded in the database; these files are extras (``store check`` does not count them as
orphan versions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.io.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from napari_medseg.io.volume import Volume
    from napari_medseg.store.casestore import CaseStore
    from napari_medseg.store.records import VersionInfo

_VERSION_SUFFIX = ".nii.gz"


def _stem(version: VersionInfo) -> Path:
    path = Path(version.path)
    return path.with_name(path.name.removesuffix(_VERSION_SUFFIX))


def uncertainty_path(version: VersionInfo) -> Path:
    """``<n>.uncertainty.nii.gz`` beside version ``n``'s label file."""
    stem = _stem(version)
    return stem.with_name(stem.name + ".uncertainty.nii.gz")


def summary_path(version: VersionInfo) -> Path:
    """``<n>.prediction.json`` beside version ``n``'s label file."""
    stem = _stem(version)
    return stem.with_name(stem.name + ".prediction.json")


def write_proposal_extras(
    store: CaseStore,
    case_id: str,
    version: VersionInfo,
    uncertainty: np.ndarray | None,
    summary: dict[str, Any],
    image: Volume | None = None,
) -> None:
    """Write the uncertainty map (``(I, J, K)``, 0..1) and summary of proposal ``version`` (atomic).

    ``image``: the case's image if already loaded (its grid is written with the map), else it is read.
    """
    from napari_medseg.io import save_volume

    if uncertainty is not None:
        image = image if image is not None else store.load_image(case_id)
        if tuple(uncertainty.shape) != tuple(image.shape):
            raise ValueError(f"uncertainty {uncertainty.shape} does not fit case {case_id} {image.shape}")
        vol = image.with_array(np.asarray(uncertainty, dtype=np.float32), modality="unknown")
        save_volume(vol, uncertainty_path(version))
    atomic_write_bytes(summary_path(version), (json.dumps(summary, indent=2) + "\n").encode())


def read_proposal_extras(version: VersionInfo) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """``(uncertainty or None, summary or None)`` stored beside proposal ``version``."""
    from napari_medseg.io import load_volume

    unc = None
    upath = uncertainty_path(version)
    if upath.is_file():
        unc = np.asarray(load_volume(upath).array, dtype=np.float32)
    spath = summary_path(version)
    summary = None
    if spath.is_file():
        try:
            summary = json.loads(spath.read_text())
        except (OSError, ValueError):
            summary = None
    return unc, summary
