"""Training-batch assembly: MONAI's per-case augmentation (the old path) vs our batched torch path.

Same real hippocampus cases, same transforms (RandAffined ±0.15 rad / ±10 % p 0.8, Gaussian noise p 0.3,
intensity scaling p 0.5), batch of 4 at the (48, 64, 48) patch. Prints median ms per batch.

    python bench/bench_augment.py --repeat 20 [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def monai_pipeline(patch):
    from monai.transforms import Compose, RandAffined, RandGaussianNoised, RandScaleIntensityd

    return Compose(
        [
            RandAffined(
                keys=["image", "label", "coords"],
                prob=0.8,
                rotate_range=(0.15, 0.15, 0.15),
                scale_range=(0.1, 0.1, 0.1),
                mode=("bilinear", "nearest", "nearest"),
                padding_mode="zeros",
                spatial_size=patch,
                cache_grid=True,
            ),
            RandGaussianNoised(keys=["image"], prob=0.3, std=0.05),
            RandScaleIntensityd(keys=["image"], factors=0.1, prob=0.5),
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "msd-hippocampus")
    args = p.parse_args()
    import numpy as np
    import torch

    from napari_medseg.training.augment import CachedCases
    from napari_medseg.training.data import DEFAULT_PATCH, cases_from_msd, load_cases

    torch.set_num_threads(args.threads)
    cases = load_cases(cases_from_msd(args.data)[: args.batch])
    aug = monai_pipeline(DEFAULT_PATCH)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in DEFAULT_PATCH], indexing="ij")).astype(np.float32) + 1
    old = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        items = [
            aug({"image": c.image[None], "label": c.label[None].astype(np.float32), "coords": grid})
            for c in cases
        ]
        torch.stack([torch.as_tensor(np.asarray(i["image"])) for i in items])
        old.append(time.perf_counter() - t)
    loader = CachedCases(cases, DEFAULT_PATCH, args.batch, device=args.device, augment=True)
    new = []
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for _ in range(args.repeat):
        t = time.perf_counter()
        loader.batch(list(range(args.batch)))
        sync()
        new.append(time.perf_counter() - t)
    mo, mn = statistics.median(old) * 1e3, statistics.median(new) * 1e3
    print(
        f"| batch of {args.batch} | MONAI per case | {mo:.0f} ms | ours batched ({args.device}) | {mn:.0f} ms | {mn / mo:.2f}x |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
