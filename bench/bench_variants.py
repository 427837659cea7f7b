"""Do channels-last 3D, ``torch.compile`` or CUDA graphs pay for the pair's window forward? (issue 10, item 2)

Usage::

    python bench/bench_variants.py [--device cpu] [--batch 1] [--repeat 10] [--threads 2]
    python bench/bench_variants.py --device cuda --batch 16                     # the bundled pair on a GPU
    python bench/bench_variants.py --device cuda --size 1 --hidden 768 --feature 16 --classes 14 --roi 96 \\
        --batch 16                                                               # the issue's UNETR-768 config

What is timed is the engine's window step: both networks on one batch of ``--batch`` windows of the pair's
roi, softmax, concatenated — ``(B, 1, *roi)`` in, ``(B, 2C, *roi)`` out — under the engine's precision
(bf16 autocast where the device computes it natively, else float32) in ``torch.inference_mode``.

Variants:
  eager          the engine as it runs today (reference for speed and outputs)
  channels_last  networks and input in ``torch.channels_last_3d``
  compile        ``torch.compile`` of each network (inductor, default mode); setup = compilation + first call
  cuda_graphs    (CUDA) both networks' forward captured once in a CUDA graph and replayed on a static input

Reported per variant: milliseconds per window (minimum over ``--repeat`` interleaved runs), speed-up against
eager, setup seconds, and how far its output is from eager's (max |Δp|, share of voxels whose argmax agrees
for each network). A variant that cannot run here (no CUDA, no C++ compiler) says why and the others go on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import napari_medseg  # noqa: F401  - the app's OpenMP settings before torch loads

# isort: split
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import build_pair, timed_interleaved  # noqa: E402

from napari_medseg.inference.device import native_bf16, resolve_device  # noqa: E402
from napari_medseg.inference.engine import window_softmax  # noqa: E402

VARIANTS = ("eager", "channels_last", "compile", "cuda_graphs")
Step = Callable[[torch.Tensor], torch.Tensor]


def window_step(nets: list[torch.nn.Module], device: torch.device) -> Step:
    """The engine's own step on one window batch (:func:`~napari_medseg.inference.engine.window_softmax`)."""
    return lambda x: window_softmax(nets, x, device)


def build_variant(name: str, nets: list[torch.nn.Module], x: torch.Tensor, device: torch.device) -> Step:
    """The step of variant ``name`` (built, compiled or captured here; raises when it cannot run)."""
    if name == "eager":
        return window_step(nets, device)
    if name == "channels_last":
        cl = [net.to(memory_format=torch.channels_last_3d) for net in nets]
        step = window_step(cl, device)
        return lambda x: step(x.contiguous(memory_format=torch.channels_last_3d))
    if name == "compile":
        return window_step([torch.compile(net) for net in nets], device)
    if name == "cuda_graphs":
        if device.type != "cuda":
            raise RuntimeError("needs a CUDA device")
        step = window_step(nets, device)
        static_x = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up on a side stream, as CUDA graph capture requires
                step(static_x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = step(static_x)

        def replay(x: torch.Tensor) -> torch.Tensor:
            static_x.copy_(x)
            graph.replay()
            return static_out

        return replay
    raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def compare(out: torch.Tensor, ref: torch.Tensor, n_nets: int) -> dict[str, float]:
    """max |Δp| and per-net argmax agreement of ``out`` against ``ref`` (both ``(B, N*C, *roi)``)."""
    c = ref.shape[1] // n_nets
    agree = [
        float((out[:, k * c : (k + 1) * c].argmax(1) == ref[:, k * c : (k + 1) * c].argmax(1)).float().mean())
        for k in range(n_nets)
    ]
    return {"max_abs_diff": float((out.float() - ref.float()).abs().max()), "argmax_agree_min": min(agree)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the bundled pair)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=1, help="windows per forward")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--size", type=int, default=None, help="any value: random-init nets of the config below")
    p.add_argument("--hidden", type=int, default=None, help="UNETR hidden size (random-init nets)")
    p.add_argument("--feature", type=int, default=None, help="UNETR feature size (random-init nets)")
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--roi", type=int, nargs="+", default=None, help="window (1 or 3 ints; random-init nets)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    if args.model is None and args.size is None:
        from napari_medseg.bundled import default_model_dir

        args.model = default_model_dir()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    pair, origin = build_pair(args)
    nets = [pair.nets["unetr"].eval().to(device), pair.nets["bsnet"].eval().to(device)]
    roi = tuple(int(r) for r in pair.patch_size)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, *roi, device=device)

    steps: dict[str, Step] = {}
    rows: list[dict] = []
    with torch.inference_mode():
        for name in args.variants:
            start = time.perf_counter()
            try:
                step = build_variant(name, nets, x, device)
                out = step(x)  # compilation / capture happen here or above
                if device.type == "cuda":
                    torch.cuda.synchronize()
            except Exception as err:  # noqa: BLE001 - a variant that cannot run here is reported, not fatal
                rows.append(
                    {"variant": name, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"}
                )
                continue
            steps[name] = step
            rows.append({"variant": name, "setup_s": time.perf_counter() - start, "_out": out.clone()})
        timed = timed_interleaved([(lambda s=s: s(x)) for s in steps.values()], args.repeat, device)
    per_window = dict(zip(steps, (t / args.batch for t, _peak in timed), strict=True))
    ref = next((r["_out"] for r in rows if r["variant"] == "eager" and "_out" in r), None)
    for r in rows:
        if "error" in r:
            continue
        r["ms_per_window"] = 1000 * per_window[r["variant"]]
        if "eager" in per_window:
            r["speedup_vs_eager"] = per_window["eager"] / per_window[r["variant"]]
        out = r.pop("_out")
        if ref is not None:
            r.update(compare(out, ref, len(nets)))

    precision = "bf16" if native_bf16(device) else "fp32"
    print(f"# {origin}; roi {roi}, batch {args.batch}, {device} ({precision}), threads {args.threads}")
    print(
        f"{'variant':<14} {'ms/window':>10} {'vs eager':>9} {'setup s':>8} {'max|dp|':>8} {'argmax agree':>12}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:<14} not run: {r['error']}")
            continue
        print(
            f"{r['variant']:<14} {r['ms_per_window']:>10.2f} {r.get('speedup_vs_eager', float('nan')):>8.2f}x "
            f"{r['setup_s']:>8.1f} {r.get('max_abs_diff', float('nan')):>8.4f} "
            f"{r.get('argmax_agree_min', float('nan')):>12.5f}"
        )
    if args.json is not None:
        meta = {
            "origin": origin,
            "roi": roi,
            "batch": args.batch,
            "device": str(device),
            "precision": precision,
        }
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
