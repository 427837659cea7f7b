"""The training domain a model card records, and the check of a case against it before a run.

A model is only trustworthy on images like the ones it was trained on. The card's ``domain`` says what
those were (from the training images themselves, not from a description)::

    "domain": {
        "modality": "MR",                       # CT / MR / unknown (DICOM header or dataset.json)
        "n_cases": 200,
        "spacing_mm": [1.0, 1.0],               # smallest and largest voxel side over all cases
        "fov_mm": [[24, 41], [32, 47], [40, 59]],  # per extent, sorted small to large: [min, max] mm
        "intensity": {"p1": [4, 26084], "p99": [89, 501104]},  # [min, max] over cases of each percentile
        "labels": {"0": "background", "1": "anterior", "2": "posterior"},
        "source": "training images",            # or how it was derived for an older card
    }

:func:`check_domain` compares one :class:`~napari_medseg.io.volume.Volume` with it. The tolerances are
generous (voxel size ×1.5, field of view ×2, intensities below the darkest training images by half their
range): the check is there to stop a hippocampus MRI model from running on a whole-body CT, not to reject
a scanner it has not seen. A card without a domain (made before domains were recorded) gives an
*unknown* result, which never refuses but says so.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.errors import InputError

if TYPE_CHECKING:
    from napari_medseg.io.volume import Volume

#: A case's voxel side may be this many times finer/coarser than the training range.
SPACING_TOLERANCE = 1.5
#: A case's field of view (each sorted extent) may be this many times smaller/larger.
FOV_TOLERANCE = 2.0
#: Intensities may go below the training images' lowest 1st percentile by this share of their range.
INTENSITY_MARGIN = 0.5

_MODALITY_NAMES = {"MRI": "MR", "MR": "MR", "CT": "CT", "PET": "PT", "PT": "PT"}


class OutsideDomainError(InputError):
    """The case is not like the model's training images; the run was refused (the user may insist)."""


def normalise_modality(name: str | None) -> str:
    """``"MRI"`` → ``"MR"``, ``"ct"`` → ``"CT"``; anything else (or nothing) → ``"unknown"``."""
    return _MODALITY_NAMES.get(str(name or "").strip().upper(), "unknown")


@dataclass(frozen=True)
class ImageStats:
    """What the domain check looks at in one image.

    Attributes:
        modality: ``"CT"``, ``"MR"``, ... or ``"unknown"``.
        spacing_mm: voxel sides (3,) in mm.
        fov_mm: image extents (3,) in mm, sorted small to large (orientation does not matter).
        p1, p99: 1st and 99th intensity percentiles (image units, HU for CT).
    """

    modality: str
    spacing_mm: tuple[float, float, float]
    fov_mm: tuple[float, float, float]
    p1: float
    p99: float


def image_stats(volume: Volume) -> ImageStats:
    """:class:`ImageStats` of a volume (percentiles on at most ~1 M voxels, evenly strided)."""
    arr = np.asarray(volume.array)
    step = max(1, int(round((arr.size / 1_000_000) ** (1 / 3))))
    sample = np.asarray(arr[::step, ::step, ::step], dtype=np.float32)
    p1, p99 = (float(v) for v in np.percentile(sample, [1, 99]))
    spacing = tuple(float(s) for s in volume.spacing)
    fov = tuple(sorted(float(n) * s for n, s in zip(volume.shape, spacing, strict=True)))
    return ImageStats(normalise_modality(volume.modality), spacing, fov, p1, p99)


