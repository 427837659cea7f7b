"""MSD / nnU-Net dataset folders: ``dataset.json`` and finding image/label pairs.

The store's own root is such a folder: ``imagesTr/<case>.nii.gz``, ``labelsTr/<case>.nii.gz`` and a
``dataset.json`` listing the cases that have an approved label (so MONAI's ``load_decathlon_datalist``
reads it directly; nnU-Net gets its data from ``store export``, see :mod:`.export_nnunet`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from napari_medseg.io.atomic import atomic_path
from napari_medseg.io.dataset_json import read_dataset_json


def dataset_json(
    name: str, labels: dict[int, str], modality: str, case_ids: list[str], description: str = ""
) -> dict:
    """The MSD ``dataset.json`` for ``case_ids`` (each with ``imagesTr``/``labelsTr`` files)."""
    return {
        "name": name,
        "description": description or f"{name} (written by napari-medseg)",
        "tensorImageSize": "3D",
        "modality": {"0": modality},
        "channel_names": {"0": modality},
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "file_ending": ".nii.gz",
        "numTraining": len(case_ids),
        "numTest": 0,
        "training": [
            {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in sorted(case_ids)
        ],
        "test": [],
    }


def write_dataset_json(folder: Path, content: dict) -> Path:
    """Write ``folder/dataset.json`` atomically."""
    dest = Path(folder) / "dataset.json"
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n")
        os.chmod(tmp, 0o644)  # temporary files are created owner-only
    return dest


def is_msd_folder(path: str | Path) -> bool:
    """True if ``path`` is a folder with ``dataset.json`` and ``imagesTr/``."""
    p = Path(path)
    return p.is_dir() and (p / "dataset.json").is_file() and (p / "imagesTr").is_dir()


def msd_pairs(folder: str | Path) -> list[tuple[Path, Path | None]]:
    """``(image, label or None)`` pairs of an MSD folder's validated ``dataset.json`` (see
    :mod:`napari_medseg.io.dataset_json`); paths are inside the folder."""
    return read_dataset_json(folder).training
