"""One retraining round of a case store: fine-tune, compare, register, promote only if better.

Steps of :func:`retrain`:

1. data: the store's latest label of every labelled case (``CaseStore.training_items()``). Approved
   labels are trusted; proposals and imported / unreviewed labels are ``approved=False`` and so go
   through Co-Correcting label correction in their boundary band.
2. validation: approved cases chosen by a stable hash of the case id (:mod:`.split`), never trained on.
3. start: the registry's current model (the bundled default while nothing was promoted); the
   candidate is fine-tuned from its weights with the same architecture (:mod:`.finetune`).
4. evaluation: the candidate and the current model are run on the same validation cases with the
   inference engine (whole volumes, sliding window) and scored with
   :func:`napari_medseg.evaluation.metrics.case_metrics` (Dice and HD95 per class).
5. registry: the candidate is registered with its scores, the current model's scores, the
   ``"<case>:<version>"`` labels it was trained on and the validation versions; then the promotion
   rule decides whether it becomes current.

Cancelling (``cancel`` token, SIGINT/SIGTERM in the command) before step 5 leaves the registry as it
was; the temporary training folder is removed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_medseg.errors import CheckpointError
from napari_medseg.io.atomic import atomic_write_bytes
from napari_medseg.registry.promotion import PromotionRule
from napari_medseg.retraining.split import RoundSplit, split_for_round

if TYPE_CHECKING:
    from napari_medseg.inference.cancel import CancelToken
    from napari_medseg.models.pair import ModelPair
    from napari_medseg.training.distributed import DistInfo

EventFn = Callable[[dict[str, Any]], None]
#: Training settings that differ from a from-scratch run: a smaller learning rate for fine-tuning,
#: label correction from the second epoch (the start model is already trained).
FINETUNE_DEFAULTS: dict[str, Any] = {"lr": 1e-4, "warmup_epochs": 1, "batch_size": 2}


@dataclass
class RetrainResult:
    """What a retraining round did and why.

    Attributes:
        model_id: the candidate's id ("" when this process is not rank 0 of a distributed run).
        promoted: whether the candidate became the current model.
        reason: the promotion rule's explanation.
        current_model: id of the model the candidate was compared with (and fine-tuned from).
        current_model_dir: the store's current model folder after the round.
        candidate_metrics, current_metrics: mean validation scores (``dice_mean``, ``dice_<class>``,
            ``hd95_mean`` in mm, ...) of both models on the same cases.
        trained_on, validation: ``"<case>:<version>"`` label versions used.
        epochs_run, kept_epoch: epochs trained; epoch whose weights were kept.
        stopped_by_budget: training stopped before ``epochs`` because of the time budget.
        history: one dict per epoch (``epoch, loss, dice, ...``).
        seconds: wall time of the whole round.
    """

    model_id: str = ""
    promoted: bool = False
    reason: str = ""
    current_model: str = ""
    current_model_dir: str = ""
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    current_metrics: dict[str, float] = field(default_factory=dict)
    trained_on: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)
    epochs_run: int = 0
    kept_epoch: int = 0
    stopped_by_budget: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self, with_history: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_history:
            d.pop("history")
        return _finite(d)


def _finite(obj: Any) -> Any:
    """NaN/inf -> None, so the result is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def new_model_id(n_registered: int) -> str:
    """``r<NNN>-<UTC time>``, e.g. ``r003-20261123T201502``: round number and when it was trained."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"r{n_registered + 1:03d}-{stamp}"


def mean_metrics(report: Any) -> dict[str, float]:
    """Mean of every metric over a :class:`~napari_medseg.evaluation.failures.FailureReport`'s cases."""
    keys: list[str] = []
    for c in report.cases:
        keys += [k for k in c.metrics if k not in keys]
    return {k: report.mean(k) for k in keys}


def evaluate_pair(
    pair: ModelPair,
    items: list[dict[str, Any]],
    device: str,
    cancel: CancelToken | None,
    progress: EventFn | None,
    who: str,
) -> dict[str, float]:
    """Mean validation metrics of ``pair`` (both networks, as the viewer proposes) on ``items``."""
    from napari_medseg.evaluation.failures import score_cases

    cases = [(it["case_id"], it["image"], it["label"], it["version"]) for it in items]

    def _progress(done: int, total: int) -> None:
        if progress is not None:
            progress({"stage": "evaluate", "model": who, "done": done, "total": total})

    report = score_cases(pair, cases, "pair", device, keep_arrays=False, progress=_progress, cancel=cancel)
    return mean_metrics(report)


