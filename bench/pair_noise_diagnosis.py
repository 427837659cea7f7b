"""What did Co-Correcting do with the noisy labels? A post-hoc look at one ``pair_vs_single`` run.

For one noise level of a finished ``bench/pair_vs_single.py`` run (same ``--scale``, ``--seed``,
``--noise``, ``--noise-kind``, so the split and the noisy labels are rebuilt exactly), with the clean
labels of the corrupted training cases as the truth:

1. **Label correction** (arm d, ``arm_d/label_state.safetensors``: the last epoch's learned label
   distributions ``y_d``): how many noise voxels lie in the correction band, how many band voxels
   changed their argmax, how many of those changes restored the clean label (precision) and which
   share of the noise voxels of admitted cases was restored (recall); mean ``y_d`` of the clean class
   on the noise voxels (the initial value is 0.047 for 3 classes).
2. **Peer judgement** (arm d's kept networks on the centred patch of each corrupted training case,
   eval mode, no augmentation): the true noise share of the unapproved band next to what
   ``selection.noise_share`` estimates from the same predictions (from both peers and from the nets the
   peer gate lets judge; a judging peer gives the given label
   probability < 1 − ``noise_confidence``), each network's probability of the given label on the
   noise voxels, and the precision of small-loss selection (share of truly noisy voxels among the
   largest-loss band voxels, dropping the true noise share or the last epoch's forget rate).
3. **Volume bias** on the test cases: predicted / reference foreground volume (mean over cases) of
   every arm's kept model (pairs: each member and the proposal with the card's weight), plus any
   ``--extra`` model folder (e.g. the clean-label BS-Net of another run) — > 1 means over-segmented.

Example::

    python bench/pair_noise_diagnosis.py --run runs/pvs_cpu_dilate --noise 0.4 --noise-kind dilate \\
        --json runs/pvs_cpu_dilate/diagnosis.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pair_vs_single as pvs  # noqa: E402

from napari_medseg.models.boundary import boundary_band  # noqa: E402
from napari_medseg.models.pair import ModelPair  # noqa: E402
from napari_medseg.training.cocorrecting import TrainConfig  # noqa: E402
from napari_medseg.training.data import CaseDataset, center_crop_or_pad, load_cases  # noqa: E402
from napari_medseg.training.noise import NOISE_KINDS  # noqa: E402
from napari_medseg.training.selection import noise_share, selectors  # noqa: E402


@torch.no_grad()
def patch_probs(pair: ModelPair, case, patch) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Softmax ``(1, K, D, H, W)`` of each net on the case's centred patch, its label ``(1, D, H, W)`` and
    the mask of voxels inside the case (not padding)."""
    item = CaseDataset([case], patch)[0]
    x = item["image"][None]
    probs = {name: torch.softmax(net(x).float(), 1) for name, net in pair.nets.items()}
    region = np.zeros(case.image.shape, dtype=bool)
    region[case.region()] = True
    inside = torch.from_numpy(center_crop_or_pad(region, patch))[None]
    return probs, item["label"][None], inside


