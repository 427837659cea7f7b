"""Export a store's approved labels as an nnU-Net v2 raw dataset (``DatasetNNN_Name/``).

nnU-Net v2 does not read MSD folders directly (its ``nnUNetv2_convert_MSD_dataset`` converts them); this
writes what its planning step (``nnUNetv2_plan_and_preprocess -d NNN --verify_dataset_integrity``) reads:

* ``<raw>/DatasetNNN_Name/imagesTr/<case>_0000.nii.gz`` (one input channel, suffix ``_0000``),
* ``<raw>/DatasetNNN_Name/labelsTr/<case>.nii.gz`` (the latest approved version of each case),
* ``<raw>/DatasetNNN_Name/imagesTs/`` (empty; for the cases you will predict),
* ``dataset.json`` with ``channel_names`` ``{"0": modality}`` (``CT`` selects nnU-Net's CT
  normalisation, anything else its z-score), ``labels`` name → value with ``background`` = 0,
  ``numTraining`` and ``file_ending`` ``.nii.gz``.

nnU-Net v2 requires the label values to be consecutive (0, 1, ..., N). A store whose declared labels
have gaps (e.g. TotalSegmentator's ids) is exported with its labels renumbered in ascending order; the
new values are the ones in ``dataset.json`` and :func:`export_nnunet` returns the mapping.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_medseg.errors import StoreError
from napari_medseg.io.atomic import atomic_path
from napari_medseg.store import msd

if TYPE_CHECKING:
    from napari_medseg.store.casestore import CaseStore

#: Dataset id used when none is given (nnU-Net ids are 1..999; pick one that is free in your nnUNet_raw).
DEFAULT_DATASET_ID = 500
CHANNEL_SUFFIX = "_0000"


@dataclass(frozen=True)
class NnunetExport:
    """Where an nnU-Net v2 export went: ``folder`` (``DatasetNNN_Name``), its ``case_ids`` and
    ``relabel`` ``{store label value: exported value}`` (identity unless the store's values have gaps)."""

    folder: Path
    case_ids: list[str]
    relabel: dict[int, int]


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetNNN_Name`` with ``name`` reduced to letters, digits and ``-`` (nnU-Net splits on ``_``)."""
    if not 1 <= int(dataset_id) <= 999:
        raise StoreError(f"nnU-Net dataset ids are 1 to 999, not {dataset_id}")
    clean = re.sub(r"[^A-Za-z0-9-]+", "", name.replace("_", "-").replace(" ", "-")).strip("-")
    return f"Dataset{int(dataset_id):03d}_{clean or 'medseg'}"


def nnunet_labels(labels: dict[int, str]) -> tuple[dict[str, int], dict[int, int]]:
    """(``{name: value}`` for nnU-Net's dataset.json, ``{store value: exported value}``).

    Value 0 is always called ``background`` (nnU-Net's required name); the other values are
    renumbered 1..N in ascending order when they have gaps. Duplicate or empty names are refused.
    """
    values = sorted(labels)
    if not values or values[0] != 0:
        raise StoreError("the store's labels must include 0 (background) for an nnU-Net export")
    relabel = {v: i for i, v in enumerate(values)}
    names: dict[str, int] = {"background": 0}
    for v in values[1:]:
        name = str(labels[v]).strip()
        if not name or name in names:
            raise StoreError(
                f"label {v} has {'no name' if not name else f'the name {name!r} twice'}; nnU-Net needs "
                "a distinct name for every label"
            )
        names[name] = relabel[v]
    return names, relabel


def dataset_json_v2(
    name: str, modality: str, labels: dict[str, int], n_training: int, description: str = ""
) -> dict:
    """nnU-Net v2 ``dataset.json`` (one channel)."""
    return {
        "name": name,
        "description": description or f"{name} (written by napari-medseg)",
        "channel_names": {"0": modality or "MRI"},
        "labels": labels,
        "numTraining": n_training,
        "file_ending": ".nii.gz",
    }


def _copy(src: Path, dest: Path) -> None:
    with atomic_path(dest, exclusive=True) as tmp:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)  # temporary files are created owner-only


def _write_relabelled(src: Path, dest: Path, lut: np.ndarray) -> None:
    """Copy label file ``src`` to ``dest`` with values mapped through ``lut`` (same header/geometry)."""
    import nibabel as nib

    from napari_medseg.io.validate import label_dtype

    img = nib.load(str(src))
    arr = np.asarray(img.dataobj)
    if arr.size and int(arr.max()) >= lut.size:
        raise StoreError(f"{src} holds label value {int(arr.max())}, which the store does not declare")
    out = lut[arr.astype(np.int64)].astype(label_dtype(int(lut.max())))
    hdr = img.header.copy()
    hdr.set_data_dtype(out.dtype)
    hdr.set_slope_inter(1, 0)
    with atomic_path(dest, exclusive=True) as tmp:
        nib.save(nib.Nifti1Image(out, img.affine, hdr), str(tmp))
        os.chmod(tmp, 0o644)


def export_nnunet(
    store: CaseStore, raw_dir: str | Path, dataset_id: int = DEFAULT_DATASET_ID
) -> NnunetExport:
    """Write every approved case of ``store`` as ``raw_dir/DatasetNNN_<store name>/`` for nnU-Net v2.

    Args:
        store: the case store; cases never approved are left out.
        raw_dir: nnU-Net's raw-data folder (``$nnUNet_raw``) or any folder outside the store; created
            if missing. It must not already hold a dataset with the same id (nnU-Net refuses that).
        dataset_id: nnU-Net dataset id, 1..999.

    Raises:
        StoreError: bad id, id taken, folder inside the store, no approved case, or labels nnU-Net
            cannot name.
    """
    raw = Path(raw_dir).resolve()
    if raw == store.root or store.root in raw.parents or raw in store.root.parents:
        raise StoreError(f"export folder {raw} must be outside the store {store.root}")
    if raw.exists() and not raw.is_dir():
        raise StoreError(f"{raw} is a file, not a folder")
    folder = raw / dataset_folder_name(dataset_id, store.name)
    prefix = f"Dataset{int(dataset_id):03d}_"
    taken = sorted(p.name for p in raw.glob(prefix + "*")) if raw.is_dir() else []
    if taken:
        raise StoreError(
            f"{raw} already holds dataset id {int(dataset_id)} ({taken[0]}); choose another --dataset-id"
        )
    names, relabel = nnunet_labels(store.labels)
    approved = [c for c in store.cases() if c.approved_version is not None]
    if not approved:
        raise StoreError("no case is approved yet: approve cases before exporting them for training")
    for case in approved:  # a damaged version or a swapped image is refused before anything is written
        store.verify_version(store.version(case.case_id, case.approved_version), case.case_id, "exported")
        store.load_image(case.case_id)
    identity = all(k == v for k, v in relabel.items())
    lut = np.zeros(max(relabel) + 1, dtype=np.int64)
    for old, new in relabel.items():
        lut[old] = new
    # built beside its final place and renamed at the end: an interrupted export leaves no half dataset
    partial = raw / f".{folder.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    try:
        for case in approved:
            label = store.version(case.case_id, case.approved_version).path
            _copy(case.image_path, partial / "imagesTr" / f"{case.case_id}{CHANNEL_SUFFIX}.nii.gz")
            dest = partial / "labelsTr" / f"{case.case_id}.nii.gz"
            if identity:
                _copy(label, dest)
            else:
                _write_relabelled(label, dest, lut)
        (partial / "imagesTs").mkdir(parents=True, exist_ok=True)
        msd.write_dataset_json(partial, dataset_json_v2(store.name, store.modality, names, len(approved)))
        os.rename(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return NnunetExport(folder=folder, case_ids=[c.case_id for c in approved], relabel=relabel)
