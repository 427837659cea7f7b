"""DICOM SEG file sizes (binary vs label map) and what third-party tools say about them.

Usage: python bench/dicom_seg_sizes.py [--data ../shared/data]

Writes SEGs of the TotalSegmentator label map on the ``ct_dicom`` series (20 CT slices of 512x512; its
anonymised study/series UIDs are filled in first, as a PACS export has them) with 1, 4 and all 31
structures, in both encodings, and prints per file: size, number of frames, dciodvfy (dicom3tools) error
count and whether highdicom's read-back (``read_dicom_seg``) equals the label map.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pydicom

REPO = Path(__file__).resolve().parent.parent


def _series_with_uids(src: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(str(f))
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.543.100"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.543.101"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.save_as(str(out / f.name))
    return out


def _dciodvfy_errors(path: Path) -> str:
    if shutil.which("dciodvfy") is None:
        return "n/a"
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return str(sum(line.startswith("Error") for line in (done.stdout + done.stderr).splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()

    from napari_medseg.io import load_labels, load_volume
    from napari_medseg.io.dicom_seg import read_dicom_seg, write_dicom_seg

    ts = args.data / "totalseg-examples"
    with tempfile.TemporaryDirectory() as tmp:
        series = _series_with_uids(ts / "ct_dicom", Path(tmp) / "series")
        labels = load_labels(ts / "example_seg_dicom.nii.gz", reference=load_volume(series)).array
        print("| structures | encoding | size (MB) | frames | dciodvfy errors | highdicom read-back equal |")
        print("| ---: | --- | ---: | ---: | ---: | --- |")
        for keep in ([5], [1, 5, 6, 7], None):
            part = labels if keep is None else np.where(np.isin(labels, keep), labels, 0)
            n = int(np.count_nonzero(np.unique(part)))
            for kind in ("BINARY", "LABELMAP"):
                out = write_dicom_seg(part, series, Path(tmp) / f"{n}_{kind}.dcm", segmentation_type=kind)
                frames = int(pydicom.dcmread(str(out), stop_before_pixels=True).NumberOfFrames)
                same = bool(np.array_equal(read_dicom_seg(out, series), part))
                size = out.stat().st_size / 1e6
                print(f"| {n} | {kind.lower()} | {size:.2f} | {frames} | {_dciodvfy_errors(out)} | {same} |")


if __name__ == "__main__":
    main()
