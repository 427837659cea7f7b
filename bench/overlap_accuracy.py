"""Sliding-window overlap 0.25 or 0.5: what does the cheaper overlap cost in accuracy, with labels?

Every hippocampus case fits in one window of the bundled pair, so overlap changes nothing there, and
the CT examples have no labels of this model's classes. This bench builds labelled volumes larger than
a window: *mosaics* of validation cases. Each case is z-scored on its own (as the nets saw it in
training), cropped around its label's centre or edge-padded to one common cell shape, and 3x3x3 cells
are tiled into one volume (so window seams fall across and between structures at many positions).
Each mosaic goes through the product's own ``predict_volume`` at every overlap; the proposal's Dice is
then read cell by cell against the cell's reference label. The same cells run alone (one window, the
nets' native setting) give the reference row; placed at the corner of their window instead of its
centre, they show how much of a mosaic's loss is only the anatomy's position in the window.

Usage::

    python bench/overlap_accuracy.py [--model DIR] [--mosaics 3] [--overlaps 0.25 0.5] [--threads 2]
                                     [--case-ids FILE] [--net pair|unetr|bsnet]
                                     [--out bench/results/overlap_accuracy.json]

``--whole`` runs each case whole instead, as a user opens it, at every overlap (for models whose cases are
larger than their window, e.g. a CT model trained on random crops): Dice against the case's label, seconds
per volume, and each case's Dice difference to the largest overlap given.

Cases: the validation split recorded in the model's card (the bundled pair's: 40 cases), or the ids in
``--case-ids``. A model of one network (e.g. a ``pair_vs_single`` arm) runs that network alone; ``--net``
runs one network of a pair alone. Mosaic ``m`` takes 27 of them in a seeded random order, so a case sits
at different positions in different mosaics.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
GRID = (3, 3, 3)


def fit_cell(
    image: np.ndarray, label: np.ndarray, cell: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(image, label)`` cropped around the label's bounding-box centre or edge-padded to ``cell``.

    Args:
        image: float32 ``(I, J, K)``, already normalised; label: int ``(I, J, K)``.
        cell: target shape.
    Returns:
        Both arrays of shape ``cell`` (padding repeats the border image values; padded labels are 0).
    """
    fg = np.argwhere(label > 0)
    centre = (fg.min(0) + fg.max(0)) // 2 if len(fg) else np.array(label.shape) // 2
    for axis, want in enumerate(cell):
        size = image.shape[axis]
        if size > want:
            start = int(np.clip(centre[axis] - want // 2, 0, size - want))
            image = np.take(image, range(start, start + want), axis=axis)
            label = np.take(label, range(start, start + want), axis=axis)
        elif size < want:
            before = (want - size) // 2
            pad = [(0, 0)] * 3
            pad[axis] = (before, want - size - before)
            image = np.pad(image, pad, mode="edge")
            label = np.pad(label, pad, mode="constant")
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(label)


def tile(cells: list[np.ndarray], cell: tuple[int, int, int]) -> np.ndarray:
    """Cells (each ``cell``-shaped) in C order on the :data:`GRID` of cells, one volume."""
    out = np.empty(tuple(g * c for g, c in zip(GRID, cell, strict=True)), dtype=cells[0].dtype)
    for n, arr in enumerate(cells):
        i, j, k = np.unravel_index(n, GRID)
        out[
            i * cell[0] : (i + 1) * cell[0], j * cell[1] : (j + 1) * cell[1], k * cell[2] : (k + 1) * cell[2]
        ] = arr
    return out


def cell_of(volume: np.ndarray, n: int, cell: tuple[int, int, int]) -> np.ndarray:
    """Cell ``n`` (C order on the grid) of a tiled volume."""
    i, j, k = np.unravel_index(n, GRID)
    return volume[
        i * cell[0] : (i + 1) * cell[0], j * cell[1] : (j + 1) * cell[1], k * cell[2] : (k + 1) * cell[2]
    ]


def summary_row(
    key: str,
    per: np.ndarray,
    diff: np.ndarray,
    names: list[str],
    ref: str,
    windows: float,
    seconds: list[float],
) -> dict:
    """One setting's summary (``per``: Dice ``(n, classes)``; ``diff``: each row's mean Dice minus its
    reference ``ref``'s), printed as a Markdown table row."""
    s = {
        "windows": windows,
        "seconds_per_volume": float(np.mean(seconds)),
        "dice": dict(zip(names, per.mean(0).tolist(), strict=True)),
        "dice_mean": float(per.mean()),
        f"minus_{ref}_mean": float(diff.mean()),
        f"minus_{ref}_sd": float(diff.std()),
        "n": len(per),
    }
    print(
        f"| {key} | {windows:g} | {s['seconds_per_volume']:.2f} | "
        + " | ".join(f"{v:.4f}" for v in s["dice"].values())
        + f" | {s['dice_mean']:.4f} | {diff.mean():+.4f} ({diff.std():.4f}) |"
    )
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=REPO / "napari_medseg/resources/models/default")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared/data/msd-hippocampus")
    p.add_argument("--mosaics", type=int, default=3)
    p.add_argument("--overlaps", type=float, nargs="+", default=[0.25, 0.5])
    p.add_argument("--cell", type=int, nargs=3, default=[36, 50, 38], help="cell shape (voxels)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--case-ids",
        type=Path,
        default=None,
        help="text file of case ids to use (default: the validation split in the model's card)",
    )
    p.add_argument(
        "--net",
        choices=("pair", "unetr", "bsnet"),
        default=None,
        help="run one network of a pair alone (default: the pair; a one-network model runs that network)",
    )
    p.add_argument(
        "--whole", action="store_true", help="each case whole at every overlap, no mosaics (see above)"
    )
    p.add_argument("--out", type=Path, default=REPO / "bench/results/overlap_accuracy.json")
    args = p.parse_args(argv)

    import torch

    from napari_medseg.commands.evaluate import validation_ids
    from napari_medseg.evaluation.metrics import case_metrics
    from napari_medseg.inference.engine import predict_volume, window_grid
    from napari_medseg.io import load_labels, load_volume
    from napari_medseg.io.volume import Volume
    from napari_medseg.models.pair import ModelPair
    from napari_medseg.training.data import cases_from_msd

    torch.set_num_threads(args.threads)
    card = json.loads((args.model / "pair.json").read_text())
    pair = ModelPair.load(args.model, nets=tuple(card["nets"]))
    net = "pair" if len(pair.nets) == 2 else next(iter(pair.nets))
    if args.net is not None:
        if args.net != net and args.net not in pair.nets:
            raise SystemExit(f"--net {args.net}: the model holds {', '.join(pair.nets)}")
        net = args.net
    if args.case_ids is not None:
        val = set(args.case_ids.read_text().split())
    else:
        val = set(validation_ids(pair.card) or ())
    records = [r for r in cases_from_msd(args.data) if r.case_id in val]
    if args.whole:
        return whole_volumes(args, pair, net, records)
    if len(records) < np.prod(GRID):
        raise SystemExit(f"need {np.prod(GRID)} validation cases, found {len(records)}")
    classes = sorted(c for c in pair.classes if c != 0)
    cell = tuple(args.cell)
    spacing = np.eye(4)

    cells = []
    for rec in records:
        vol = load_volume(rec.image_path)
        truth = load_labels(rec.label_path, reference=vol).array.astype(np.int64)
        cells.append((rec.case_id, *fit_cell(pair.preprocess(vol.array), truth, cell)))

    def dice(pred: np.ndarray, truth: np.ndarray) -> tuple[float, ...]:
        m = case_metrics(pred, truth, classes, hd95=False)
        return tuple(float(m[f"dice_{c}"]) for c in classes)

    rows: dict[str, list] = {"single window": []}
    timing: dict[str, list[float]] = {"single window": []}
    windows: dict[str, int] = {"single window": 1}
    for case_id, image, truth in cells:  # the reference: each cell alone, one window
        t = time.perf_counter()
        pred = predict_volume(Volume(image, spacing), pair, net, device="cpu")
        timing["single window"].append(time.perf_counter() - t)
        rows["single window"].append((case_id, *dice(pred.labels, truth)))
    # the same cell alone in one window, at the window's corner instead of its centre: how much of the
    # mosaic's loss is the position of the anatomy in the window (a net trained on centred cases without
    # translation learns that position: session 6's UNETR lost 34.5 points here)
    roi = tuple(int(r) for r in pair.patch_size)
    rows["single window, cell at its corner"], timing["single window, cell at its corner"] = [], []
    windows["single window, cell at its corner"] = 1
    for case_id, image, truth in cells:
        canvas, labels = np.zeros(roi, np.float32), np.zeros(roi, truth.dtype)
        at = tuple(slice(0, c) for c in cell)
        canvas[at], labels[at] = image, truth
        t = time.perf_counter()
        pred = predict_volume(Volume(canvas, spacing), pair, net, device="cpu")
        timing["single window, cell at its corner"].append(time.perf_counter() - t)
        rows["single window, cell at its corner"].append((case_id, *dice(pred.labels, labels)))
    rng = np.random.default_rng(args.seed)
    mosaic_shape = tuple(g * c for g, c in zip(GRID, cell, strict=True))
    for m in range(args.mosaics):
        chosen = rng.permutation(len(cells))[: int(np.prod(GRID))]
        image = tile([cells[c][1] for c in chosen], cell)
        truth = tile([cells[c][2] for c in chosen], cell)
        for overlap in args.overlaps:
            key = f"mosaic, overlap {overlap:g}"
            windows[key] = len(window_grid(mosaic_shape, pair.patch_size, overlap)[2])
            t = time.perf_counter()
            pred = predict_volume(Volume(image, spacing), pair, net, device="cpu", overlap=overlap)
            timing.setdefault(key, []).append(time.perf_counter() - t)
            for n, c in enumerate(chosen.tolist()):
                got = dice(cell_of(pred.labels, n, cell), cell_of(truth, n, cell))
                rows.setdefault(key, []).append((cells[c][0], m, *got))
            print(
                f"mosaic {m} overlap {overlap:g}: {timing[key][-1]:.1f} s, {windows[key]} windows", flush=True
            )

    names = [pair.classes[c] for c in classes]
    single = {r[0]: np.array(r[1:]) for r in rows["single window"]}
    summary = {}
    print(f"\n{len(cells)} validation cases, cell {cell}, mosaic {mosaic_shape}, roi {pair.patch_size}")
    print(f"| setting | windows | s per volume | {' | '.join(names)} | mean | mean - single window (sd) |")
    print("| --- | ---: | ---: |" + " ---: |" * (len(names) + 2))
    for key, rs in rows.items():
        per = np.array([r[-len(names) :] for r in rs], dtype=np.float64)
        diff = np.array([np.mean(r[-len(names) :]) - single[r[0]].mean() for r in rs])
        summary[key] = summary_row(key, per, diff, names, "single", windows[key], timing[key])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "model": pair.model_id,
                "net": net,
                "cell": cell,
                "mosaic": mosaic_shape,
                "summary": summary,
                "rows": rows,
            },
            indent=1,
        )
    )
    return 0


