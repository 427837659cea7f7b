"""The result of running the model pair on one volume, and writing it next to the source.

Files written by :func:`write_prediction` (all on the source volume's grid: same shape and affine):

* ``<case>_label.nii.gz`` — proposal labels, uint8.
* ``<case>_uncertainty.nii.gz`` — uncertainty 0..1, float32 (NIfTI has no float16).
* ``<case>_regions.json`` — model id/hash, net, case score, messages and the ranked regions, with a
  ``coordinate_systems`` entry saying what each position is (:data:`COORDINATE_SYSTEMS`): per region
  ``centroid_voxel`` (0-based ``(i, j, k)`` index into the written NIfTI arrays), ``centroid_mm`` in RAS+
  millimetres (NIfTI / nibabel / napari-medseg world) and ``centroid_lps_mm``, the same point in LPS
  millimetres (DICOM patient coordinates, what DICOM viewers, ITK and SimpleITK report).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.inference.regions import Region

if TYPE_CHECKING:
    from napari_medseg.io.volume import Volume

#: What the positions in ``<case>_regions.json`` mean (written into the file).
COORDINATE_SYSTEMS = {
    "centroid_voxel": "0-based (i, j, k) voxel index into the arrays of the written NIfTI files",
    "bbox": "0-based (i, j, k) voxel indices, start inclusive, stop exclusive",
    "centroid_mm": "RAS+ millimetres (x to the patient's Right, y Anterior, z Superior): NIfTI/nibabel world",
    "centroid_lps_mm": "LPS millimetres (x to the patient's Left, y Posterior, z Superior): DICOM patient "
    "coordinates, as DICOM viewers, ITK and SimpleITK report them; = centroid_mm with x and y negated",
}


def regions_json(pred: Prediction, case: str, source_image: str) -> dict[str, Any]:
    """The content of ``<case>_regions.json``: :meth:`Prediction.summary`, the coordinate systems and,
    per region, its centroid in LPS as well."""
    info: dict[str, Any] = {"case": case, "source_image": source_image, **pred.summary()}
    info["coordinate_systems"] = dict(COORDINATE_SYSTEMS)
    for region in info["regions"]:
        x, y, z = region["centroid_mm"]
        region["centroid_lps_mm"] = [0.0 - x, 0.0 - y, z]  # 0.0 - x: no "-0.0"
    return info


@dataclass(eq=False)
class Prediction:
    """Proposal and uncertainty for one volume, in the volume's own voxel order ``(I, J, K)``.

    Attributes:
        labels: proposal, uint8 ``(I, J, K)`` (argmax of the pair's mean probabilities, or of one net).
        uncertainty: float16 ``(I, J, K)`` in ``[0, 1]``: pair disagreement in the boundary band, or the
            normalised softmax entropy for a single net.
        band: bool ``(I, J, K)``, voxels near either net's predicted boundary.
        regions: ranked uncertain regions (best first).
        score: per-case uncertainty score, ``sum(uncertainty) / foreground voxels`` (see
            :func:`napari_medseg.inference.uncertainty.case_score`).
        probs: per net, float16 class probabilities ``(C, I, J, K)`` (empty when not kept).
        model_id, checkpoint_hash: provenance of the weights.
        net: ``"pair"``, ``"unetr"``, ``"bsnet"`` (or the name of a bare net).
        method: how ``uncertainty`` was computed (``"jsd"``, ``"tv"``, ``"jsd_entropy"``, ``"entropy"``).
        device: torch device the networks finally ran on.
        precision: ``"bf16"`` (autocast, where the device computes bf16 natively) or ``"fp32"``.
        messages: things the user should know (OOM fallbacks, ...), one sentence each.
        timings: seconds per stage (``preprocess``, ``windows``, ``uncertainty``, ``regions``, ``total``).
    """

    labels: np.ndarray
    uncertainty: np.ndarray | None
    band: np.ndarray
    regions: list[Region]
    score: float
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    model_id: str = ""
    checkpoint_hash: str = ""
    net: str = "pair"
    method: str = ""
    device: str = "cpu"
    precision: str = "fp32"
    messages: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Provenance string for the case store: ``model:<id>@<hash>`` (hash shortened to 12 chars)."""
        model = re.sub(r"[^A-Za-z0-9_.\-]", "-", self.model_id) or "unknown"
        digest = re.sub(r"[^A-Za-z0-9]", "", self.checkpoint_hash)[:12] or "unknown"
        return f"model:{model}@{digest}"

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no arrays) of the prediction and its regions."""
        return {
            "model_id": self.model_id,
            "checkpoint_hash": self.checkpoint_hash,
            "net": self.net,
            "method": self.method,
            "device": self.device,
            "precision": self.precision,
            "score": self.score,
            "shape": list(self.labels.shape),
            "foreground_voxels": int((self.labels > 0).sum()),
            "band_voxels": int(self.band.sum()),
            "messages": list(self.messages),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "regions": [r.to_dict() for r in self.regions],
        }


def prediction_paths(out_dir: str | Path, case: str) -> dict[str, Path]:
    """Where :func:`write_prediction` puts the files of ``case`` inside ``out_dir``."""
    out = Path(out_dir)
    return {
        "labels": out / f"{case}_label.nii.gz",
        "uncertainty": out / f"{case}_uncertainty.nii.gz",
        "regions": out / f"{case}_regions.json",
    }


def write_prediction(pred: Prediction, reference: Volume, out_dir: str | Path, case: str) -> dict[str, Path]:
    """Write labels, uncertainty and regions of ``pred`` on the grid of ``reference`` (atomic writes).

    Returns:
        The written paths, keyed ``labels``, ``uncertainty`` (absent for a prediction without one),
        ``regions``.
    """
    from napari_medseg.io import save_labels, save_volume
    from napari_medseg.io.atomic import atomic_write_bytes
    from napari_medseg.io.volume import Volume

    if tuple(pred.labels.shape) != tuple(reference.shape):
        raise ValueError(f"prediction shape {pred.labels.shape} does not match the volume {reference.shape}")
    paths = prediction_paths(out_dir, case)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    save_labels(pred.labels.astype(np.uint8), reference, paths["labels"])
    if pred.uncertainty is not None:
        unc = Volume(
            array=pred.uncertainty.astype(np.float32),
            affine=reference.affine.copy(),
            modality="unknown",
            meta=dict(reference.meta),
        )
        save_volume(unc, paths["uncertainty"])
    else:
        del paths["uncertainty"]
    info = regions_json(pred, case, reference.source)
    atomic_write_bytes(paths["regions"], (json.dumps(info, indent=2) + "\n").encode())
    return paths
