"""Training data: cases from an MSD folder or a case store, a recorded split, fixed-size samples.

Every case is normalised once (``models.preprocessing.normalize_intensity``) and padded (or, if a
side is longer, cropped at random) to the fixed training patch, e.g. ``(48, 64, 48)`` voxels, which
holds every hippocampus case whole. The padded grid is the case's *canonical grid*: the learnable
label distributions of :mod:`~napari_medseg.training.label_correction` live on it.

A sample also carries ``coords``: for each output voxel, ``1 + (z, y, x)`` of the canonical voxel it
was taken from (``0`` where the augmentation pulled in padding). Training batches are cached and
augmented in torch by :mod:`~napari_medseg.training.augment` (nearest neighbour for labels and
``coords``), so after any rotation or scale the trainer still knows which canonical voxel — and so
which learnable label — each voxel shows.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from torch.utils.data import Dataset

from napari_medseg.errors import InputError
from napari_medseg.io.dataset_json import read_dataset_json

#: Default training patch (voxels, array axes I, J, K); holds every MSD hippocampus case whole.
DEFAULT_PATCH = (48, 64, 48)


@dataclass(frozen=True)
class CaseRecord:
    """One training case: where its image and (latest) label are, and whether a clinician approved it."""

    case_id: str
    image_path: str
    label_path: str
    approved: bool = False


@dataclass
class Split:
    """A recorded train/validation split (case ids, sorted) and the seed that drew it."""

    train: list[str]
    val: list[str]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cases_from_msd(folder: str | Path, approved: bool = False) -> list[CaseRecord]:
    """Cases of an MSD/nnU-Net folder (``imagesTr/``, ``labelsTr/``), sorted by id.

    Uses ``dataset.json`` when present, else pairs ``imagesTr/X.nii.gz`` with ``labelsTr/X.nii.gz``.
    MSD labels carry no review status, so they are ``approved=False`` unless told otherwise.
    """
    folder = Path(folder)
    pairs: list[tuple[Path, Path]] = []
    meta = folder / "dataset.json"
    if meta.exists():
        pairs = [(img, lab) for img, lab in read_dataset_json(folder).training if lab is not None]
    else:
        for img in sorted((folder / "imagesTr").glob("*.nii*")):
            name = img.name.replace("_0000.", ".")
            pairs.append((img, folder / "labelsTr" / name))
    records = []
    for img, lab in pairs:
        if not img.exists() or not lab.exists():
            continue
        case_id = img.name.split(".nii")[0].removesuffix("_0000")
        records.append(CaseRecord(case_id, str(img), str(lab), approved))
    if not records:
        raise InputError(f"no image/label pairs found in {folder} (expected imagesTr/ and labelsTr/)")
    return sorted(records, key=lambda r: r.case_id)


def cases_from_store(store: Any) -> list[CaseRecord]:
    """Cases of a :class:`~napari_medseg.store.CaseStore` that have a label (``store.training_items()``)."""
    records = []
    for item in store.training_items():
        image, label = item["image"], item["label"]
        if label is None:
            continue
        image = getattr(image, "source", image)  # a Volume, or a path
        label = getattr(label, "source", label)
        records.append(CaseRecord(str(item["case_id"]), str(image), str(label), bool(item["approved"])))
    if not records:
        raise InputError("the case store holds no labelled cases to train on")
    return sorted(records, key=lambda r: r.case_id)


def read_classes(path: str | Path) -> dict[int, str] | None:
    """Class names from an MSD ``dataset.json`` (``{"labels": {"0": "background", ...}}``), else None."""
    if not (Path(path) / "dataset.json").exists():
        return None
    labels = read_dataset_json(path).labels
    return {k: v.lower() for k, v in labels.items()} or None


def discover_cases(path: str | Path) -> list[CaseRecord]:
    """Cases from ``path``: a case store (has ``.medseg/``) or a plain MSD folder."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"training data folder {path} does not exist")
    if (path / ".medseg").is_dir():
        from napari_medseg.store import CaseStore

        return cases_from_store(CaseStore.open(path, write=False))
    return cases_from_msd(path)


def split_cases(case_ids: list[str], n_val: int, seed: int = 0, n_train: int | None = None) -> Split:
    """Seeded random split: ``n_val`` validation ids, then ``n_train`` (default: all the rest) training ids."""
    ids = sorted(case_ids)
    if n_val >= len(ids):
        raise InputError(f"cannot hold out {n_val} validation cases from {len(ids)} cases")
    rng = random.Random(seed)
    shuffled = ids[:]
    rng.shuffle(shuffled)
    val = sorted(shuffled[:n_val])
    rest = shuffled[n_val:]
    train = sorted(rest if n_train is None else rest[:n_train])
    return Split(train=train, val=val, seed=seed)