@dataclass
class Judgement:
    """The promotion decision on a registered candidate and the scores it was based on."""

    promote: bool
    reason: str
    candidate_metrics: dict[str, float]
    current_metrics: dict[str, float]


def judge_candidate(
    registry: Any,
    candidate_dir: Path,
    current: ModelPair,
    current_id: str | None,
    val_items: list[dict[str, Any]],
    trained_on: list[str],
    rule: PromotionRule,
    device: str = "auto",
    cancel: CancelToken | None = None,
    progress: EventFn | None = None,
) -> Judgement:
    """Score the candidate in ``candidate_dir`` and ``current`` on ``val_items``, register, apply ``rule``.

    ``cancel`` is checked for the last time before the registry is written.
    """
    from napari_medseg.models.pair import ModelPair

    emit = progress or (lambda event: None)
    candidate = ModelPair.load(candidate_dir, device="cpu")
    cand = evaluate_pair(candidate, val_items, device, cancel, emit, "candidate")
    curr = evaluate_pair(current, val_items, device, cancel, emit, "current")
    if cancel is not None:
        cancel.check()  # last point where a cancel leaves the registry untouched
    emit({"stage": "register", "model": candidate.model_id})
    registry.register(
        candidate_dir,
        {k: v for k, v in cand.items() if math.isfinite(v)},
        trained_on=trained_on,
        parent=current_id or current.model_id,
        validation={
            "cases": RoundSplit.tags(val_items),
            "net": "pair",
            "baseline_model": current_id or current.model_id,
            "baseline_metrics": {k: v for k, v in curr.items() if math.isfinite(v)},
        },
    )
    decision = registry.consider(candidate.model_id, curr, rule)
    return Judgement(decision.promote, decision.reason, cand, curr)


def _history_csv(rows: list[dict[str, Any]]) -> bytes:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def load_start_model(model_dir: Path) -> ModelPair:
    """The model to fine-tune from (both networks), with a clear error when there is none."""
    from napari_medseg.models.pair import ModelPair

    if not (model_dir / "pair.json").is_file():
        raise CheckpointError(
            f"there is no model to fine-tune from in {model_dir}: promote a model "
            "('napari-medseg models promote') or install the bundled default model"
        )
    return ModelPair.load(model_dir, device="cpu")