def whole_volumes(args: argparse.Namespace, pair, net: str, records: list) -> int:
    """``--whole``: every case whole through ``predict_volume`` at every overlap; table and JSON."""
    from napari_medseg.evaluation.metrics import case_metrics
    from napari_medseg.inference.engine import predict_volume, window_grid
    from napari_medseg.io import load_labels, load_volume

    if not records:
        raise SystemExit("no cases: the model's card names no validation split; give --case-ids")
    classes = sorted(c for c in pair.classes if c != 0)
    names = [pair.classes[c] for c in classes]
    overlaps = sorted(args.overlaps)
    rows: dict[str, list] = {}
    for rec in records:
        vol = load_volume(rec.image_path)
        truth = load_labels(rec.label_path, reference=vol).array.astype(np.int64)
        for overlap in overlaps:
            predict_volume(vol, pair, net, device="cpu", overlap=overlap)  # warm-up: same shapes, same caches
            t = time.perf_counter()
            pred = predict_volume(vol, pair, net, device="cpu", overlap=overlap)
            seconds = time.perf_counter() - t
            m = case_metrics(pred.labels, truth, classes, hd95=False)
            n_windows = len(window_grid(vol.shape, pair.patch_size, overlap)[2])
            rows.setdefault(f"{overlap:g}", []).append(
                (rec.case_id, list(vol.shape), n_windows, seconds, *(float(m[f"dice_{c}"]) for c in classes))
            )
            print(
                f"{rec.case_id} {vol.shape} overlap {overlap:g}: {n_windows} windows, {seconds:.2f} s",
                flush=True,
            )
    top = rows[f"{overlaps[-1]:g}"]
    summary = {}
    print(f"\n{len(records)} cases whole, roi {pair.patch_size}, net {net}")
    print(
        f"| overlap | windows (mean) | s per volume | {' | '.join(names)} | mean | mean - overlap {overlaps[-1]:g} (sd) |"
    )
    print("| ---: | ---: | ---: |" + " ---: |" * (len(names) + 2))
    for key, rs in rows.items():
        per = np.array([r[4:] for r in rs], dtype=np.float64)
        diff = per.mean(1) - np.array([r[4:] for r in top], dtype=np.float64).mean(1)
        windows = float(np.mean([r[2] for r in rs]))
        summary[key] = summary_row(key, per, diff, names, "top_overlap", windows, [r[3] for r in rs])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"model": pair.model_id, "net": net, "mode": "whole", "summary": summary, "rows": rows}, indent=1
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