def read_case(record: CaseRecord) -> tuple[np.ndarray, np.ndarray]:
    """Image (float32) and label (int64) arrays ``(I, J, K)`` of a case, checked to share a grid."""
    try:
        image = np.asarray(nib.load(record.image_path).dataobj, dtype=np.float32)
        label = np.rint(np.asarray(nib.load(record.label_path).dataobj)).astype(np.int64)
    except Exception as err:  # nibabel raises many types for a broken file
        raise InputError(f"cannot read case {record.case_id}: {err}") from err
    if image.ndim == 4 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.shape != label.shape:
        raise InputError(f"case {record.case_id}: image {image.shape} and label {label.shape} differ")
    return image, label


def pad_to(array: np.ndarray, shape: tuple[int, ...], value: float = 0.0) -> tuple[np.ndarray, tuple]:
    """Pad ``array`` symmetrically up to at least ``shape``; returns (padded, per-axis low pad)."""
    pads = []
    for n, want in zip(array.shape, shape, strict=True):
        extra = max(want - n, 0)
        pads.append((extra // 2, extra - extra // 2))
    return np.pad(array, pads, constant_values=value), tuple(p[0] for p in pads)


def center_crop_or_pad(array: np.ndarray, shape: tuple[int, ...], value: float = 0.0) -> np.ndarray:
    """Pad (symmetrically) then centre-crop ``array`` to exactly ``shape`` (inference/validation)."""
    padded, _ = pad_to(array, shape, value)
    slices = tuple(slice((n - w) // 2, (n - w) // 2 + w) for n, w in zip(padded.shape, shape, strict=True))
    return padded[slices]


@dataclass
class CaseArrays:
    """A case on its canonical grid (padded to at least the patch): ``image`` float32, ``label`` int64."""

    case_id: str
    index: int
    image: np.ndarray
    label: np.ndarray
    approved: bool
    offset: tuple[int, int, int]  # where the original (I, J, K) array starts inside the canonical grid
    shape: tuple[int, int, int]  # the original array's shape

    def region(self) -> tuple[slice, slice, slice]:
        """Slices of the canonical grid that hold the original case (the rest is padding)."""
        return tuple(slice(o, o + n) for o, n in zip(self.offset, self.shape, strict=True))


def load_cases(
    records: list[CaseRecord],
    patch: tuple[int, int, int] = DEFAULT_PATCH,
    scheme: str = "zscore",
    labels_override: dict[str, np.ndarray] | None = None,
) -> list[CaseArrays]:
    """Read, normalise and pad every case once (kept in memory; hippocampus: ~0.6 MB a case).

    ``labels_override`` replaces some cases' labels (e.g. with synthetic noise) by case id.
    """
    from napari_medseg.models.preprocessing import normalize_intensity

    out = []
    for i, rec in enumerate(records):
        image, label = read_case(rec)
        shape = tuple(int(n) for n in image.shape)
        if labels_override and rec.case_id in labels_override:
            label = labels_override[rec.case_id].astype(np.int64)
        image = normalize_intensity(image, scheme=scheme).astype(np.float32)
        # pad with 0 (the normalised mean), as MONAI's sliding-window inference pads
        image, offset = pad_to(image, patch, 0.0)
        label, _ = pad_to(label, patch, 0)
        out.append(CaseArrays(rec.case_id, i, image, label, rec.approved, offset, shape))
    return out


class CaseDataset(Dataset):
    """Centred fixed-size patches of in-memory cases (validation and evaluation; training batches
    come from :class:`~napari_medseg.training.augment.CachedCases`).

    Item: ``image`` (1, D, H, W) float32, ``label`` (D, H, W) int64, ``coords`` (3, D, H, W) int64
    (1-based canonical voxel), ``index`` (case position in the list), ``approved`` bool.
    """

    def __init__(self, cases: list[CaseArrays], patch: tuple[int, int, int] = DEFAULT_PATCH):
        self.cases = cases
        self.patch = tuple(int(p) for p in patch)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> dict[str, Any]:
        case = self.cases[i]
        win = tuple(
            slice((n - w) // 2, (n - w) // 2 + w) for n, w in zip(case.image.shape, self.patch, strict=True)
        )
        grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in win], indexing="ij"), axis=0)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(case.image[win][None], dtype=np.float32)),
            "label": torch.from_numpy(np.ascontiguousarray(case.label[win], dtype=np.int64)),
            "coords": torch.from_numpy(grid + 1),
            "index": case.index,
            "approved": case.approved,
        }


def flat_canonical_index(coords: torch.Tensor, shapes: list[tuple[int, int, int]]) -> torch.Tensor:
    """Flat voxel index into each sample's canonical grid; ``-1`` where ``coords`` is 0 (outside).

    Args:
        coords: (B, 3, D, H, W) int64, 1-based canonical voxel coordinates.
        shapes: canonical grid shape of each sample's case.
    Returns:
        (B, D, H, W) int64.
    """
    out = torch.empty(coords.shape[:1] + coords.shape[2:], dtype=torch.int64, device=coords.device)
    for b, (_, h, w) in enumerate(shapes):
        c = coords[b] - 1
        inside = (c >= 0).all(dim=0)
        out[b] = torch.where(inside, (c[0] * h + c[1]) * w + c[2], torch.full_like(c[0], -1))
    return out
