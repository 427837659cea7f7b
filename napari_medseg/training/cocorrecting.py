"""Co-Correcting trainer for the UNETR (A) + BS-Net (B) pair, lifted from classification to voxels.

One training step on a batch ``x (B, 1, D, H, W)`` with given labels ``(B, D, H, W)``:

1. targets: the given one-hot label, or — in the boundary band of a not-approved case the
   curriculum admitted — the learnable label distribution ``y_d`` (:mod:`.label_correction`);
2. both networks predict; each computes its per-voxel cross-entropy against the targets;
3. small-loss selection (:mod:`.selection`) on the boundary band of *unapproved* labels only: each
   net's loss is weighted by its peer's small-loss keep-mask (its own while the peer's validation
   Dice is more than ``peer_margin`` worse); the forget rate follows the measured noise share of the
   unapproved labels (both peers confidently contradict the label) — at least ``forget_floor`` while
   some training labels are approved — capped at ``forget_max`` and ramped in over
   ``forget_ramp_epochs``. Approved labels: every voxel kept, never corrected;
4. loss per net = weighted CE + weighted soft Dice (+ β · prediction entropy on corrected voxels;
   BS-Net adds its deep-supervision and boundary losses), plus the label-distribution loss
   ``Σ_net KL(p_net ‖ y_d) + α · CE(given, y_d)`` whose gradient only moves ``y_d``;
5. AdamW on both nets (cosine LR), plain SGD on ``y_d``; per-case peer Dice feeds the curriculum.

After each epoch: validation Dice per class (MONAI ``compute_dice``) for ``unetr``, ``bsnet`` and the
pair proposal (argmax of ``w·p_UNETR + (1−w)·p_BS-Net``; ``w`` from :data:`PROPOSAL_WEIGHTS` picked on
the validation cases, recorded in the card and used by inference), a CSV row, a resumable checkpoint
in ``<out>/checkpoint/`` and, when the score improved, the best ``ModelPair`` in ``<out>/``. The epoch
loop itself is :func:`napari_medseg.training.loop.run_epochs`, shared with retraining.

Batches come from :class:`~napari_medseg.training.augment.CachedCases`: cases cached once as tensors
on the training device, augmented a whole batch at a time with torch; the share of each epoch spent
waiting for data is logged (``data_share``).

``nets="unetr"|"bsnet"`` trains one network plainly; ``plain=True`` trains both with neither
selection nor correction (the baselines of the label-noise experiment).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_medseg.errors import CheckpointError, InputError
from napari_medseg.inference.cpu_threads import side_by_side
from napari_medseg.inference.device import native_bf16
from napari_medseg.io.atomic import atomic_write_bytes, atomic_write_with
from napari_medseg.models.boundary import boundary_band, boundary_targets
from napari_medseg.models.factory import build_network
from napari_medseg.training import distributed
from napari_medseg.training.augment import AugmentSettings, CachedCases
from napari_medseg.training.curriculum import AgreementCurriculum, peer_dice
from napari_medseg.training.data import (
    DEFAULT_PATCH,
    CaseArrays,
    CaseDataset,
    center_crop_or_pad,
    flat_canonical_index,
)
from napari_medseg.training.label_correction import BatchCorrection, LabelCorrection
from napari_medseg.training.losses import (
    boundary_loss,
    deep_supervision_weights,
    downsample_labels,
    seg_loss,
    voxel_ce,
)
from napari_medseg.training.selection import forget_rate, noise_share, select_voxels, selectors

_T = TypeVar("_T")

NET_NAMES = ("unetr", "bsnet")
#: UNETR weights tried for the pair proposal ``w·p_UNETR + (1−w)·p_BS-Net`` (BS-Net gets ``1 − w``).
PROPOSAL_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
LOG_NAME = "train_log.csv"
CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainConfig:
    """Everything that defines a training run (written into the model card)."""

    epochs: int = 10
    batch_size: int = 2
    lr: float = 3e-4
    weight_decay: float = 1e-5
    nets: str = "pair"  # "pair" | "unetr" | "bsnet"
    plain: bool = False
    forget_max: float = 0.5  # cap of the measured noise share used as forget rate
    # least forget rate on unapproved bands while approved cases anchor the boundary (measured, session 5)
    forget_floor: float = 0.5
    forget_ramp_epochs: int = 3
    noise_confidence: float = 0.7  # a peer contradicts a label below 1 - this probability of it
    peer_margin: float = 0.05  # a peer this much worse (val Dice) no longer selects for its partner
    band_radius: int = 2
    warmup_epochs: int = 2  # epochs before label correction starts
    curriculum_start: float = 0.25
    curriculum_ramp_epochs: int = 3
    lr_labels: float = 0.5
    alpha: float = 0.2
    beta: float = 0.05
    boundary_weight: float = 0.5
    patch: tuple[int, int, int] = DEFAULT_PATCH
    num_classes: int = 3
    unetr: dict[str, Any] = field(default_factory=dict)
    bsnet: dict[str, Any] = field(default_factory=dict)
    augment: bool = True
    # random shift of each training sample, ± voxels per axis (AugmentSettings.translate; 0 = none).
    # On: without it UNETR (learned position embeddings) learns where the structure sits in the patch
    # and loses 31-35 Dice points when it sits elsewhere (bench/RESULTS.md, session 6)
    translate: float = 8.0
    seed: int = 0
    amp: bool = True  # bf16 autocast where the device computes it natively (CUDA; AVX512-BF16/AMX CPUs)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.nets not in ("pair", *NET_NAMES):
            raise InputError(f"--nets must be pair, unetr or bsnet, not {self.nets!r}")
        self.patch = tuple(int(p) for p in self.patch)

    @property
    def net_names(self) -> tuple[str, ...]:
        return NET_NAMES if self.nets == "pair" else (self.nets,)

    @property
    def co_correcting(self) -> bool:
        return self.nets == "pair" and not self.plain

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["patch"] = list(self.patch)
        return d


class _WithAux(nn.Module):
    """BS-Net whose ``forward`` returns ``(seg, boundary, *deep)``, so DDP sees every output."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net.forward_with_aux(x)
        return (out.seg, out.boundary, *out.deep)