def label_correction(state_path: Path, noisy_cases, clean_cases) -> dict:
    from safetensors.torch import load_file

    t = load_file(str(state_path))
    yd = torch.softmax(t["logits"], 1)
    starts, voxels, given, admitted = t["starts"], t["voxels"], t["given"], t["admitted"].bool()
    acc = dict.fromkeys(
        (
            "noise_voxels",
            "noise_in_band",
            "noise_in_admitted",
            "band_voxels_admitted",
            "changed",
            "restored",
            "changed_admitted",
            "restored_admitted",
        ),
        0,
    )
    p_true_noise, p_given_clean = [], []
    n_unapproved = 0
    for i, (nc, cc) in enumerate(zip(noisy_cases, clean_cases, strict=True)):
        if nc.approved:
            continue
        n_unapproved += 1
        sl = slice(int(starts[i]), int(starts[i + 1]))
        vox, g = voxels[sl].numpy(), given[sl]
        truth = torch.from_numpy(cc.label.reshape(-1)[vox])
        if not np.array_equal(g.numpy(), nc.label.reshape(-1)[vox]):
            raise SystemExit(
                f"{state_path} belongs to another split or noise: give the run's --seed and --noise-kind"
            )
        noise = g != truth
        arg = yd[sl].argmax(1)
        changed, restored = arg != g, (arg != g) & (arg == truth)
        acc["noise_voxels"] += int((nc.label != cc.label).sum())
        acc["noise_in_band"] += int(noise.sum())
        acc["changed"] += int(changed.sum())
        acc["restored"] += int(restored.sum())
        if admitted[i]:
            acc["noise_in_admitted"] += int(noise.sum())
            acc["band_voxels_admitted"] += int(noise.numel())
            acc["changed_admitted"] += int(changed.sum())
            acc["restored_admitted"] += int(restored.sum())
            p_true_noise.append(yd[sl][noise].gather(1, truth[noise][:, None])[:, 0])
            p_given_clean.append(yd[sl][~noise].gather(1, g[~noise][:, None])[:, 0])
    unapproved = torch.tensor([not c.approved for c in noisy_cases])
    out = {"unapproved_cases": n_unapproved, "admitted_cases": int((admitted & unapproved).sum()), **acc}
    out["restored_precision"] = acc["restored"] / max(acc["changed"], 1)
    out["restored_recall_admitted"] = acc["restored_admitted"] / max(acc["noise_in_admitted"], 1)
    if p_true_noise:
        out["mean_yd_true_class_on_noise_admitted"] = float(torch.cat(p_true_noise).mean())
        out["mean_yd_given_class_on_clean_band_admitted"] = float(torch.cat(p_given_clean).mean())
    return out


def judges_of(arm: dict) -> list[str]:
    """The nets that judged the noise at the end of a pair arm: the peer gate on its last validation scores."""
    last = arm["history"][-1]
    scores = {n: last.get(f"dice_{n}_mean") for n in ("unetr", "bsnet")}
    return sorted(set(selectors(scores, arm["config"].get("peer_margin", 0.05)).values()))


def peer_judgement(
    pair: ModelPair,
    noisy_cases,
    clean_cases,
    patch,
    confidence: float,
    forget: float,
    judges: list[str],
    band_radius: int,
) -> dict:
    """``judges``: the nets the trainer's peer gate lets judge the noise (``selectors`` on the last
    validation scores); the estimate is reported both from them and from both peers."""
    n_band = n_noise = n_est = n_judged = 0
    per_net = {
        n: {"p_given_noise": 0.0, "contradicts_noise": 0, "contradicts_clean_band": 0} for n in pair.nets
    }
    losses = {n: [] for n in pair.nets}
    is_noise = []
    for nc, cc in zip(noisy_cases, clean_cases, strict=True):
        if nc.approved:
            continue
        probs, given, inside = patch_probs(pair, nc, patch)
        truth = torch.from_numpy(CaseDataset([cc], patch)[0]["label"].numpy())[None]
        band = boundary_band(given, band_radius)[:, 0] & inside
        noise = (given != truth) & band
        n_band += int(band.sum())
        n_noise += int(noise.sum())
        share = noise_share(list(probs.values()), given, band, confidence)
        n_est += round((share or 0.0) * int(band.sum()))
        judged = noise_share([probs[n] for n in judges], given, band, confidence)
        n_judged += round((judged or 0.0) * int(band.sum()))
        is_noise.append(noise[band])
        for name, p in probs.items():
            p_given = p.gather(1, given[:, None])[:, 0]
            low = p_given < (1.0 - confidence)
            per_net[name]["p_given_noise"] += float(p_given[noise].sum())
            per_net[name]["contradicts_noise"] += int((low & noise).sum())
            per_net[name]["contradicts_clean_band"] += int((low & band & ~noise).sum())
            losses[name].append(-torch.log(p_given.clamp_min(1e-8))[band])
    is_noise_all = torch.cat(is_noise)
    out = {
        "band_voxels": n_band,
        "noise_in_band": n_noise,
        "true_noise_share": n_noise / max(n_band, 1),
        "estimated_noise_share": n_est / max(n_band, 1),
        "judges": judges,
        "estimated_noise_share_by_judges": n_judged / max(n_band, 1),
        "last_forget_rate": forget,
        "nets": {},
    }
    for name, acc in per_net.items():
        loss = torch.cat(losses[name])
        order = torch.argsort(loss, descending=True)
        sel = {}
        for label, rate in (("at_true_share", out["true_noise_share"]), ("at_last_forget", forget)):
            k = int(rate * loss.numel())
            sel[f"precision_{label}"] = float(is_noise_all[order[:k]].float().mean()) if k else None
        out["nets"][name] = {
            "mean_p_given_on_noise": acc["p_given_noise"] / max(n_noise, 1),
            "share_noise_contradicted": acc["contradicts_noise"] / max(n_noise, 1),
            "share_clean_band_contradicted": acc["contradicts_clean_band"] / max(n_band - n_noise, 1),
            **sel,
        }
    return out


