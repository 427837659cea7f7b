"""Export a store's approved labels as a plain MSD folder (MONAI, ``nnUNetv2_convert_MSD_dataset``, sharing).

For nnU-Net v2's own layout (``DatasetNNN_Name``, ``_0000`` channel suffix) see :mod:`.export_nnunet`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from napari_medseg.errors import StoreError
from napari_medseg.io.atomic import atomic_path
from napari_medseg.store import msd

if TYPE_CHECKING:
    from napari_medseg.store.casestore import CaseStore

#: Folder names ``nnUNetv2_convert_MSD_dataset`` can parse (``Task<id>_<name>``, one underscore).
MSD_TASK_NAME = re.compile(r"^Task\d+_[^_]+$")


def export_approved(store: CaseStore, out_dir: str | Path) -> Path:
    """Copy every case with an approved label into ``out_dir`` (MSD layout); return ``out_dir``.

    ``out_dir`` gets ``imagesTr/<case>.nii.gz``, ``labelsTr/<case>.nii.gz`` (the latest approved
    version of each case), an empty ``imagesTs/`` and ``dataset.json`` (label 0 named ``background``,
    as in every MSD task). It must be new or empty and outside the store. Cases never approved are left
    out. Every approved version's sha256 and every image's checksum are verified first; a damaged one
    stops the export before anything is written (:class:`~napari_medseg.errors.StoreDamagedError`).
    ``nnUNetv2_convert_MSD_dataset -i out_dir`` converts it when ``out_dir`` is named like an MSD
    task, ``TaskNN_Name`` with one underscore (see :data:`MSD_TASK_NAME`).
    """
    out = Path(out_dir).resolve()
    if out == store.root or store.root in out.parents or out in store.root.parents:
        raise StoreError(f"export folder {out} must be outside the store {store.root}")
    if out.exists() and not out.is_dir():
        raise StoreError(f"export folder {out} is a file; give the name of a new folder")
    if out.exists() and any(out.iterdir()):
        raise StoreError(f"export folder {out} already exists and is not empty; choose a new folder")
    chosen = []  # verify every file first: a damaged version or image is refused before anything is written
    for case in store.cases():
        if case.approved_version is None:
            continue
        info = store.version(case.case_id, case.approved_version)
        store.verify_version(info, case.case_id, "exported")
        store.load_image(case.case_id)  # refuses a missing or swapped image
        chosen.append((case, info.path))
    ids = []
    for case, label in chosen:
        for src, sub in ((case.image_path, "imagesTr"), (label, "labelsTr")):
            with atomic_path(out / sub / f"{case.case_id}.nii.gz", exclusive=True) as tmp:
                shutil.copyfile(src, tmp)
                os.chmod(tmp, 0o644)
        ids.append(case.case_id)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    labels = {**store.labels, 0: "background"}
    msd.write_dataset_json(out, msd.dataset_json(store.name, labels, store.modality, ids))
    return out
