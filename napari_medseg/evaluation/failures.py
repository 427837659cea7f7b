"""Failure inspection: score a model on every case with approved labels, worst first.

For each case the model's proposal is compared with the approved reference: Dice and HD95 (mm) per
class (:func:`napari_medseg.evaluation.metrics.case_metrics`) and an *error map*, a label array on
the image grid with

* ``0`` correct (proposal equals reference),
* ``1`` false positive: the proposal labels the voxel with a structure the reference does not give
  it (background in the reference, or another structure),
* ``2`` false negative: the reference has a structure there and the proposal says background.

The report (:func:`write_report`) is a CSV table (worst case first, then mean and sd rows) and a
histogram PNG of the per-case mean Dice drawn with matplotlib's Agg canvas (no Qt, no pyplot state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.errors import Cancelled, InputError, MedsegError, user_message
from napari_medseg.evaluation.metrics import case_metrics
from napari_medseg.evaluation.report import EvaluationReport
from napari_medseg.io.atomic import atomic_write_with

if TYPE_CHECKING:
    from napari_medseg.inference.cancel import CancelToken
    from napari_medseg.models.pair import ModelPair

#: Error-map values.
CORRECT, FALSE_POSITIVE, FALSE_NEGATIVE = 0, 1, 2
#: Colours of the error map in the viewer (RGBA), and their meaning.
ERROR_COLORS: dict[int | None, tuple[float, float, float, float]] = {
    CORRECT: (0.0, 0.0, 0.0, 0.0),
    FALSE_POSITIVE: (1.0, 0.0, 1.0, 1.0),  # magenta: the model added it
    FALSE_NEGATIVE: (0.0, 1.0, 1.0, 1.0),  # cyan: the model missed it
    None: (0.0, 0.0, 0.0, 0.0),
}

ProgressFn = Callable[[int, int], None]


def error_map(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Where the proposal is wrong, and how.

    Args:
        pred, truth: integer label maps ``(I, J, K)`` on the same grid (0 = background).

    Returns:
        uint8 ``(I, J, K)``: 0 correct, 1 false positive (proposal says a structure the reference
        does not have there, including the wrong structure), 2 false negative (reference structure
        the proposal calls background).
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise InputError(f"proposal {pred.shape} and reference {truth.shape} are not on the same grid")
    out = np.zeros(pred.shape, dtype=np.uint8)
    wrong = pred != truth
    out[wrong & (pred != 0)] = FALSE_POSITIVE
    out[wrong & (pred == 0)] = FALSE_NEGATIVE
    return out


@dataclass
class CaseFailure:
    """One scored case.

    Attributes:
        case_id: store case id.
        version: the approved label version used as reference.
        metrics: ``dice_<name>``, ``hd95_<name>`` (mm) per foreground class, ``dice_mean``, ``hd95_mean``.
        proposal: uint8 ``(I, J, K)`` model proposal.
        uncertainty: float16 ``(I, J, K)`` in [0, 1] or ``None``.
    """

    case_id: str
    version: int | None
    metrics: dict[str, float]
    proposal: np.ndarray | None = None
    uncertainty: np.ndarray | None = None


@dataclass
class FailureReport:
    """Cases ranked worst first (lowest mean Dice; NaN last) and the model that made them."""

    cases: list[CaseFailure] = field(default_factory=list)
    model_id: str = ""
    checkpoint_hash: str = ""
    classes: dict[int, str] = field(default_factory=dict)
    #: ``(case_id, message)`` of cases that could not be scored (missing or unreadable files).
    failed: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def for_pair(
        cls, cases: list[CaseFailure], pair: ModelPair, failed: list[tuple[str, str]] | None = None
    ) -> FailureReport:
        """A report on ``cases`` (kept in the given order) made by ``pair``."""
        return cls(list(cases), pair.model_id, _hash(pair), dict(pair.classes), list(failed or []))

    def to_evaluation_report(self) -> EvaluationReport:
        report = EvaluationReport(meta={"model_id": self.model_id, "checkpoint_hash": self.checkpoint_hash})
        for c in self.cases:
            report.add(c.case_id, dict(c.metrics))
        return report

    def mean(self, key: str = "dice_mean") -> float:
        vals = np.asarray([c.metrics.get(key, math.nan) for c in self.cases], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        return float(vals.mean()) if vals.size else math.nan


def named_metrics(metrics: dict[str, float], classes: dict[int, str]) -> dict[str, float]:
    """``dice_1`` -> ``dice_anterior`` (class names from the model card); means unchanged."""
    out = {}
    for key, value in metrics.items():
        prefix, _, suffix = key.partition("_")
        if suffix.isdigit() and int(suffix) in classes:
            key = f"{prefix}_{classes[int(suffix)]}"
        out[key] = float(value)
    return out


def rank_worst_first(cases: Sequence[CaseFailure], key: str = "dice_mean") -> list[CaseFailure]:
    """Cases sorted by ``metrics[key]`` ascending (worst first); NaN scores go last, ties by case id."""

    def sort_key(c: CaseFailure) -> tuple[int, float, str]:
        v = c.metrics.get(key, math.nan)
        return (1, 0.0, c.case_id) if not math.isfinite(v) else (0, float(v), c.case_id)

    return sorted(cases, key=sort_key)


def score_cases(
    pair: ModelPair,
    cases: Sequence[tuple[str, Any, Any, int | None]],
    net: str = "pair",
    device: str = "auto",
    hd95: bool = True,
    keep_arrays: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> FailureReport:
    """Run ``pair`` on each case and score it against its reference; returns the worst-first report.

    Args:
        pair: the model.
        cases: ``(case_id, image Volume or path, reference Volume or path, version)``.
        net: ``"pair" | "unetr" | "bsnet"``.
        keep_arrays: keep proposal and uncertainty per case (for the viewer).
        progress: ``progress(done_cases, total_cases)``.
        cancel: checked between cases (raises ``Cancelled``).
    """
    from napari_medseg.inference.engine import predict_volume
    from napari_medseg.io import load_labels, load_volume

    classes = dict(pair.classes)
    fg = sorted(c for c in classes if c != 0)
    out: list[CaseFailure] = []
    failed: list[tuple[str, str]] = []
    for i, (case_id, image, label, version) in enumerate(cases):
        if cancel is not None:
            cancel.check()
        try:  # a missing or broken case is reported, the others are still scored
            volume = image if hasattr(image, "array") else load_volume(image)
            truth = label if hasattr(label, "array") else load_labels(label, reference=volume)
        except (MedsegError, OSError) as err:
            if isinstance(err, Cancelled):
                raise
            failed.append((case_id, user_message(err) or str(err)))
            continue
        pred = predict_volume(volume, pair, net=net, device=device, keep_probs=False, cancel=cancel)
        metrics = case_metrics(pred.labels, np.asarray(truth.array), fg, volume.spacing, hd95=hd95)
        out.append(
            CaseFailure(
                case_id,
                version,
                named_metrics(metrics, classes),
                pred.labels if keep_arrays else None,
                pred.uncertainty if keep_arrays else None,
            )
        )
        if progress is not None:
            progress(i + 1, len(cases))
    if failed and not out:
        raise InputError(
            f"none of the {len(cases)} case(s) could be read; first: {failed[0][0]}: {failed[0][1]}"
        )
    return FailureReport.for_pair(rank_worst_first(out), pair, failed)


def _hash(pair: ModelPair) -> str:
    try:
        return str(pair.checkpoint_hash)
    except Exception:  # noqa: BLE001 - an unsaved pair has no hash
        return ""


def approved_cases(store: Any, case_ids: Sequence[str] | None = None) -> list[tuple[str, str, str, int]]:
    """``(case_id, image path, approved label path, version)`` of the store's approved cases, by id."""
    items = [it for it in store.training_items() if it["approved"]]
    if case_ids is not None:
        wanted = set(case_ids)
        items = [it for it in items if it["case_id"] in wanted]
    return sorted((it["case_id"], it["image"], it["label"], int(it["version"])) for it in items)