def volume_bias(model_dir: Path, test_cases, patch) -> dict:
    card = json.loads((model_dir / "pair.json").read_text())
    pair = ModelPair.load(model_dir, nets=tuple(card["nets"]))
    w = (card.get("proposal_weights") or {}).get("unetr", 0.5)
    ratios: dict[str, list[float]] = {}
    for case in test_cases:
        probs, label, inside = patch_probs(pair, case, patch)
        if len(probs) == 2:
            probs["pair"] = w * probs["unetr"] + (1 - w) * probs["bsnet"]
        ref = max(int((label > 0).sum()), 1)
        for name, p in probs.items():
            pred = (p.argmax(1) > 0) & inside
            ratios.setdefault(name, []).append(int(pred.sum()) / ref)
    return {name: round(float(np.mean(v)), 4) for name, v in ratios.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="OUT folder of bench/pair_vs_single.py")
    p.add_argument("--scale", choices=sorted(pvs.SCALES), default="cpu")
    p.add_argument("--data", type=Path, default=pvs.default_data())
    p.add_argument("--noise", type=float, required=True)
    p.add_argument("--noise-kind", choices=NOISE_KINDS, default="mixed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", type=Path, nargs="*", default=[], help="more model folders for the volume bias")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    scale = pvs.SCALES[args.scale]
    level = args.run / pvs.level_dir(args.noise, args.noise_kind)
    data = pvs.prepare(args, scale, args.noise)
    result: dict = {"run": str(args.run), "level": level.name, "noise_stats": data.stats}
    arm_d = level / "arm_d"
    patch = tuple(TrainConfig().patch)
    if (level / "d.json").exists():
        d = json.loads((level / "d.json").read_text())
        patch = tuple(d["config"]["patch"])
        noisy = load_cases(data.train_recs, patch, labels_override=data.noisy)
        clean = load_cases(data.train_recs, patch)
        if (arm_d / pvs.LABEL_STATE).exists():
            result["label_correction"] = label_correction(arm_d / pvs.LABEL_STATE, noisy, clean)
        else:
            print(f"no {arm_d / pvs.LABEL_STATE} (older run): label correction skipped", flush=True)
        result["peer_judgement"] = peer_judgement(
            ModelPair.load(arm_d),
            noisy,
            clean,
            patch,
            d["config"]["noise_confidence"],
            d["history"][-1]["forget_rate"],
            judges_of(d),
            d["config"]["band_radius"],
        )
    test = load_cases([data.by_id[c] for c in data.test_ids], patch)
    result["volume_ratio_test"] = {
        str(m): volume_bias(m, test, patch) for m in [*sorted(level.glob("arm_*")), *args.extra]
    }
    text = json.dumps(result, indent=1, default=float)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
