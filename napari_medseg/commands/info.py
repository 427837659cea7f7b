"""``napari-medseg info``: what a volume file or DICOM folder holds, without opening the viewer."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HELP = "Show a scan's size, voxel spacing, orientation, position and intensity range."
DESCRIPTION = (
    "Print what a NIfTI file (.nii/.nii.gz) or a DICOM series folder holds: array shape and data type, "
    "voxel spacing (mm), orientation (e.g. RAS, LPS), the voxel-to-world matrix, intensity range, "
    "modality and a checksum of the voxels. A folder with several DICOM series lists them; choose one "
    "with --series."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` sub-command."""
    p = subparsers.add_parser("info", help=HELP, description=DESCRIPTION)
    p.add_argument("path", type=Path, help="NIfTI file or folder with DICOM files")
    p.add_argument("--series", metavar="UID", default=None, help="DICOM series to describe (see the list)")
    p.set_defaults(func=run)


def describe(vol) -> list[str]:  # noqa: ANN001 - Volume, imported lazily
    """Lines describing a :class:`~napari_medseg.io.Volume`."""
    arr = vol.array
    lines = [
        f"source:      {vol.source}",
        f"format:      {vol.meta.get('format', 'unknown')}",
        f"modality:    {vol.modality}",
        f"shape:       {' x '.join(str(s) for s in vol.shape)} (i, j, k)",
        f"dtype:       {arr.dtype}",
        f"spacing:     {' x '.join(f'{s:.4g}' for s in vol.spacing)} mm",
        f"orientation: {vol.orientation}",
        f"intensity:   {float(arr.min()):.6g} .. {float(arr.max()):.6g}",
        f"checksum:    sha256:{vol.checksum}",
    ]
    if "qform_code" in vol.meta:
        lines.append(f"qform/sform: codes {vol.meta['qform_code']}/{vol.meta['sform_code']}")
    if vol.meta.get("series_uid"):
        lines.append(f"series:      {vol.meta['series_uid']} '{vol.meta.get('series_description', '')}'")
    lines.append("affine:      voxel (i, j, k) -> world RAS+ mm")
    with np.printoptions(precision=4, suppress=True):
        lines += ["  " + " ".join(f"{v:11.4f}" for v in row) for row in vol.affine]
    lines += [f"warning:     {w}" for w in vol.meta.get("warnings", [])]
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the description; InputError propagates to the CLI (``error: ...``, non-zero exit)."""
    from napari_medseg.io import list_series, load_volume

    path: Path = args.path
    if path.is_dir() and args.series is None:
        series = list_series(path)
        if len(series) > 1:
            print(f"{path} holds {len(series)} DICOM series (choose one with --series UID):")
            for s in series:
                print(f"  {s.line()}")
            return 0
    vol = load_volume(path, series_uid=args.series)
    print("\n".join(describe(vol)))
    return 0