def retrain(
    store_root: str | Path,
    epochs: int = 5,
    time_budget_s: float | None = None,
    nets: str = "pair",
    device: str = "auto",
    rule: PromotionRule = PromotionRule(),  # noqa: B008 - frozen dataclass
    progress: EventFn | None = None,
    cancel: CancelToken | None = None,
    *,
    val_fraction: float = 0.2,
    settings: dict[str, Any] | None = None,
    dist_info: DistInfo | None = None,
    command: str = "",
) -> RetrainResult:
    """Fine-tune the store's current model on its latest labels; promote the result only if better.

    Args:
        store_root: case store folder.
        epochs: most epochs to train (fewer when ``time_budget_s`` runs out).
        time_budget_s: wall-clock budget for training in seconds (evaluation comes on top).
        nets: ``"pair"`` (Co-Correcting) or ``"unetr"`` / ``"bsnet"`` (that net alone; the other one
            is kept from the current model, so the candidate is still a complete pair).
        device: ``"auto" | "cpu" | "cuda"``.
        rule: when a candidate may replace the current model.
        progress: called with event dicts: ``{"stage": "data"|"train"|"evaluate"|"register", ...}``;
            training epochs give ``{"stage": "train", "epoch", "epochs", "loss", "dice", ...}``.
        cancel: stops the round (raises ``Cancelled``); the registry is only written at the very end.
        val_fraction: share of approved cases held out (stable hash of the case id; at least one).
        settings: TrainConfig overrides (``lr``, ``batch_size``, ``seed``...; see FINETUNE_DEFAULTS).
        dist_info: from ``training.distributed.init_from_env`` under torchrun (rank 0 evaluates and
            registers; the other ranks only train).
        command: the command line, recorded in the model card.
    """
    from napari_medseg.registry import ModelRegistry
    from napari_medseg.retraining.finetune import build_trainer, config_from_pair, run_epochs
    from napari_medseg.store import CaseStore
    from napari_medseg.training import distributed
    from napari_medseg.training.cocorrecting import resolve_device
    from napari_medseg.training.data import CaseRecord, load_cases

    t0 = time.perf_counter()
    emit = progress or (lambda event: None)
    info = dist_info or distributed.DistInfo()
    store_root = Path(store_root)
    store = CaseStore.open(store_root)
    try:
        items = store.training_items()
        classes_store = store.labels
    finally:
        store.close()
    split: RoundSplit = split_for_round(items, val_fraction)
    registry = ModelRegistry(store_root)
    current_id = registry.current_id
    current_dir = registry.current_model_dir()
    start = load_start_model(current_dir)
    model_id = distributed.broadcast_object(new_model_id(len(registry.entries())), info)
    emit(
        {
            "stage": "data",
            "train": len(split.train),
            "train_approved": sum(bool(it["approved"]) for it in split.train),
            "val": len(split.val),
            "start_model": start.model_id,
        }
    )

    config = config_from_pair(
        start,
        **{**FINETUNE_DEFAULTS, "epochs": int(epochs), "nets": nets, "progress": False, **(settings or {})},
    )
    records = [
        CaseRecord(it["case_id"], it["image"], it["label"], bool(it["approved"])) for it in split.train
    ]
    val_records = [CaseRecord(it["case_id"], it["image"], it["label"], True) for it in split.val]
    train_cases = load_cases(records, config.patch, start.card["preprocessing"].get("scheme", "zscore"))
    val_cases = load_cases(val_records, config.patch, start.card["preprocessing"].get("scheme", "zscore"))
    trained_on, validation = RoundSplit.tags(split.train), RoundSplit.tags(split.val)
    card_training = {
        "kind": "retrain",
        "store": str(store_root.resolve()),
        "store_classes": {str(k): v for k, v in classes_store.items()},
        "start_model": start.model_id,
        "start_checkpoint": start.checkpoint_hash,
        "trained_on": trained_on,
        "approved_train_cases": sum(bool(it["approved"]) for it in split.train),
        "validation": validation,
        "split": {
            "train": [it["case_id"] for it in split.train],
            "val": [it["case_id"] for it in split.val],
            "rule": f"sha256(case_id) < {split.fraction} among approved cases (at least 1)",
        },
        "time_budget_s": time_budget_s,
        "command": command,
        "machine": f"{platform.node()} {platform.machine()}".strip(),
    }
    work = Path(tempfile.mkdtemp(prefix="medseg-retrain-"))
    try:
        dev = str(resolve_device(device))
        trainer = build_trainer(
            start, train_cases, val_cases, config, work, dev, card_training, model_id, info
        )
        # the candidate is the last epoch: the validation cases judge promotion below, so letting
        # them also pick the epoch would make every candidate look better than it is
        outcome = run_epochs(
            trainer,
            time_budget_s,
            on_epoch=lambda row: emit({"stage": "train", **row}),
            cancel=cancel,
            keep="last",
        )
        result = RetrainResult(
            model_id=model_id,
            current_model=start.model_id,
            trained_on=trained_on,
            validation=validation,
            epochs_run=len(outcome.history) if info.is_main else trainer.epoch,
            kept_epoch=outcome.kept_epoch,
            stopped_by_budget=outcome.stopped_by_budget,
            history=outcome.history,
        )
        if not info.is_main:
            result.model_id = ""
            result.seconds = round(time.perf_counter() - t0, 2)
            return result

        from napari_medseg.models.pair import ModelPair

        candidate_nets = {
            n: (trainer.nets[n] if n in trainer.nets else start.nets[n]).cpu() for n in start.nets
        }
        training = {
            **card_training,
            "config": config.to_dict(),
            "epochs_trained": len(outcome.history),
            "kept_epoch": outcome.kept_epoch,
            "epoch_choice": "last epoch (the validation cases judge promotion, so they do not pick it)",
            "stopped_by_budget": outcome.stopped_by_budget,
            "device": dev,
            "world_size": info.world_size,
            "train_s": outcome.seconds,
        }
        candidate = ModelPair.from_nets(
            candidate_nets,
            model_id=model_id,
            classes=start.classes,
            patch_size=start.patch_size,
            preprocessing=start.card["preprocessing"].get("scheme", "zscore"),
            training=training,
            metrics={"val_patch_dice": outcome.kept_metrics, "epoch": outcome.kept_epoch},
            parent_model=start.model_id,
            proposal_weights=start.card.get("proposal_weights"),
        )
        out_dir = candidate.save(work / "model")
        atomic_write_bytes(out_dir / "train_log.csv", _history_csv(outcome.history))

        judged = judge_candidate(
            registry, out_dir, start, current_id, split.val, trained_on, rule, device, cancel, emit
        )
        result.promoted, result.reason = judged.promote, judged.reason
        cand_metrics, curr_metrics = judged.candidate_metrics, judged.current_metrics
        result.candidate_metrics, result.current_metrics = cand_metrics, curr_metrics
        result.current_model_dir = str(registry.current_model_dir())
        result.seconds = round(time.perf_counter() - t0, 2)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
