"""Load/save timings of napari-medseg's I/O against MONAI's stock ``LoadImage`` in the same run.

Usage: python bench/bench_io.py [--data ../shared/data] [--repeat 5]

Prints one table: median wall time (ms) of our loader (geometry checks, validation, checksum
included) and of ``monai.transforms.LoadImage`` (NibabelReader for NIfTI, PydicomReader for the
DICOM series) on the same files, their ratio, and our atomic label save.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def median_ms(fn, repeat: int, *args) -> float:
    """Median wall time of ``fn(*args)`` in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from monai.transforms import LoadImage

    from napari_medseg.io import load_labels, load_volume, save_labels

    cases = [
        (
            "CT DICOM 512x512x20",
            args.data / "totalseg-examples/ct_dicom",
            args.data / "totalseg-examples/example_seg_dicom.nii.gz",
            "PydicomReader",
        ),
        (
            "hippocampus_003 MRI",
            args.data / "msd-hippocampus/imagesTr/hippocampus_003.nii.gz",
            args.data / "msd-hippocampus/labelsTr/hippocampus_003.nii.gz",
            "NibabelReader",
        ),
        ("CT 122x101x112", args.data / "totalseg-examples/example_ct.nii.gz", None, "NibabelReader"),
    ]
    tmp = Path(tempfile.mkdtemp())
    print(
        f"{'volume':<22} {'ours load':>10} {'MONAI load':>11} {'ratio':>6} {'label load':>11} {'label save':>11}"
    )
    for name, image, label, reader in cases:
        vol = load_volume(image)
        ours = median_ms(load_volume, args.repeat, image)
        stock = median_ms(LoadImage(reader=reader, image_only=True), args.repeat, str(image))
        if label is not None:
            lab = load_labels(label, reference=vol)
            t_lab = f"{median_ms(load_labels, args.repeat, label, vol):.0f}"
            t_save = f"{median_ms(save_labels, args.repeat, lab.array, vol, tmp / 'l.nii.gz'):.0f}"
        else:
            t_lab = t_save = "-"
        print(f"{name:<22} {ours:>10.0f} {stock:>11.0f} {ours / stock:>6.2f} {t_lab:>11} {t_save:>11}")


if __name__ == "__main__":
    main()
