"""Helper for the kill test: save label versions of one case in a loop until killed.

Run as a script (``python tests/_store_killer.py STORE CASE SEED``) or call :func:`save_loop` in a
forked child. Every third save is followed by an approval, so ``labelsTr`` and ``dataset.json``
are being rewritten when the kill lands too. :func:`import_loop` and :func:`export_loop` do the same
for approved imports and exports. Also holds :func:`make_crop_case`, which writes a
small real crop of a hippocampus case so each save is fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def make_crop_case(image_path: Path, label_path: Path, out_dir: Path, size: int = 16) -> tuple[Path, Path]:
    """Write a ``size``^3 crop (around the labelled structure) of a real image and its labels."""
    from napari_medseg.io import load_labels, load_volume, save_labels, save_volume
    from napari_medseg.io.volume import Volume

    image = load_volume(image_path)
    labels = load_labels(label_path, reference=image).array
    centre = np.round(np.argwhere(labels > 0).mean(axis=0)).astype(int)
    start = np.clip(centre - size // 2, 0, np.array(image.shape) - size)
    sl = tuple(slice(int(s), int(s) + size) for s in start)
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ start + image.affine[:3, 3]
    crop = Volume(array=np.ascontiguousarray(image.array[sl]), affine=affine, modality=image.modality)
    out_dir.mkdir(parents=True, exist_ok=True)
    img_out = save_volume(crop, out_dir / "hippocrop_001.nii.gz")
    lab_out = save_labels(np.ascontiguousarray(labels[sl]), crop, out_dir / "hippocrop_001_labels.nii.gz")
    return Path(img_out), Path(lab_out)


def save_loop(root: str | Path, case_id: str, seed: int, counter=None) -> None:
    """Open the store and save edited versions forever (each on top of the latest)."""
    from napari_medseg.store import CaseStore

    rng = np.random.default_rng(seed)
    store = CaseStore.open(root)
    labels = store.load_label(case_id).array.copy()
    i = 0
    while True:
        idx = tuple(rng.integers(0, s, size=20) for s in labels.shape)
        labels[idx] = rng.integers(0, 3, size=20)
        store.save_version(case_id, labels, author="killer", note=f"loop {i}")
        if i % 3 == 2:
            store.approve(case_id, author="killer")
        i += 1
        if counter is not None:  # an unlocked shared int: the parent only reads it
            counter.value += 1


def import_loop(root: str | Path, image: str | Path, label: str | Path, seed: int, counter=None) -> None:
    """Import the same scan + labels as new approved cases ``imp<seed>_<i>`` forever."""
    from napari_medseg.store import CaseStore

    store = CaseStore.open(root)
    i = 0
    while True:
        store.import_case(image, label, case_id=f"imp{seed}_{i}", author="killer", approved=True)
        i += 1
        if counter is not None:
            counter.value += 1


def export_loop(root: str | Path, out_base: str | Path, seed: int, counter=None) -> None:
    """Export the store's approved cases to ``out_base/<seed>_<i>`` forever."""
    from napari_medseg.store import CaseStore

    store = CaseStore.open(root)
    i = 0
    while True:
        store.export(Path(out_base) / f"{seed}_{i}")
        i += 1
        if counter is not None:
            counter.value += 1


if __name__ == "__main__":
    save_loop(sys.argv[1], sys.argv[2], int(sys.argv[3]))