def init_seed(seed: int, name: str) -> int:
    """Seed of network ``name``'s initial weights in a run seeded ``seed`` (the same alone or in the pair)."""
    return seed * len(NET_NAMES) + NET_NAMES.index(name)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA GPU is available")
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def masked_soft_dice(probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1 − mean foreground soft Dice over the batch, counting only voxels with ``weight`` > 0.

    Args:
        probs, target: (B, C, D, H, W) probabilities; weight: (B, D, H, W) in [0, 1].
    """
    w = weight[:, None]
    p, t = (probs[:, 1:] * w).float(), (target[:, 1:] * w).float()
    dims = (0, 2, 3, 4)
    inter = (p * t).sum(dims)
    denom = p.sum(dims) + t.sum(dims)
    return 1.0 - ((2 * inter + 1e-5) / (denom + 1e-5)).mean()


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, D, H, W) Shannon entropy (nats)."""
    return -(probs * probs.clamp_min(1e-8).log()).sum(1)


class CoCorrectingTrainer:
    """Trains one network or the Co-Correcting pair; see the module docstring.

    Args:
        train_cases, val_cases: in-memory cases (``data.load_cases``); ``train_cases[i].index == i``.
        config: the run's :class:`TrainConfig`.
        out_dir: model folder (best pair, ``train_log.csv``, ``checkpoint/``).
        device: ``"auto" | "cpu" | "cuda"``.
        card_training: extra facts recorded in the model card (data, split, command...).
        classes: label value -> name.
        dist_info: from ``distributed.init_from_env`` (default: one process).
        parent_model: ``model_id`` of the model whose weights the networks start from (recorded in
            the card), None for a fresh start.
    """

    def __init__(
        self,
        train_cases: list[CaseArrays],
        val_cases: list[CaseArrays],
        config: TrainConfig,
        out_dir: str | Path,
        device: str = "auto",
        card_training: dict[str, Any] | None = None,
        classes: dict[int, str] | None = None,
        dist_info: distributed.DistInfo | None = None,
        model_id: str | None = None,
        parent_model: str | None = None,
    ):
        self.cfg = config
        self.parent_model = parent_model
        self.out_dir = Path(out_dir)
        self.device = resolve_device(device)
        self.dist = dist_info or distributed.DistInfo()
        self.classes = dict(classes or {0: "background", 1: "anterior", 2: "posterior"})
        self.card_training = dict(card_training or {})
        self.model_id = model_id or self.out_dir.name
        self.train_cases, self.val_cases = train_cases, val_cases
        if not train_cases:
            raise InputError("no training cases")
        np.random.seed(config.seed)

        self.nets: dict[str, nn.Module] = {}
        for name in config.net_names:
            cfg = {"out_channels": config.num_classes, **getattr(config, name)}
            if name == "unetr":
                cfg["img_size"] = list(config.patch)
            # each net's initial weights come from its own seed, so a net alone and the same net in the
            # pair start identical: arms of one seed then differ by the method, not by initial luck
            torch.manual_seed(init_seed(config.seed, name))
            self.nets[name] = build_network(name, cfg).to(self.device)
        torch.manual_seed(config.seed)
        self.models = {
            name: distributed.wrap(_WithAux(net) if name == "bsnet" else net, self.dist, self.device)
            for name, net in self.nets.items()
        }
        params = [p for net in self.nets.values() for p in net.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

        self.loader = CachedCases(
            train_cases,
            config.patch,
            config.batch_size,
            device=self.device,
            augment=config.augment,
            seed=config.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            settings=AugmentSettings(translate=config.translate),
        )
        steps = max(1, config.epochs * len(self.loader))
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=steps)
        self.shapes = [tuple(c.image.shape) for c in train_cases]

        self.correction: LabelCorrection | None = None
        self.curriculum: AgreementCurriculum | None = None
        if config.co_correcting:
            self.correction = LabelCorrection(
                [c.label for c in train_cases],
                [c.approved for c in train_cases],
                config.num_classes,
                band_radius=config.band_radius,
            ).to(self.device)
            self.label_optimizer = torch.optim.SGD([self.correction.logits], lr=config.lr_labels)
            self.curriculum = AgreementCurriculum(
                len(train_cases), config.warmup_epochs, config.curriculum_start, config.curriculum_ramp_epochs
            )
        self.epoch = 0  # next epoch to run
        self.best_score = -math.inf
        self.best_epoch = -1
        self.history: list[dict[str, Any]] = []
        self.amp = config.amp and native_bf16(self.device)
        self.noise_estimate: float | None = None  # smoothed noise share of the unapproved labels
        # some training labels are approved: their boundaries teach it, the forget floor applies
        self.anchored = any(c.approved for c in train_cases)
        # every training label approved: nothing may be dropped, so there is no forget rate to apply
        self.all_approved = all(c.approved for c in train_cases)
        self.peer_scores: dict[str, float | None] = {n: None for n in self.nets}  # latest val Dice
        self.proposal_weight = 0.5  # UNETR's weight in the pair proposal (picked on validation)
        self.pick_proposal_weight = True

    # -- one step -------------------------------------------------------------------------------
    def _forward(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        out = self.models[name](x)
        if name == "bsnet":
            return out[0], out[1:]
        return out, ()

    def _per_net(self, fn: Callable[[str], _T]) -> list[_T]:
        """``[fn(name) for name in self.nets]``: on the CPU each network on its own Python thread with one
        torch thread per op (:mod:`~napari_medseg.inference.cpu_threads`). Used for the forward and the
        backward passes only: the two graphs share nothing (the label-correction loss sees detached
        probabilities), while the losses, the selection and the optimizer between them keep torch's
        threads. In order elsewhere (GPU, one thread, one network, several processes)."""
        with side_by_side(self.device, 0 if self.dist.enabled else len(self.nets)) as run:
            return run(fn, list(self.nets))

    def voxel_weights(
        self,
        approved: Any,
        given: torch.Tensor,
        probs: dict[str, torch.Tensor],
        losses: dict[str, torch.Tensor],
        epoch: int,
    ) -> tuple[dict[str, torch.Tensor], float]:
        """Per-net 0/1 loss weights of a batch and the forget rate used (the trust rules).

        Candidates for dropping are the boundary-band voxels of *unapproved* samples only; the forget
        rate is the smoothed noise share of those labels (updated here), capped and ramped in; each
        net's voxels are chosen by its peer unless the peer is more than ``peer_margin`` worse. The
        noise share is judged by the nets that choose (both while they are peers of similar skill, the
        stronger alone once the other falls more than ``peer_margin`` behind).

        Args:
            approved: (B,) bool per sample; given: (B, D, H, W) given labels; probs, losses: per net
                (B, K, D, H, W) softmax and (B, D, H, W) per-voxel loss; epoch: 0-based.
        """
        cfg = self.cfg
        weights = {n: torch.ones_like(given, dtype=torch.float32) for n in self.nets}
        if not cfg.co_correcting or self.all_approved:
            return weights, 0.0
        unapproved = ~torch.as_tensor(approved, dtype=torch.bool).to(given.device)
        band = boundary_band(given, cfg.band_radius)[:, 0] & unapproved[:, None, None, None]
        chooser = selectors(self.peer_scores, cfg.peer_margin)
        # the nets trusted to select voxels are the ones that judge the noise: a much weaker peer, which
        # has learned the labels' bias as well, would otherwise veto most of what the stronger one rejects
        judges = sorted(set(chooser.values())) or list(probs)
        share = noise_share([probs[n] for n in judges], given, band, cfg.noise_confidence)
        if share is not None:
            prev = self.noise_estimate
            self.noise_estimate = share if prev is None else 0.9 * prev + 0.1 * share
        estimate = self.noise_estimate or 0.0
        if self.anchored:  # approved boundaries exist: the unapproved ones are expendable, and suspect
            estimate = max(estimate, cfg.forget_floor)
        forget = forget_rate(epoch, cfg.forget_max, cfg.forget_ramp_epochs, estimate)
        if band.any() and forget > 0:
            weights = select_voxels(losses, forget, band, chooser)
        return weights, forget

    def train_step(self, batch: dict[str, Any], epoch: int) -> dict[str, float]:
        """One optimisation step on a batch from :class:`~.augment.CachedCases`; returns logged floats."""
        cfg = self.cfg
        x = batch["image"].to(self.device)
        given = batch["label"].to(self.device)
        index = torch.as_tensor(batch["index"])
        K = cfg.num_classes
        if self.correction is not None:
            flat = flat_canonical_index(batch["coords"], [self.shapes[i] for i in index.tolist()])
            corr = self.correction.targets(index, flat.to(self.device), given)
        else:
            onehot = F.one_hot(given, K).permute(0, 4, 1, 2, 3).float()
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            corr = BatchCorrection(onehot, torch.zeros_like(given, dtype=torch.bool), empty, empty)
        target = corr.target
        hard = target.argmax(1)

        def forward(name: str) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                return self._forward(name, x)

        names = list(self.nets)
        outs = dict(zip(names, self._per_net(forward), strict=True))
        logits = {n: o[0].float() for n, o in outs.items()}
        probs = {n: torch.softmax(v, 1) for n, v in logits.items()}
        vce = {n: voxel_ce(v, target) for n, v in logits.items()}

        weights, forget = self.voxel_weights(batch["approved"], given, probs, vce, epoch)

        parts: dict[str, float] = {}
        net_loss: dict[str, torch.Tensor] = {}
        for name in self.nets:
            loss = _weighted_mean(vce[name], weights[name]) + masked_soft_dice(
                probs[name], target, weights[name]
            )
            if corr.corrected.any():
                loss = loss + cfg.beta * _entropy(probs[name])[corr.corrected].mean()
            if name == "bsnet":
                boundary, deep = outs[name][1][0].float(), outs[name][1][1:]
                for w, d in zip(deep_supervision_weights(len(deep)), deep, strict=True):
                    loss = loss + w * seg_loss(d.float(), downsample_labels(hard, d.shape[2:]))
                loss = loss + cfg.boundary_weight * boundary_loss(boundary, boundary_targets(hard))
            parts[f"loss_{name}"] = float(loss.detach())
            net_loss[name] = loss

        lab_loss = None
        if self.correction is not None and corr.pos.numel():
            lab_loss = self.correction.loss(corr, [probs[n] for n in self.nets], cfg.alpha)
            parts["loss_labels"] = float(lab_loss.detach()) / max(1, corr.pos.numel())

        self.optimizer.zero_grad(set_to_none=True)
        if self.correction is not None:
            self.label_optimizer.zero_grad(set_to_none=True)
        # the gradient of the summed loss, graph by graph: each net's own, and the labels' (detached probs)
        self._per_net(lambda name: net_loss[name].backward())
        if lab_loss is not None:
            lab_loss.backward()
        self.optimizer.step()
        if self.correction is not None:
            # every rank reduces (even with no corrected voxel this step), or the job deadlocks
            if self.correction.logits.grad is None:
                self.correction.logits.grad = torch.zeros_like(self.correction.logits)
            distributed.all_reduce_sum_(self.correction.logits.grad, self.dist)
            self.label_optimizer.step()
        self.scheduler.step()

        if self.curriculum is not None:
            agree = peer_dice(logits["unetr"].argmax(1), logits["bsnet"].argmax(1), K)
            self.curriculum.record(index, agree)
        parts["forget_rate"] = forget
        if self.noise_estimate is not None:
            parts["noise_estimate"] = self.noise_estimate
        return parts

    # -- epochs ---------------------------------------------------------------------------------
    def train_epoch(self, epoch: int, cancel: Any = None) -> dict[str, float]:
        """Train one epoch; ``cancel`` (a ``CancelToken``) is checked before every batch.

        Also measures ``data_share``: the share of the epoch spent assembling and augmenting batches
        (on CUDA the device is synchronised around each step so the split is real).
        """
        for model in self.models.values():
            model.train()
        self.loader.set_epoch(epoch)
        sums: dict[str, float] = {}
        n = 0
        bar = None
        if self.cfg.progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=len(self.loader), desc=f"epoch {epoch + 1}/{self.cfg.epochs}", leave=False)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        wait = 0.0
        t_epoch = time.perf_counter()
        batches = iter(self.loader)
        while True:
            if cancel is not None:
                cancel.check()
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            sync()
            wait += time.perf_counter() - t0
            parts = self.train_step(batch, epoch)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items() if k.startswith("loss_")})
        sync()
        if bar is not None:
            bar.close()
        stats = {k: v / max(n, 1) for k, v in sums.items()}
        stats["data_share"] = wait / max(time.perf_counter() - t_epoch, 1e-9)
        if self.curriculum is not None and self.correction is not None:
            self.curriculum.sum = distributed.all_reduce_array(self.curriculum.sum, self.dist)
            self.curriculum.count = distributed.all_reduce_array(self.curriculum.count, self.dist)
            agreement = self.curriculum.end_epoch()
            admitted = self.curriculum.admit(epoch, self.correction.admitted.cpu().numpy())
            self.correction.admitted.copy_(torch.from_numpy(admitted))
            stats["peer_dice_train"] = float(np.nanmean(agreement)) if np.isfinite(agreement).any() else 0.0
            stats.update(self.correction.stats())
        return stats

    @torch.no_grad()
    def validate(
        self, cases: list[CaseArrays] | None = None, pick_weight: bool | None = None
    ) -> dict[str, float]:
        """Dice per class for each net and for the pair proposal on ``cases`` (default: validation).

        Each case is evaluated on its centred patch (the whole case when it fits the patch, as every
        hippocampus case fits (48, 64, 48)); predictions in the padding count as background. The pair
        proposal is ``argmax(w·p_UNETR + (1−w)·p_BS-Net)``; with ``pick_weight`` every ``w`` of
        :data:`PROPOSAL_WEIGHTS` is scored and the best kept (``pair_weight_unetr``, ties → 0.5);
        otherwise the current ``proposal_weight`` is used (default: ``self.pick_proposal_weight``;
        retraining keeps the start model's weight, since its validation cases also judge promotion).
        On the validation cases the nets' mean Dice become the peer scores that gate voxel selection.
        """
        from monai.metrics import compute_dice

        on_val = cases is None
        cases = self.val_cases if cases is None else cases
        pick_weight = self.pick_proposal_weight if pick_weight is None else pick_weight
        for net in self.nets.values():
            net.eval()
        K = self.cfg.num_classes
        pair = len(self.nets) == 2
        weights = (PROPOSAL_WEIGHTS if pick_weight else (self.proposal_weight,)) if pair else ()
        keys = [*self.nets] + [f"pair@{w}" for w in weights]
        # MONAI's functional Dice: DiceMetric.aggregate() would all_gather across DDP ranks, and only
        # rank 0 validates
        scores: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        ds = CaseDataset(cases, self.cfg.patch)
        for i in range(len(ds)):
            item = ds[i]
            case = cases[i]
            x = item["image"][None].to(self.device)
            label = item["label"][None]
            region = np.zeros(case.image.shape, dtype=bool)
            region[case.region()] = True  # the case itself, not its padding
            inside = torch.from_numpy(center_crop_or_pad(region, self.cfg.patch))[None]

            def predict(name: str, x: torch.Tensor = x) -> torch.Tensor:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    return torch.softmax(self.nets[name](x).float(), 1).cpu()

            probs = dict(zip(self.nets, self._per_net(predict), strict=True))
            for w in weights:
                probs[f"pair@{w}"] = w * probs["unetr"] + (1 - w) * probs["bsnet"]
            y = F.one_hot(label, K).permute(0, 4, 1, 2, 3)
            for k in keys:
                pred = torch.where(inside, probs[k].argmax(1), torch.zeros_like(label))
                onehot = F.one_hot(pred, K).permute(0, 4, 1, 2, 3)
                scores[k].append(compute_dice(onehot, y, include_background=False, ignore_empty=False)[0])
        per_class = {k: torch.stack(v).nan_to_num(0.0).mean(0).cpu().numpy() for k, v in scores.items()}
        out: dict[str, float] = {}
        if pair:
            w = max(weights, key=lambda w: (round(float(per_class[f"pair@{w}"].mean()), 6), -abs(w - 0.5)))
            per_class["pair"] = per_class[f"pair@{w}"]
            out["pair_weight_unetr"] = float(w)
            if len(weights) > 1:
                out.update(
                    {f"proposal_w{v:g}_dice_mean": float(per_class[f"pair@{v}"].mean()) for v in weights}
                )
            if pick_weight:
                self.proposal_weight = float(w)
        for k in [*self.nets] + (["pair"] if pair else []):
            for c, v in enumerate(per_class[k], start=1):
                out[f"dice_{k}_{self.classes.get(c, c)}"] = float(v)
            out[f"dice_{k}_mean"] = float(per_class[k].mean())
        if on_val:
            self.peer_scores = {n: out[f"dice_{n}_mean"] for n in self.nets}
        return out

    def score(self, metrics: dict[str, float]) -> float:
        """The selection score: pair mean Dice (or the single net's)."""
        key = "pair" if len(self.nets) > 1 else next(iter(self.nets))
        return metrics.get(f"dice_{key}_mean", -math.inf)

    def fit(self, **loop_options: Any) -> dict[str, Any]:
        """Run the remaining epochs (:func:`~napari_medseg.training.loop.run_epochs`, persisting each
        epoch); returns the best metrics. Ctrl-C saves a checkpoint and re-raises.

        ``loop_options``: ``time_budget_s``, ``on_epoch``, ``cancel`` (see ``run_epochs``).
        """
        from napari_medseg.training.loop import run_epochs

        try:
            run_epochs(self, keep="best", persist=self.dist.is_main, **loop_options)
        except KeyboardInterrupt:
            if self.dist.is_main:
                self.save_checkpoint()
                print(f"interrupted: checkpoint saved in {self.out_dir / CHECKPOINT_DIR}", flush=True)
            raise
        return self.best_metrics()

    def summary(self, row: dict[str, Any]) -> str:
        dice = " ".join(
            f"{k[5:]}={v:.3f}" for k, v in row.items() if k.startswith("dice_") and k.endswith("_mean")
        )
        return f"epoch {row['epoch']}/{self.cfg.epochs} {row['epoch_s']:.0f}s {dice}"

    def best_metrics(self) -> dict[str, Any]:
        rows = [r for r in self.history if r["epoch"] == self.best_epoch]
        return {
            "best_epoch": self.best_epoch,
            **({k: v for k, v in rows[0].items() if k.startswith("dice_")} if rows else {}),
        }

    # -- saving ---------------------------------------------------------------------------------
    def write_log(self) -> None:
        fields: list[str] = []
        for row in self.history:
            fields += [k for k in row if k not in fields]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_bytes(self.out_dir / LOG_NAME, buf.getvalue().encode())

    def model_pair(self, metrics: dict[str, float] | None = None):
        """The current networks as a :class:`~napari_medseg.models.pair.ModelPair` with full cards."""
        from napari_medseg.models.pair import ModelPair

        training = {
            **self.card_training,
            "config": self.cfg.to_dict(),
            "epochs_trained": self.epoch,
            "best_epoch": self.best_epoch,
            "device": str(self.device),
            "precision": "bf16" if self.amp else "fp32",
            "world_size": self.dist.world_size,
            "s_per_epoch": self._s_per_epoch(),
        }
        nets = {n: self.nets[n] for n in NET_NAMES if n in self.nets}
        return ModelPair.from_nets(
            nets,
            model_id=self.model_id,
            classes=self.classes,
            patch_size=self.cfg.patch,
            training=training,
            metrics={"val_dice": dict(metrics or {}), "epoch": self.best_epoch},
            parent_model=self.parent_model,
            proposal_weights=(
                {"unetr": self.proposal_weight, "bsnet": 1.0 - self.proposal_weight}
                if len(nets) == 2
                else None
            ),
        )

    def _s_per_epoch(self) -> float | None:
        times = [r["epoch_s"] for r in self.history]
        return round(float(np.mean(times)), 1) if times else None

    def save_model(self, model_dir: str | Path, metrics: dict[str, float] | None = None, dtype=None) -> Path:
        """Write the networks as a ModelPair folder (``pair.json`` + per-net safetensors and cards)."""
        return self.model_pair(metrics).save(model_dir, dtype=dtype)

    def save_checkpoint(self) -> Path:
        """Resumable state in ``<out>/checkpoint/``: nets (ModelPair), optimiser, label state (safetensors)."""
        from safetensors.torch import save_file

        ckpt = self.out_dir / CHECKPOINT_DIR
        self.save_model(ckpt, self.history[-1] if self.history else None)
        tensors, meta = _optimizer_to_flat(self.optimizer, "opt")
        if self.correction is not None:
            tensors["labels.logits"] = self.correction.logits.detach().cpu().contiguous()
            tensors["labels.admitted"] = self.correction.admitted.cpu().to(torch.uint8)
        state = {
            "epoch": self.epoch,
            "best_score": self.best_score if math.isfinite(self.best_score) else None,
            "best_epoch": self.best_epoch,
            "scheduler": self.scheduler.state_dict(),
            "optimizer": meta,
            "curriculum": self.curriculum.state_dict() if self.curriculum else None,
            "history": self.history,
            "config": self.cfg.to_dict(),
            "train_cases": [c.case_id for c in self.train_cases],
        }
        atomic_write_with(ckpt / "trainer_state.safetensors", lambda p: save_file(tensors, str(p)))
        atomic_write_bytes(ckpt / "trainer_state.json", json.dumps(state, indent=1, default=float).encode())
        return ckpt

    def load_checkpoint(self, ckpt: str | Path) -> None:
        """Restore nets, optimiser, scheduler, label state and history saved by :meth:`save_checkpoint`."""
        from safetensors.torch import load_file

        from napari_medseg.models.pair import ModelPair

        ckpt = Path(ckpt)
        if (ckpt / CHECKPOINT_DIR / "trainer_state.json").exists():
            ckpt = ckpt / CHECKPOINT_DIR
        if not (ckpt / "trainer_state.json").exists():
            raise CheckpointError(f"{ckpt} is not a training checkpoint (trainer_state.json not found)")
        state = json.loads((ckpt / "trainer_state.json").read_text())
        if state["train_cases"] != [c.case_id for c in self.train_cases]:
            raise CheckpointError("the checkpoint was trained on other cases; use the same data and split")
        pair = ModelPair.load(ckpt, nets=tuple(self.nets))
        for name, net in self.nets.items():
            net.load_state_dict(pair.nets[name].state_dict())
        tensors = load_file(str(ckpt / "trainer_state.safetensors"))
        _optimizer_from_flat(self.optimizer, tensors, state["optimizer"], "opt", self.device)
        self.scheduler.load_state_dict(state["scheduler"])
        if self.correction is not None and "labels.logits" in tensors:
            with torch.no_grad():
                self.correction.logits.copy_(tensors["labels.logits"].to(self.device))
                self.correction.admitted.copy_(tensors["labels.admitted"].bool().to(self.device))
        if self.curriculum is not None and state.get("curriculum"):
            self.curriculum.load_state_dict(state["curriculum"])
        self.epoch = int(state["epoch"])
        self.best_epoch = int(state["best_epoch"])
        self.best_score = state["best_score"] if state["best_score"] is not None else -math.inf
        self.history = list(state["history"])


def _optimizer_to_flat(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser state into tensors (for safetensors) and JSON (never pickled)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(opt, tensors: dict[str, torch.Tensor], meta: dict, prefix: str, device) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value.to(device) if key != "step" else value
    for name, value in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