def domain_from_stats(
    stats: Iterable[ImageStats],
    labels: dict[int, str] | None = None,
    modality: str | None = None,
    source: str = "training images",
) -> dict[str, Any]:
    """The card's ``domain`` entry from the training images' :class:`ImageStats`.

    Args:
        modality: the data set's modality (e.g. MSD ``dataset.json``); default: the images' own, if they
            agree.
        source: how the domain was obtained (recorded as is).
    """
    stats = list(stats)
    if not stats:
        raise ValueError("a training domain needs at least one image")
    mods = {s.modality for s in stats}
    mod = normalise_modality(modality) if modality else (mods.pop() if len(mods) == 1 else "unknown")
    spacing = np.array([s.spacing_mm for s in stats])
    fov = np.array([s.fov_mm for s in stats])
    p1 = np.array([s.p1 for s in stats])
    p99 = np.array([s.p99 for s in stats])
    return {
        "modality": mod,
        "n_cases": len(stats),
        "spacing_mm": [round(float(spacing.min()), 4), round(float(spacing.max()), 4)],
        "fov_mm": [
            [round(float(lo), 2), round(float(hi), 2)] for lo, hi in zip(fov.min(0), fov.max(0), strict=True)
        ],
        "intensity": {
            "p1": [float(p1.min()), float(p1.max())],
            "p99": [float(p99.min()), float(p99.max())],
        },
        "labels": {str(k): v for k, v in (labels or {}).items()},
        "source": source,
    }


def dataset_modality(folder: str | Path) -> str | None:
    """The modality an MSD/nnU-Net ``dataset.json`` names for channel 0 (``None`` when it names none)."""
    path = Path(folder) / "dataset.json"
    try:
        mods = json.loads(path.read_text()).get("modality") or json.loads(path.read_text()).get(
            "channel_names"
        )
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(mods, dict) and mods:
        return str(mods.get("0", next(iter(mods.values()))))
    return None


def domain_from_images(
    paths: Iterable[str | Path],
    labels: dict[int, str] | None = None,
    modality: str | None = None,
    source: str = "training images",
) -> dict[str, Any]:
    """The ``domain`` entry from image files (NIfTI or DICOM folders), read one at a time."""
    from napari_medseg.io import load_volume

    return domain_from_stats((image_stats(load_volume(p)) for p in paths), labels, modality, source)


def card_domain(card: dict[str, Any]) -> dict[str, Any] | None:
    """The training domain a model card records (``card["domain"]``), or ``None`` for an older card."""
    domain = card.get("domain") or (card.get("training") or {}).get("domain")
    return dict(domain) if isinstance(domain, dict) else None


@functools.lru_cache(maxsize=1)
def _bundled_sample_domain() -> tuple[tuple[str, Any], ...]:
    from napari_medseg import RESOURCES_DIR

    sample = RESOURCES_DIR / "sample"
    domain = domain_from_images(
        sorted((sample / "imagesTr").glob("*.nii*")),
        None,
        dataset_modality(sample),
        source="bundled sample cases of the training data (the card predates domain records)",
    )
    return tuple((k, json.dumps(v)) for k, v in domain.items())


def bundled_sample_domain(labels: dict[int, str] | None = None) -> dict[str, Any]:
    """Domain of the bundled default model when its card predates domain records.

    Derived from the bundled sample cases (``resources/sample``: three cases of the model's own training
    data, MSD hippocampus MRI, with their ``dataset.json``). The tolerances of :func:`check_domain` cover the
    whole training set (MSD hippocampus extents 24-59 mm vs the samples' 34-52 mm).
    """
    domain = {k: json.loads(v) for k, v in _bundled_sample_domain()}
    domain["labels"] = {str(k): v for k, v in (labels or {}).items()}
    return domain


