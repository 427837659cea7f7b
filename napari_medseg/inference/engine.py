"""Sliding-window inference of the model pair on one volume, with the pair uncertainty.

Pipeline of :func:`predict_volume`::

    Volume.array (I, J, K) ──pair.preprocess──▶ float32 (I, J, K)
      ──pad to ≥ roi (zeros, centred)──▶ windows of size roi, stride roi * (1 - overlap)
      ──each batch of windows (b, 1, *roi) goes through every net in one pass──▶
        softmax, concatenated over nets (b, N*C, *roi), Gaussian-weighted, accumulated
      ──divide by the weight sum, crop the padding──▶ probs per net (C, I, J, K)
      ──▶ labels = argmax(mean probs) ; uncertainty = disagreement × boundary band ; score
          (uncertainty.pair_maps: torch ops on the device holding the probabilities, only in blocks
          near a voxel that is not confidently background)
      ──▶ regions from the uncertain voxels alone (regions.regions_from_voxels: labelled on the
          bounding boxes of coarse groups of them, never on the whole volume)

The networks work directly in the Volume's own voxel order, so the outputs lie on the source grid
with no resampling. Batches run under ``torch.inference_mode`` and, where the device computes bf16
natively (CUDA; CPUs with AVX512-BF16 or AMX: :func:`~napari_medseg.inference.device.native_bf16`), bf16
autocast; the blending and everything after it stay float32. On a CPU with several torch threads the
batches run side by side on as many Python threads, one torch thread each
(:mod:`~napari_medseg.inference.cpu_threads`), and are blended in window order. The cancel token is checked
and the progress callback called between batches (on the CPU the batches already running finish). A
CUDA out-of-memory error halves the batch and retries; at batch size 1 the networks move to the CPU.
Each fallback adds a message.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from torch import nn

from napari_medseg.errors import InputError
from napari_medseg.inference.cancel import CancelToken
from napari_medseg.inference.cpu_threads import Workers, python_threads
from napari_medseg.inference.device import free_memory_bytes, native_bf16, resolve_device
from napari_medseg.inference.prediction import Prediction
from napari_medseg.inference.regions import (
    DEFAULT_MIN_SIZE,
    DEFAULT_THRESHOLD,
    find_regions,
    regions_from_voxels,
)
from napari_medseg.inference.uncertainty import (
    DEFAULT_BAND_RADIUS,
    DEFAULT_METHOD,
    PAIR_METHODS,
    case_score,
    class_argmax,
    pair_maps,
    single_uncertainty,
)
from napari_medseg.models.preprocessing import as_tensor

if TYPE_CHECKING:
    from napari_medseg.io.volume import Volume
    from napari_medseg.models.pair import ModelPair

ProgressFn = Callable[[int, int], None]
WarnFn = Callable[[str], None]

#: Networks of the pair, in the order (A, B) used for the uncertainty.
PAIR_NETS = ("unetr", "bsnet")
#: Windows per batch on the CPU. Measured on the CT example (default pair, 60 windows, quiet 2-core machine,
#: bench/RESULTS.md issue 10 session 4): batch 1 took 26.5-27.5 s with 2 threads and 37.7 s with 1, batch 4
#: 28.0-32.7 s and 43.4 s; bigger batches only grow the activations (an older figure favouring 4 was taken
#: under heavy load).
CPU_BATCH = 1
#: Upper bound of the automatic CUDA batch size.
MAX_AUTO_BATCH = 32
#: Share of free CUDA memory the automatic batch size may use.
CUDA_MEMORY_SHARE = 0.6


def _is_oom(err: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(err, oom_type):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def window_grid(
    shape: Sequence[int], roi: Sequence[int], overlap: float
) -> tuple[tuple[int, ...], list[tuple[int, int]], list[tuple[slice, ...]]]:
    """Padded shape, padding per axis (before, after) and the window slices (MONAI's scan rule).

    A dimension smaller than the roi is zero-padded (centred) up to the roi; the stride along an axis
    is ``int(roi * (1 - overlap))`` (at least 1), or the roi itself where the padded size equals it.
    """
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"overlap must be in [0, 1), got {overlap}")
    padded = tuple(max(int(s), int(r)) for s, r in zip(shape, roi, strict=True))
    pads = [((p - s) // 2, p - s - (p - s) // 2) for p, s in zip(padded, shape, strict=True)]
    interval = [r if r == p else max(1, int(r * (1 - overlap))) for r, p in zip(roi, padded, strict=True)]
    slices = dense_patch_slices(padded, tuple(roi), interval, return_slice=True)
    return padded, pads, [tuple(s) for s in slices]


def auto_batch_size(device: torch.device, bytes_per_window: int | None, n_windows: int) -> int:
    """Windows per batch: :data:`CPU_BATCH` off CUDA; on CUDA as many as fit in the free memory."""
    if device.type != "cuda" or bytes_per_window is None:
        return max(1, min(CPU_BATCH, n_windows))
    free = free_memory_bytes(device) or 0
    fit = int(CUDA_MEMORY_SHARE * free // max(bytes_per_window, 1))
    return max(1, min(MAX_AUTO_BATCH, n_windows, fit))


def _accumulator_device(device: torch.device, nbytes: int) -> torch.device:
    """Where to blend: on the compute device, unless that is CUDA and ``nbytes`` exceeds half its free memory."""
    if device.type == "cuda" and nbytes > 0.5 * (free_memory_bytes(device) or 0):
        return torch.device("cpu")
    return device


def sliding_window_probs(
    image: torch.Tensor,
    nets: Sequence[nn.Module],
    roi: Sequence[int],
    overlap: float = 0.5,
    device: str | torch.device = "cpu",
    sw_batch_size: int | None = None,
    amp: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    warn: WarnFn | None = None,
) -> tuple[torch.Tensor, torch.device]:
    """Run every net on the same windows of ``image`` and blend their softmax outputs.

    Args:
        image: preprocessed volume ``(1, 1, I, J, K)`` float32 (any device).
        nets: networks with ``forward((B, 1, *roi)) -> logits (B, C, *roi)``; all must output the same C.
        roi: window size ``(ri, rj, rk)`` in voxels (what the nets were built for).
        overlap: fraction of a window shared with its neighbour along each axis, in ``[0, 1)``.
        device: torch device to run the nets on (they are moved there).
        sw_batch_size: windows per forward pass; ``None`` = from free memory (:func:`auto_batch_size`).
        amp: bf16 autocast where the device computes it natively (:func:`native_bf16`); False = float32.
        progress: called as ``progress(done_windows, total_windows)`` after each batch.
        cancel: checked before each batch; raises :class:`~napari_medseg.errors.Cancelled`.
        warn: receives one-sentence messages about fallbacks (OOM).

    Returns:
        ``(probs, device)``: float32 ``(N * C, I, J, K)`` — net ``n``'s probabilities are channels
        ``n*C:(n+1)*C`` — on the device the accumulation ended on, and the device the nets ended on.
    """
    device = torch.device(device)
    shape = tuple(int(s) for s in image.shape[2:])
    roi = tuple(int(r) for r in roi)
    padded, pads, slices = window_grid(shape, roi, overlap)
    n_windows = len(slices)
    warn = warn or (lambda _msg: None)
    for net in nets:
        net.eval().to(device)

    x = image.to(device=device, dtype=torch.float32)
    if padded != shape:
        flat = [v for pair in reversed(pads) for v in pair]  # F.pad wants the last axis first
        x = torch.nn.functional.pad(x, flat)
    single = n_windows == 1
    weight = None if single else compute_importance_map(roi, "gaussian", 0.125, device=device)

    acc: torch.Tensor | None = None
    wsum: torch.Tensor | None = None
    batch = sw_batch_size or 1  # auto mode probes memory with one window first
    probe = sw_batch_size is None and device.type == "cuda"
    if sw_batch_size is None and not probe:
        batch = auto_batch_size(device, None, n_windows)

    def to_device(new: torch.device) -> None:
        nonlocal x, weight, acc, wsum, device
        device = new
        for net in nets:
            net.to(device)
        x = x.to(device)
        weight = None if weight is None else weight.to(device)
        acc = None if acc is None else acc.to(device)
        wsum = None if wsum is None else wsum.to(device)

    def forward(chunk: list[tuple[slice, ...]]) -> torch.Tensor:
        """Softmax of every net on the windows ``chunk``, concatenated over nets ``(b, N*C, *roi)``."""
        patches = torch.cat([x[(slice(None), slice(None), *sl)] for sl in chunk], 0)
        return window_softmax(nets, patches, device, amp)

    def blend(chunk: list[tuple[slice, ...]], out: torch.Tensor) -> None:
        """Add the Gaussian-weighted outputs of ``chunk`` to the accumulators (made on first use)."""
        nonlocal acc, wsum
        if acc is None:
            if single:
                acc = out[0]
                return
            acc_device = _accumulator_device(device, (out.shape[1] + 1) * math.prod(padded) * 4)
            if acc_device != device:
                warn("the volume's probabilities do not fit in GPU memory: blending them on the CPU")
            acc = torch.zeros((out.shape[1], *padded), dtype=torch.float32, device=acc_device)
            wsum = torch.zeros((1, *padded), dtype=torch.float32, device=acc_device)
        if single:
            return
        out = out.to(acc.device)
        w = weight.to(acc.device)
        for k, sl in enumerate(chunk):
            acc[(slice(None), *sl)].addcmul_(out[k], w)
            wsum[(slice(None), *sl)].add_(w)

    done = 0
    chunks = [slices[i : i + batch] for i in range(0, n_windows, batch)]
    with torch.inference_mode(), python_threads(device, len(chunks)) as workers:
        if workers is not None:  # CPU: windows side by side on Python threads, blended here in order
            done, oom = _threaded_windows(workers, chunks, forward, blend, n_windows, progress, cancel)
            if oom is not None:  # the rest in the loop below, as there: smaller batches, then give up
                if batch == 1:
                    raise _too_large() from oom
                batch = max(1, batch // 2)
                warn(f"out of memory on {device.type}: retrying with {batch} window(s) per batch")
        while done < n_windows:
            if cancel is not None:
                cancel.check()
            chunk = slices[done : done + batch]
            try:
                if probe:
                    torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device)
                out = forward(chunk)
                if probe:  # memory of one window's forward pass, before the accumulators exist
                    per_window = max(torch.cuda.max_memory_allocated(device) - base, 1)
                blend(chunk, out)
                del out
            except Exception as err:  # noqa: BLE001 - only OOM is handled, anything else re-raised
                if not _is_oom(err):
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                probe = False
                if batch > 1:
                    batch = max(1, batch // 2)
                    warn(f"out of memory on {device.type}: retrying with {batch} window(s) per batch")
                    continue
                if device.type != "cpu":
                    warn(
                        f"out of memory on {device.type} even with one window per batch: continuing on the CPU"
                    )
                    to_device(torch.device("cpu"))
                    continue
                raise _too_large() from err
            if probe:
                batch = auto_batch_size(device, per_window, n_windows)
                probe = False
            done += len(chunk)
            if progress is not None:
                progress(done, n_windows)

        assert acc is not None
        if not single:
            acc /= wsum
        crop = tuple(slice(b, b + s) for (b, _a), s in zip(pads, shape, strict=True))
        return acc[(slice(None), *crop)], device


def window_softmax(
    nets: Sequence[nn.Module], patches: torch.Tensor, device: torch.device, amp: bool = True
) -> torch.Tensor:
    """The engine's step on one batch of windows: every net's softmax, concatenated over nets.

    Args:
        patches: ``(B, 1, *roi)`` on ``device``.
        amp: bf16 autocast where ``device`` computes it natively (:func:`native_bf16`).

    Returns:
        float32 ``(B, N*C, *roi)``: net ``n``'s probabilities are channels ``n*C:(n+1)*C``.
    """
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and native_bf16(device)):
        return torch.cat([torch.softmax(net(patches).float(), 1) for net in nets], 1)


def _too_large() -> InputError:
    return InputError(
        "the volume is too large for the available memory; try a smaller crop or a machine with more RAM"
    )


def _threaded_windows(
    workers: Workers,
    chunks: list[list[tuple[slice, ...]]],
    forward: Callable[[list[tuple[slice, ...]]], torch.Tensor],
    blend: Callable[[list[tuple[slice, ...]], torch.Tensor], None],
    n_windows: int,
    progress: ProgressFn | None,
    cancel: CancelToken | None,
) -> tuple[int, BaseException | None]:
    """Run ``forward`` on the chunks of windows on ``workers`` and ``blend`` each result in window order.

    Returns ``(windows blended, None)``, or, when a chunk ran out of memory, the windows blended before
    it and the error (the chunks after it are dropped).

    One chunk per worker is in flight; the next starts as soon as the oldest is blended, so memory stays
    at a few windows' outputs. The cancel token is checked before the first chunk and after each blended
    one: on cancel the chunks already running finish (one per worker, a fraction of a second) and no
    other starts.
    """
    pending: deque[tuple[list[tuple[slice, ...]], Future[torch.Tensor]]] = deque()
    todo = iter(chunks)
    done = 0
    if cancel is not None:
        cancel.check()
    try:
        for chunk in islice(todo, workers.count):
            pending.append((chunk, workers.submit(forward, chunk)))
        while pending:
            chunk, future = pending.popleft()
            try:
                out = future.result()
            except Exception as err:  # noqa: BLE001 - only OOM is handed back, anything else re-raised
                if _is_oom(err):
                    return done, err
                raise
            blend(chunk, out)
            del out
            done += len(chunk)
            if progress is not None:
                progress(done, n_windows)
            if cancel is not None:
                cancel.check()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, workers.submit(forward, nxt)))
        return done, None
    finally:
        for _chunk, future in pending:  # the running ones end before the workers' pool closes
            future.cancel()


def _resolve_nets(
    pair: ModelPair | nn.Module, net: str, roi: Sequence[int] | None
) -> tuple[
    list[str], list[nn.Module], tuple[int, ...], Callable[[torch.Tensor], torch.Tensor], dict[str, Any]
]:
    """Names, modules, roi, preprocessing and provenance for ``pair`` (a ModelPair or one bare net)."""
    if isinstance(pair, nn.Module):
        if roi is None:
            raise InputError("a bare network needs a roi (window size) to run the sliding window")
        name = net if net not in ("pair",) else "net"
        return [name], [pair], tuple(roi), (lambda x: x.to(torch.float32)), {}
    available = dict(pair.nets)
    names = list(PAIR_NETS) if net == "pair" else [net]
    missing = [n for n in names if n not in available]
    if missing:
        raise InputError(
            f"the model has no {' or '.join(missing)} network (it has {', '.join(sorted(available)) or 'none'})"
        )
    win = tuple(int(r) for r in (roi or pair.patch_size))
    try:
        digest = str(pair.checkpoint_hash)
    except Exception:  # noqa: BLE001 - an unsaved pair has no checkpoint hash yet
        digest = ""
    prov = {"model_id": str(getattr(pair, "model_id", "")), "checkpoint_hash": digest}
    return names, [available[n] for n in names], win, pair.preprocess_tensor, prov


def _preprocess_on(
    device: torch.device, array: np.ndarray, preprocess: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The raw volume ``(I, J, K)`` normalised on ``device`` (float32; the GPU receives the raw
    voxels, e.g. int16, and normalises them itself; the CPU as a fallback when it has no room).

    Raises:
        InputError: non-finite values (before or after normalisation).
    """
    raw = as_tensor(array)
    x = None
    if device.type != "cpu":
        try:
            x = preprocess(raw.to(device))
        except torch.OutOfMemoryError:
            x = None
    if x is None:
        x = preprocess(raw)
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise InputError("the image contains NaN or infinite values after preprocessing")
    return x


def predict_volume(
    volume: Volume,
    pair: ModelPair | nn.Module,
    net: str = "pair",
    device: str | torch.device = "auto",
    overlap: float = 0.5,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    *,
    sw_batch_size: int | None = None,
    amp: bool = True,
    roi: Sequence[int] | None = None,
    method: str = DEFAULT_METHOD,
    band_radius: int = DEFAULT_BAND_RADIUS,
    region_threshold: float = DEFAULT_THRESHOLD,
    region_min_size: int = DEFAULT_MIN_SIZE,
    keep_probs: bool = True,
    warn: WarnFn | None = None,
) -> Prediction:
    """Proposal labels, boundary uncertainty and ranked regions for ``volume``.

    Args:
        volume: the image; its array ``(I, J, K)`` is used in its own voxel order.
        pair: a :class:`~napari_medseg.models.pair.ModelPair`, or one ``nn.Module`` (then ``roi`` is
            required and the array is fed as is, cast to float32).
        net: ``"pair"`` (A = UNETR and B = BS-Net, mean probabilities, JSD uncertainty), ``"unetr"`` or
            ``"bsnet"`` (that net alone, softmax-entropy uncertainty).
        device: ``"auto"`` (cuda → mps → cpu), ``"cpu"``, ``"cuda"``, ``"mps"``.
        overlap: sliding-window overlap in ``[0, 1)``.
        progress: ``progress(done_windows, total_windows)`` after each batch.
        cancel: :class:`CancelToken` checked between batches (raises ``Cancelled``).
        sw_batch_size: windows per batch (``None`` = chosen from free memory).
        amp: bf16 autocast where the device computes it natively (CUDA; CPUs with AVX512-BF16 or
            AMX); False = float32 everywhere. ``Prediction.precision`` says which ran.
        roi: window size; default the pair's ``patch_size``.
        method: pair disagreement measure (see :mod:`napari_medseg.inference.uncertainty`).
        band_radius: boundary band half-width in voxels.
        region_threshold, region_min_size: see :func:`~napari_medseg.inference.regions.find_regions`.
        keep_probs: keep float16 probabilities per net in ``Prediction.probs``.
        warn: also receives each message added to ``Prediction.messages``.

    Returns:
        A :class:`Prediction` on the volume's grid.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    messages: list[str] = []

    def _warn(msg: str) -> None:
        messages.append(msg)
        if warn is not None:
            warn(msg)

    if method not in PAIR_METHODS:
        raise InputError(f"unknown uncertainty method {method!r}; choose one of {', '.join(PAIR_METHODS)}")
    names, modules, win, preprocess, prov = _resolve_nets(pair, net, roi)
    dev = resolve_device(device)
    image = _preprocess_on(dev, volume.array, preprocess)[None, None]
    timings["preprocess"] = time.perf_counter() - t0

    t = time.perf_counter()
    probs, final_device = sliding_window_probs(
        image, modules, win, overlap, dev, sw_batch_size, amp, progress, cancel, _warn
    )
    timings["windows"] = time.perf_counter() - t

    t = time.perf_counter()
    n_classes = probs.shape[0] // len(modules)
    per_net = {n: probs[k * n_classes : (k + 1) * n_classes] for k, n in enumerate(names)}
    shape = tuple(int(s) for s in probs.shape[1:])
    with torch.inference_mode():
        if len(names) == 2:
            w = getattr(pair, "proposal_weights", None) or {}  # the card's pick; else equal
            w_a = w.get(names[0], 0.5) / max(w.get(names[0], 0.5) + w.get(names[1], 0.5), 1e-9)
            maps = pair_maps(
                per_net[names[0]], per_net[names[1]], band_radius, method, dtype=torch.float16, weight_a=w_a
            )
            labels_t, unc_t, band_t, score = maps.labels, maps.uncertainty, maps.band, maps.score
            # regions see the map as displayed (float16), as the viewer's own Next region does
            shown = maps.band_values.to(torch.float16).float()
            keep = shown >= region_threshold
            uncertain = (maps.band_index[keep].cpu().numpy(), shown[keep].cpu().numpy())
            used_method = method
        else:
            p = per_net[names[0]]
            labels_t = class_argmax(p, torch.uint8 if p.shape[0] <= 256 else torch.int32)
            unc_t, band_t = single_uncertainty(p, band_radius)
            score = case_score(unc_t, labels_t)
            unc_t = unc_t.to(torch.float16)
            uncertain = None
            used_method = "entropy"
        labels = labels_t.to(torch.uint8).cpu().numpy()
        uncertainty = unc_t.cpu().numpy()
        band = band_t.cpu().numpy()
        kept = {n: p.to(torch.float16).cpu().numpy() for n, p in per_net.items()} if keep_probs else {}
    del probs, per_net
    timings["uncertainty"] = time.perf_counter() - t

    t = time.perf_counter()
    if uncertain is None:
        regions = find_regions(uncertainty, volume.affine, region_threshold, region_min_size)
    else:
        regions = regions_from_voxels(shape, *uncertain, volume.affine, region_min_size)  # type: ignore[arg-type]
    timings["regions"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    if math.isnan(score):
        score = 0.0
    return Prediction(
        labels=labels,
        uncertainty=uncertainty,
        band=band,
        regions=regions,
        score=score,
        probs=kept,
        model_id=prov.get("model_id", ""),
        checkpoint_hash=prov.get("checkpoint_hash", ""),
        net=net if net != "pair" or len(names) == 2 else names[0],
        method=used_method,
        device=str(final_device),
        precision="bf16" if amp and native_bf16(final_device) else "fp32",
        messages=messages,
        timings=timings,
    )