def failure_report(
    store_root: str | Path,
    model_dir: str | Path | None = None,
    net: str = "pair",
    device: str = "auto",
    hd95: bool = True,
    keep_arrays: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> FailureReport:
    """Score ``model_dir`` (default: the store's current model) on every approved case of a store."""
    from napari_medseg.models.pair import ModelPair
    from napari_medseg.registry import current_model_dir
    from napari_medseg.store import CaseStore

    store = CaseStore.open(store_root, write=False)
    try:
        cases = approved_cases(store)
    finally:
        store.close()
    if not cases:
        raise InputError(f"the case store {store_root} has no approved labels to compare the model with")
    model_dir = Path(model_dir) if model_dir is not None else current_model_dir(store_root)
    nets = ("unetr", "bsnet") if net == "pair" else (net,)
    pair = ModelPair.load(model_dir, device="cpu", nets=nets)
    return score_cases(pair, cases, net, device, hd95, keep_arrays, progress, cancel)


def histogram_figure(
    report: FailureReport, key: str = "dice_mean", bins: int = 20, figure: Any = None
) -> Any:
    """Draw the histogram of ``metrics[key]`` over the cases into a matplotlib ``Figure`` (returned)."""
    if figure is None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(5, 3.2), dpi=100)
    figure.clear()
    ax = figure.add_subplot(1, 1, 1)
    vals = np.asarray([c.metrics.get(key, math.nan) for c in report.cases], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    ax.hist(vals, bins=np.linspace(0.0, 1.0, bins + 1), color="#4477aa", edgecolor="white")
    if vals.size:
        ax.axvline(vals.mean(), color="#cc3311", linestyle="--", label=f"mean {vals.mean():.3f}")
        ax.legend(loc="upper left")
    ax.set_xlabel(key.replace("_", " "))
    ax.set_ylabel("cases")
    ax.set_title(f"{report.model_id}: {len(vals)} cases")
    figure.tight_layout()
    return figure


def write_report(report: FailureReport, out_dir: str | Path, stem: str = "failures") -> dict[str, Path]:
    """Write ``<out>/<stem>.csv`` (worst first, then mean/sd rows) and ``<out>/<stem>_hist.png``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = report.to_evaluation_report().to_csv(out / f"{stem}.csv")
    fig = histogram_figure(report)
    canvas = FigureCanvasAgg(fig)
    png_path = out / f"{stem}_hist.png"
    atomic_write_with(png_path, lambda p: canvas.print_png(str(p)))
    return {"csv": csv_path, "png": png_path}
