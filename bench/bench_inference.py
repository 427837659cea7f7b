"""Inference timings: our engine (UNETR + BS-Net pair + boundary uncertainty) against MONAI's stock
``sliding_window_inference`` with one UNETR of the same config, in one process, same volume/roi/overlap.

Usage::

    # real volumes (hippocampus case + 122x101x112 CT), trained default pair if present:
    python bench/bench_inference.py [--model napari_medseg/resources/models/default] [--threads 2] [--repeat 3]
    # synthetic large-volume mode (meant for a GPU; runs on CPU at small scale):
    python bench/bench_inference.py --size 512 512 256 --hidden 768 --feature 16 --classes 14 --roi 96 --sw-batch 16
    # whole-CT mode: the TotalSegmentator CT DICOM series (512x512x20, 2 mm) resampled to 300 slices,
    # trained bundled pair; on a GPU run it whole, on this CPU the nets on a slab of it:
    python bench/bench_inference.py --ct 300 --device cuda --repeat 3
    python bench/bench_inference.py --ct 300 --crop-slices 48 --repeat 1 --threads 2
    # the post-processing row alone (reference pair map, no networks), per step:
    python bench/bench_inference.py --ct 300 --post-only --repeat 3 --threads 1

Rows per volume:
  engine pair+unc   predict_volume(net="pair"): both nets on each window batch, blending, labels,
                    JSD uncertainty in the boundary band, regions, score (what the viewer runs).
  MONAI swi pair    MONAI sliding_window_inference with a predictor returning both nets' softmax
                    concatenated (the same network work, no uncertainty): measures our window loop.
  MONAI swi UNETR   stock: sliding_window_inference(unetr) + argmax, one network.
  MONAI pair fp32   (CPU, only where the nets run in bf16) MONAI swi pair in float32: what stock MONAI does
                    on a CPU unless told to autocast.
  post-processing   (whole-CT mode) labels, band, uncertainty and regions alone (pair_maps +
                    regions_from_voxels, what the engine runs after the windows), on the whole
                    512x512x300 grid: on the pair's own probabilities when the nets ran on the whole
                    volume, else on a pair map made from TotalSegmentator's reference segmentation of
                    that series (3 classes; net B's labels shifted by one voxel, so the nets disagree
                    along every organ boundary: a worst case for the band and the regions).
Precision: the engine and the MONAI rows use the same one: bf16 autocast where the device computes
bf16 natively (CUDA; CPUs with AVX512-BF16 or AMX; napari_medseg.inference.device.native_bf16), else
float32; --fp32 makes every row float32.
Time = minimum wall seconds over --repeat interleaved runs after one warm-up each. Peak memory = CUDA max allocated, or on
the CPU the peak resident-set increase over the run (sampled every 2 ms).
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np
import psutil

# first: napari_medseg's OpenMP and allocator settings must be in place when torch loads, as in the app
import napari_medseg  # noqa: F401

# isort: split
import torch

from napari_medseg.inference.device import native_bf16

REPO = Path(__file__).resolve().parent.parent


class PeakMemory:
    """Peak memory during a block: CUDA max allocated, or sampled RSS increase on the CPU (bytes)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        proc = psutil.Process()
        self._base = proc.memory_info().rss
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, proc.memory_info().rss - self._base)
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()


def timed_interleaved(
    fns: list, repeat: int, device: torch.device, warmup: bool = True
) -> list[tuple[float, int]]:
    """(min seconds, peak bytes) per function; runs are interleaved (A B C A B C ...) after one warm-up
    each, and the minimum is reported, so load from other processes on a shared machine biases no row."""
    for fn in fns if warmup else []:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    peaks = [0] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            with PeakMemory(device) as mem:
                start = time.perf_counter()
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[i].append(time.perf_counter() - start)
            peaks[i] = max(peaks[i], mem.peak)
    return [(min(t), p) for t, p in zip(times, peaks, strict=True)]


