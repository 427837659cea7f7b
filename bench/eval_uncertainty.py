"""Is the uncertainty map useful? On held-out cases, how well does it point at the proposal's errors.

Usage::

    python bench/eval_uncertainty.py [--model napari_medseg/resources/models/default] [--data ../shared/data/msd-hippocampus]
                                     [--cases N] [--threads 2]

Cases: the validation split recorded in the model card (``training.split.val``), else the last
``--cases`` cases of the folder. One pair forward per case (probabilities of both nets kept); every
map below is computed from those probabilities.

Maps (errors = voxels where the proposal differs from the reference label):
  pair H(mean) x band  the shipped map: entropy (bits, capped at 1) of the pair's mean probabilities,
                       in the boundary band of either net (= JSD + mean own entropy of the two nets)
  pair H(mean)         the same without the band
  pair jsd x band      JSD / log 2 between UNETR and BS-Net (disagreement only), in the band
  pair jsd (no band)   the same without the band
  pair tv x band       total variation 0.5 * sum |p_A - p_B| in the band
  pair jsd*H x band    sqrt(JSD * H(mean)) in the band
  unetr H, bsnet H     softmax entropy of one net alone, errors of that net's own proposal (baselines)
  bsnet H x band       the same in BS-Net's own boundary band

Metrics (first table):
  AUROC       uncertainty as a score for "voxel is an error", all voxels of all cases pooled (ties averaged)
  top5%       share of all error voxels that lie in each case's 5 % most uncertain voxels
  rho(score,Dice)  Spearman correlation over cases of the case score (sum of the map / foreground voxels)
                   with the proposal's mean foreground Dice (negative = higher score, worse case: wanted)

Second table, regions as the viewer's "Next region" finds them (per case, then pooled): median regions per
case, median share of the band taken by the largest region (near 1 = one useless shell), share of error
voxels inside any region, and the lift of the top-3 regions (their error rate / the band's error rate).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata, spearmanr

REPO = Path(__file__).resolve().parent.parent


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def top_share(scores: np.ndarray, positive: np.ndarray, share: float = 0.05) -> tuple[int, int]:
    """(error voxels inside the ``share`` most uncertain voxels, all error voxels) of one case."""
    k = max(1, int(round(share * scores.size)))
    top = np.argpartition(-scores, k - 1)[:k]
    return int(positive[top].sum()), int(positive.sum())


def mean_dice(pred: np.ndarray, truth: np.ndarray, classes: list[int]) -> float:
    from napari_medseg.evaluation.metrics import case_metrics

    return case_metrics(pred, truth, classes, hd95=False)["dice_mean"]


#: Maps and thresholds whose regions (what the reviewer jumps between) are scored in the second table.
REGION_MAPS = ("pair H(mean) x band", "pair jsd x band")
REGION_THRESHOLDS = (0.5, 0.7, 0.9)


def region_stats(u: np.ndarray, err: np.ndarray, band: np.ndarray, threshold: float) -> dict[str, float]:
    """Regions exactly as the viewer finds them (``inference.regions.region_labels``), ranked by size x mean:
    count, largest region's share of the band, errors covered, and errors among the top-3 regions' voxels."""
    from napari_medseg.inference.regions import region_labels

    comp, n = region_labels(u, threshold)
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    sums = np.bincount(comp.ravel(), weights=u.ravel(), minlength=n + 1)
    ranked = sorted(range(1, n + 1), key=lambda k: -sums[k])  # size x mean = sum
    in_any = comp > 0
    in_top = np.isin(comp, ranked[:3]) if ranked else np.zeros_like(err)
    return {
        "regions": n,
        "largest_of_band": float(max((sizes[k] for k in ranked), default=0) / max(int(band.sum()), 1)),
        "errors_covered": int((err & in_any).sum()),
        "errors": int(err.sum()),
        "top3_voxels": int(in_top.sum()),
        "top3_errors": int((err & in_top).sum()),
        "band_voxels": int(band.sum()),
        "band_errors": int((err & band).sum()),
    }


def case_maps(
    pa: torch.Tensor, pb: torch.Tensor, radius: int, w_a: float = 0.5
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (uncertainty (I,J,K) float32, proposal labels (I,J,K)) for every map compared.

    The pair proposal is ``argmax(w_a·p_A + (1 − w_a)·p_B)`` as the model card's ``proposal_weights``
    say (the engine's proposal); the pair maps use both networks equally.
    """
    from napari_medseg.inference import uncertainty as U

    mean = 0.5 * (pa + pb)
    pair_labels = (w_a * pa + (1 - w_a) * pb).argmax(0)
    band = U.boundary_band(pa.argmax(0), pb.argmax(0), radius)
    jsd = U.js_divergence(pa, pb)
    h_mean = U.capped_entropy(mean)
    maps = {
        "pair H(mean) x band": (h_mean * band, pair_labels),
        "pair H(mean)": (h_mean, pair_labels),
        "pair jsd x band": (jsd * band, pair_labels),
        "pair jsd (no band)": (jsd, pair_labels),
        "pair tv x band": (U.total_variation(pa, pb) * band, pair_labels),
        "pair jsd*H x band": (U.pair_disagreement(pa, pb, "jsd_entropy") * band, pair_labels),
        "unetr H": (U.capped_entropy(pa), pa.argmax(0)),
        "bsnet H": (U.capped_entropy(pb), pb.argmax(0)),
        "bsnet H x band": (U.capped_entropy(pb) * U.boundary_band(pb.argmax(0), None, radius), pb.argmax(0)),
    }
    return {k: (u.float().numpy(), lab.numpy()) for k, (u, lab) in maps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "msd-hippocampus")
    parser.add_argument("--cases", type=int, default=24, help="cases to use when the card records no split")
    parser.add_argument("--radius", type=int, default=3, help="boundary band half-width (voxels)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    if args.model is None:  # the bundled model of the installed package
        from napari_medseg.bundled import default_model_dir

        args.model = default_model_dir()

    from napari_medseg.commands.evaluate import validation_ids
    from napari_medseg.inference.engine import predict_volume
    from napari_medseg.io import load_labels, load_volume
    from napari_medseg.models.pair import ModelPair
    from napari_medseg.training.data import cases_from_msd

    torch.set_num_threads(args.threads)
    pair = ModelPair.load(args.model)
    records = cases_from_msd(args.data)
    val = validation_ids(pair.card)
    if val:
        records = [r for r in records if r.case_id in set(val)]
        origin = f"{len(records)} validation cases from the model card"
    else:
        records = records[-args.cases :]
        origin = f"last {len(records)} cases of {args.data} (no split in the card: may overlap training!)"
    classes = sorted(c for c in pair.classes if c != 0)

    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    top: dict[str, list[tuple[int, int]]] = {}
    per_case: dict[str, list[tuple[float, float]]] = {}
    regions: dict[tuple[str, float], list[dict[str, float]]] = {}
    case_scores: dict[str, list[float]] = {}  # score variants of the shipped map, for the case queue
    for rec in records:
        vol = load_volume(rec.image_path)
        truth = load_labels(rec.label_path, reference=vol).array.astype(np.int64)
        pred = predict_volume(vol, pair, device="cpu", band_radius=args.radius)
        pa = torch.from_numpy(pred.probs["unetr"].astype(np.float32))
        pb = torch.from_numpy(pred.probs["bsnet"].astype(np.float32))
        w_a = pair.proposal_weights.get("unetr", 0.5)
        for name, (u, labels) in case_maps(pa, pb, args.radius, w_a).items():
            err = labels != truth
            pooled.setdefault(name, []).append((u.ravel(), err.ravel()))
            top.setdefault(name, []).append(top_share(u.ravel(), err.ravel()))
            fg = max(int((labels > 0).sum()), 1)
            per_case.setdefault(name, []).append((float(u.sum()) / fg, mean_dice(labels, truth, classes)))
            if name == REGION_MAPS[0]:
                band_n = max(int((u > 0).sum()), 1)
                for key, val in (
                    ("sum / foreground (shipped)", float(u.sum()) / fg),
                    ("mean in band", float(u.sum()) / band_n),
                    ("voxels >= 0.7 / foreground", float((u >= 0.7).sum()) / fg),
                    ("voxels >= 0.9 / foreground", float((u >= 0.9).sum()) / fg),
                ):
                    case_scores.setdefault(key, []).append(val)
            if name in REGION_MAPS:
                band = u > 0
                for t in REGION_THRESHOLDS:
                    regions.setdefault((name, t), []).append(region_stats(u, err, band, t))

    print(f"# model {pair.model_id} ({pair.checkpoint_hash}); {origin}; band radius {args.radius}")
    print(f"{'map':<22} {'AUROC':>6} {'top5%':>6} {'rho(score,Dice)':>16} {'mean Dice':>9} {'error vox':>9}")
    results = {}
    for name in pooled:
        u = np.concatenate([a for a, _ in pooled[name]])
        e = np.concatenate([b for _, b in pooled[name]])
        inside = sum(a for a, _ in top[name]) / max(sum(b for _, b in top[name]), 1)
        scores, dices = np.array(per_case[name]).T
        rho = float(spearmanr(scores, dices).statistic) if len(scores) > 2 else float("nan")
        results[name] = {
            "auroc": auroc(u, e),
            "top5": inside,
            "spearman": rho,
            "dice": float(dices.mean()),
            "errors": int(e.sum()),
        }
        r = results[name]
        print(
            f"{name:<22} {r['auroc']:>6.3f} {r['top5']:>6.3f} {r['spearman']:>16.3f} {r['dice']:>9.3f} {r['errors']:>9d}"
        )
    print()
    print("# regions (what Next region jumps between); lift = error rate in the top-3 regions / in the band")
    print(
        f"{'map':<22} {'thr':>4} {'regions/case':>12} {'largest/band':>12} {'errors covered':>14} {'top3 lift':>9}"
    )
    region_results = {}
    for (name, t), rows in regions.items():
        tot = {k: sum(r[k] for r in rows) for k in rows[0]}
        top3_rate = tot["top3_errors"] / max(tot["top3_voxels"], 1)
        base_rate = tot["band_errors"] / max(tot["band_voxels"], 1)
        rr = {
            "regions_per_case": float(np.median([r["regions"] for r in rows])),
            "largest_of_band": float(np.median([r["largest_of_band"] for r in rows])),
            "errors_covered": tot["errors_covered"] / max(tot["errors"], 1),
            "top3_lift": top3_rate / base_rate if base_rate else float("nan"),
        }
        region_results[f"{name} @ {t}"] = rr
        print(
            f"{name:<22} {t:>4.1f} {rr['regions_per_case']:>12.1f} {rr['largest_of_band']:>12.3f} "
            f"{rr['errors_covered']:>14.3f} {rr['top3_lift']:>9.2f}"
        )
    results["regions"] = region_results
    print()
    print(f"# case score variants of {REGION_MAPS[0]}: Spearman with the case's mean Dice (negative = good)")
    dices = np.array(per_case[REGION_MAPS[0]])[:, 1]
    results["case_scores"] = {}
    for key, vals in case_scores.items():
        rho = float(spearmanr(vals, dices).statistic) if len(vals) > 2 else float("nan")
        results["case_scores"][key] = rho
        print(f"{key:<30} {rho:>7.3f}")
    if args.json:
        from napari_medseg.io.atomic import atomic_write_bytes

        info = {
            "model_id": pair.model_id,
            "cases": [r.case_id for r in records],
            "radius": args.radius,
            "results": results,
        }
        atomic_write_bytes(args.json, (json.dumps(info, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