def model_domain(card: dict[str, Any], model_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The training domain of a model: its card's, else (for the bundled default model, or one fine-tuned
    from it, whose cards predate domain records) :func:`bundled_sample_domain`, else ``None`` (unknown)."""
    domain = card_domain(card)
    if domain is not None:
        return domain
    from napari_medseg.models.card import card_classes
    from napari_medseg.registry.model_registry import DEFAULT_MODEL_DIR

    bundled = DEFAULT_MODEL_DIR / "pair.json"
    try:
        bundled_id = json.loads(bundled.read_text()).get("model_id")
    except (OSError, ValueError):
        bundled_id = None
    is_bundled = model_dir is not None and Path(model_dir).resolve() == DEFAULT_MODEL_DIR.resolve()
    if is_bundled or (bundled_id and bundled_id in (card.get("model_id"), card.get("parent_model"))):
        if card_domain(json.loads(bundled.read_text())) is None:
            return bundled_sample_domain(card_classes(card))
    return None


def read_model_domain(model_dir: str | Path) -> tuple[dict[str, Any] | None, str]:
    """``(domain or None, model_id)`` of the model pair in ``model_dir`` (reads only ``pair.json``)."""
    from napari_medseg.errors import CheckpointError

    path = Path(model_dir) / "pair.json"
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"no readable model card {path} ({err})") from None
    return model_domain(card, model_dir), str(card.get("model_id", Path(model_dir).name))


@dataclass
class DomainCheck:
    """Result of :func:`check_domain`.

    Attributes:
        inside: ``True`` (like the training images), ``False`` (not), ``None`` (the card has no domain).
        reasons: one short phrase per failed criterion.
        model_id: the model checked against (for messages).
    """

    inside: bool | None
    reasons: list[str] = field(default_factory=list)
    model_id: str = "the model"

    @property
    def refused(self) -> bool:
        """``True`` when a run should be refused unless the user insists."""
        return self.inside is False

    @property
    def message(self) -> str:
        """One sentence for the user."""
        if self.inside is None:
            return (
                f"{self.model_id}'s card records no training domain: this case cannot be checked against it"
            )
        if self.inside:
            return f"the case is inside {self.model_id}'s training domain"
        return f"this case is outside {self.model_id}'s training domain ({'; '.join(self.reasons)})"

    def to_dict(self) -> dict[str, Any]:
        return {"inside": self.inside, "reasons": list(self.reasons), "model_id": self.model_id}


def _fmt(values: Iterable[float]) -> str:
    return "×".join(f"{v:.0f}" for v in values)


def check_domain(
    stats: ImageStats, domain: dict[str, Any] | None, model_id: str = "the model"
) -> DomainCheck:
    """Is an image (its :class:`ImageStats`) like the training images of ``domain``?"""
    if not domain:
        return DomainCheck(None, [], model_id)
    reasons: list[str] = []
    trained = normalise_modality(domain.get("modality"))
    if "unknown" not in (trained, stats.modality) and trained != stats.modality:
        reasons.append(f"{stats.modality} image, trained on {trained}")
    lo, hi = domain.get("spacing_mm", [0, float("inf")])
    if min(stats.spacing_mm) < lo / SPACING_TOLERANCE or max(stats.spacing_mm) > hi * SPACING_TOLERANCE:
        reasons.append(
            f"voxel size {', '.join(f'{s:.2f}' for s in stats.spacing_mm)} mm, trained on {lo:g}-{hi:g} mm"
        )
    fov = domain.get("fov_mm")
    if fov:
        too_big = any(e > r[1] * FOV_TOLERANCE for e, r in zip(stats.fov_mm, fov, strict=True))
        too_small = any(e < r[0] / FOV_TOLERANCE for e, r in zip(stats.fov_mm, fov, strict=True))
        if too_big or too_small:
            reasons.append(
                f"field of view {_fmt(stats.fov_mm)} mm, trained on {_fmt(r[0] for r in fov)} "
                f"to {_fmt(r[1] for r in fov)} mm"
            )
    intensity = domain.get("intensity") or {}
    if "p1" in intensity and "p99" in intensity:
        low = float(intensity["p1"][0])
        span = float(intensity["p99"][1]) - low
        if stats.p1 < low - max(100.0, INTENSITY_MARGIN * span):
            reasons.append(f"intensities down to {stats.p1:.0f}, training images from {low:.0f}")
    return DomainCheck(not reasons, reasons, model_id)