def build_pair(args: argparse.Namespace):
    """The pair to benchmark: a saved model dir, or random-init nets of the requested config."""
    from napari_medseg.models.factory import build_network
    from napari_medseg.models.pair import ModelPair

    if args.size is None and args.model is not None and (args.model / "pair.json").exists():
        return ModelPair.load(args.model), f"trained pair from {args.model}"
    torch.manual_seed(0)
    roi = tuple(args.roi) * (3 // len(args.roi)) if args.roi else (48, 64, 48)
    unetr_cfg = {"img_size": roi, "out_channels": args.classes}
    if args.hidden:
        unetr_cfg.update(
            hidden_size=args.hidden, mlp_dim=4 * args.hidden, num_heads=12 if args.hidden % 12 == 0 else 4
        )
    if args.feature:
        unetr_cfg["feature_size"] = args.feature
    nets = {
        "unetr": build_network("unetr", unetr_cfg),
        "bsnet": build_network("bsnet", {"out_channels": args.classes}),
    }
    classes = {i: f"class{i}" for i in range(args.classes)}
    return ModelPair.from_nets(
        nets, "bench-random", classes=classes, patch_size=roi
    ), "random-init pair " + str(unetr_cfg)


def ct_volume(data: Path, slices: int):
    """The TotalSegmentator CT series (512x512x20, 0.98x0.98x2 mm) resampled linearly to ``slices`` slices.

    Same extent and in-plane grid; the slice spacing becomes ``2 * 19 / (slices - 1)`` mm.
    """
    from scipy import ndimage

    from napari_medseg.io import load_volume
    from napari_medseg.io.volume import Volume

    src = load_volume(data / "totalseg-examples" / "ct_dicom")
    n = src.shape[2]
    z = np.linspace(0, n - 1, slices)
    grid = np.meshgrid(np.arange(src.shape[0]), np.arange(src.shape[1]), z, indexing="ij", sparse=True)
    arr = np.empty((*src.shape[:2], slices), dtype=np.int16)
    for k in range(slices):  # one slice at a time keeps the memory at a few slices
        coords = [
            np.broadcast_to(g, (*src.shape[:2], 1)) for g in (grid[0], grid[1], grid[2][:, :, k : k + 1])
        ]
        arr[:, :, k] = ndimage.map_coordinates(src.array, coords, order=1)[:, :, 0]
    affine = src.affine.copy()
    affine[:3, 2] *= (n - 1) / (slices - 1)
    return Volume(arr, affine, modality="CT")


def reference_pair_probs(data: Path, slices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A pair map ``(3, 512, 512, slices)`` x 2 from TotalSegmentator's segmentation of the CT series.

    Classes: 0 background, 1 odd structure ids, 2 even ones; softmax of 4 x one-hot. Net B's labels are
    shifted by one voxel along the first axis, so the two disagree along every organ boundary.
    """
    import nibabel as nib

    seg = np.asarray(nib.load(data / "totalseg-examples" / "example_seg_dicom.nii.gz").dataobj)
    z = np.minimum(np.round(np.linspace(0, seg.shape[2] - 1, slices)).astype(int), seg.shape[2] - 1)
    seg = seg[:, :, z]
    cls = np.zeros(seg.shape, np.uint8)
    cls[seg > 0] = 1
    cls[(seg > 0) & (seg % 2 == 0)] = 2

    def probs(lab: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(lab)
        return torch.softmax(torch.stack([(t == c).float() * 4 for c in range(3)]), 0)

    return probs(cls), probs(np.roll(cls, 1, axis=0))


def postprocess(p_a: torch.Tensor, p_b: torch.Tensor, affine: np.ndarray) -> int:
    """What the engine does after the windows: labels, band, uncertainty, regions; returns the region count."""
    return post_steps(p_a, p_b, affine)[1]


def post_steps(p_a: torch.Tensor, p_b: torch.Tensor, affine: np.ndarray) -> tuple[dict[str, float], int]:
    """:func:`postprocess` with the wall seconds of its two steps (``pair_maps``: labels, band and
    uncertainty with the uncertain voxels picked out; ``regions``) and the region count."""
    from napari_medseg.inference.regions import DEFAULT_THRESHOLD, regions_from_voxels
    from napari_medseg.inference.uncertainty import pair_maps

    sync = torch.cuda.synchronize if p_a.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        t0 = time.perf_counter()
        maps = pair_maps(p_a, p_b, dtype=torch.float16)
        shown = maps.band_values.to(torch.float16).float()
        keep = shown >= DEFAULT_THRESHOLD
        index, values = maps.band_index[keep].cpu().numpy(), shown[keep].cpu().numpy()
        sync()
        t1 = time.perf_counter()
        regions = regions_from_voxels(tuple(maps.labels.shape), index, values, affine)
        maps.labels.cpu(), maps.uncertainty.cpu(), maps.band.cpu()  # what the viewer receives
        sync()
        t2 = time.perf_counter()
    return {"pair_maps": t1 - t0, "regions": t2 - t1, "total": t2 - t0}, len(regions)


def post_only(args: argparse.Namespace, device: torch.device) -> None:
    """Print the post-processing row alone (no networks): best of ``--repeat`` runs after a warm-up, per step,
    on the TotalSegmentator reference pair map of ``--ct`` slices."""
    p_a, p_b = (p.to(device) for p in reference_pair_probs(args.data, args.ct))
    affine = ct_volume(args.data, args.ct).affine
    post_steps(p_a, p_b, affine)  # warm-up
    runs = [post_steps(p_a, p_b, affine) for _ in range(args.repeat)]
    best = {k: min(r[0][k] for r in runs) for k in runs[0][0]}
    shape = "x".join(map(str, p_a.shape[1:]))
    print(f"# post-processing only; device {device}; torch threads {args.threads}; best of {args.repeat}")
    print(
        f"CT {shape} post-processing (TotalSegmentator reference pair map, {runs[-1][1]} regions): "
        + ", ".join(f"{k} {v:.3f} s" for k, v in best.items())
    )


def run_volume(name: str, volume, pair, args: argparse.Namespace, device: torch.device) -> list[tuple]:
    from monai.inferers import sliding_window_inference

    from napari_medseg.inference.engine import predict_volume, window_grid

    roi = pair.patch_size
    unetr, bsnet = pair.nets["unetr"].eval().to(device), pair.nets["bsnet"].eval().to(device)
    x = torch.from_numpy(pair.preprocess(volume.array))[None, None].to(device)
    sw = args.sw_batch or 1
    amp = args.amp and native_bf16(device)
    n_windows = len(window_grid(volume.shape, roi, args.overlap)[2])

    post: list[float] = []

    def engine() -> None:
        pred = predict_volume(
            volume,
            pair,
            device=device,
            overlap=args.overlap,
            sw_batch_size=args.sw_batch,
            keep_probs=False,
            amp=args.amp,
        )
        post.append(pred.timings["uncertainty"] + pred.timings["regions"])

    def both(p: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.softmax(unetr(p).float(), 1), torch.softmax(bsnet(p).float(), 1)], 1)

    def monai_pair(enabled: bool = amp) -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
            sliding_window_inference(x, roi, sw, both, overlap=args.overlap, mode="gaussian").argmax(1).cpu()

    def monai_unetr() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            sliding_window_inference(x, roi, sw, unetr, overlap=args.overlap, mode="gaussian").argmax(1).cpu()

    labels = ["engine pair+unc", "MONAI swi pair", "MONAI swi UNETR"]
    runs = [engine, monai_pair, monai_unetr]
    if amp and device.type == "cpu":  # stock MONAI on a CPU runs float32; on CUDA users autocast too
        labels.append("MONAI pair fp32")
        runs.append(lambda: monai_pair(False))
    results = timed_interleaved(runs, args.repeat, device, args.warmup)
    t_ref = results[2][0]
    rows = [(name, label, n_windows, t, t / t_ref, m) for label, (t, m) in zip(labels, results, strict=True)]
    rows.append((name, "  of which post", n_windows, min(post), min(post) / t_ref, 0))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument(
        "--sw-batch", type=int, default=None, help="windows per batch (default: engine's choice)"
    )
    parser.add_argument(
        "--only", choices=("hippo", "ct"), default=None, help="run one of the two real volumes"
    )
    parser.add_argument("--size", type=int, nargs=3, default=None, help="synthetic volume I J K (GPU mode)")
    parser.add_argument("--hidden", type=int, default=None, help="UNETR hidden size (synthetic mode)")
    parser.add_argument("--feature", type=int, default=None, help="UNETR feature size (synthetic mode)")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument(
        "--ct",
        type=int,
        default=None,
        metavar="SLICES",
        help="whole-CT mode: the CT series resampled to SLICES",
    )
    parser.add_argument(
        "--crop-slices", type=int, default=None, help="whole-CT mode: run the nets on the first N slices only"
    )
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the warm-up runs")
    parser.add_argument(
        "--fp32", dest="amp", action="store_false", help="float32 everywhere (default: bf16 where native)"
    )
    parser.add_argument(
        "--post-only",
        action="store_true",
        help="whole-CT mode: only the post-processing row, on the reference pair map (no networks)",
    )
    parser.add_argument(
        "--roi", type=int, nargs="+", default=None, help="window size (1 or 3 ints, synthetic mode)"
    )
    args = parser.parse_args()
    if args.model is None:  # the bundled model of the installed package
        from napari_medseg.bundled import default_model_dir

        args.model = default_model_dir()

    from napari_medseg.inference.device import resolve_device
    from napari_medseg.io import load_volume
    from napari_medseg.io.volume import Volume

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.post_only:
        if args.ct is None:
            parser.error("--post-only needs --ct SLICES")
        post_only(args, device)
        return
    pair, what = build_pair(args)
    post_rows = []
    if args.ct is not None:
        ct = ct_volume(args.data, args.ct)
        if args.crop_slices:
            crop = Volume(np.ascontiguousarray(ct.array[:, :, : args.crop_slices]), ct.affine, modality="CT")
            vols = [(f"CT {'x'.join(map(str, crop.shape))} (slab of {args.ct})", crop)]
        else:
            vols = [(f"CT {'x'.join(map(str, ct.shape))}", ct)]
        if args.crop_slices:
            p_a, p_b = reference_pair_probs(args.data, args.ct)
            source = "TotalSegmentator reference pair map"
        else:
            from napari_medseg.inference.engine import sliding_window_probs

            image = torch.from_numpy(pair.preprocess(ct.array))[None, None]
            nets = [pair.nets["unetr"], pair.nets["bsnet"]]
            probs, _ = sliding_window_probs(
                image, nets, pair.patch_size, args.overlap, device, args.sw_batch, args.amp
            )
            c = probs.shape[0] // 2
            p_a, p_b = probs[:c], probs[c:]
            source = "the pair's own probabilities"
        p_a, p_b = p_a.to(device), p_b.to(device)
        counts: list[int] = []
        ((t_post, _m),) = timed_interleaved(
            [lambda: counts.append(postprocess(p_a, p_b, ct.affine))], args.repeat, device
        )
        post_rows.append(
            (
                f"CT {'x'.join(map(str, ct.shape))}",
                f"post-processing ({source}, {counts[-1]} regions)",
                t_post,
            )
        )
        del p_a, p_b
    elif args.size is not None:
        rng = np.random.default_rng(0)
        vols = [
            (
                f"synthetic {'x'.join(map(str, args.size))}",
                Volume(rng.normal(size=args.size).astype(np.float32), np.eye(4)),
            )
        ]
    else:
        vols = [
            ("hippocampus_001", load_volume(args.data / "msd-hippocampus/imagesTr/hippocampus_001.nii.gz")),
            ("CT 122x101x112", load_volume(args.data / "totalseg-examples/example_ct.nii.gz")),
        ]
        if args.only is not None:
            vols = vols[:1] if args.only == "hippo" else vols[1:]
    precision = "bf16" if args.amp and native_bf16(device) else "fp32"
    print(
        f"# {what}; roi {pair.patch_size}; overlap {args.overlap}; device {device}; torch threads {args.threads}; "
        f"precision {precision}"
    )
    print(f"{'volume':<24} {'method':<16} {'windows':>7} {'time s':>8} {'vs stock':>8} {'peak MiB':>9}")
    for name, vol in vols:
        for row in run_volume(name, vol, pair, args, device):
            n, label, nw, t, ratio, mem = row
            print(f"{n:<24} {label:<16} {nw:>7} {t:>8.3f} {ratio:>8.2f} {mem / 2**20:>9.1f}")
    for n, label, t in post_rows:
        print(f"{n:<24} {label} {t:.3f} s")


if __name__ == "__main__":
    main()
