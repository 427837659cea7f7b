"""``napari-medseg store``: create a case folder, import scans, list the review queue, export.

Sub-commands: ``init``, ``import``, ``list``, ``history``, ``status``, ``measure``, ``export``, ``check``,
``rebuild``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from napari_medseg.errors import InputError, StoreError

_DESCRIPTION = """\
A case store is one folder holding the scans of a dataset, every saved version of their
segmentations (nothing is ever overwritten) and each case's review status
(new -> proposed -> in_review -> corrected -> approved). The folder is laid out like the
Medical Segmentation Decathlon, so nnU-Net and MONAI can train on the approved labels directly.
"""


def _parse_labels(text: str) -> dict[int, str]:
    labels: dict[int, str] = {}
    for part in text.split(","):
        value, sep, name = part.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise argparse.ArgumentTypeError(
                f"cannot read label {part!r}: write VALUE=NAME pairs, e.g. 0=background,1=Anterior,2=Posterior"
            )
        labels[int(value)] = name.strip()
    if 0 not in labels:
        raise argparse.ArgumentTypeError(
            "the label list must include 0 (background), e.g. 0=background,1=Tumour"
        )
    return labels


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``store`` and its sub-commands to the ``napari-medseg`` parser."""
    p = subparsers.add_parser(
        "store",
        help="manage a case folder: import scans, list the review queue, see history, export approved labels",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])
    sub = p.add_subparsers(dest="store_command", metavar="ACTION")

    s = sub.add_parser(
        "init", help="create a new, empty case folder", description="Create a new, empty case folder."
    )
    s.add_argument("dir", type=Path, help="folder to create (or an empty existing folder)")
    s.add_argument("--name", default="", help="dataset name shown in dataset.json (default: the folder name)")
    s.add_argument(
        "--labels",
        type=_parse_labels,
        default=None,
        help="the structures you segment, as VALUE=NAME pairs: 0=background,1=Anterior,2=Posterior "
        "(default: 0=background,1=foreground; importing a Decathlon folder into an empty store uses its names)",
    )
    s.add_argument("--modality", default="MRI", help="imaging modality, e.g. MRI or CT (default: MRI)")
    s.set_defaults(func=run_init)

    s = sub.add_parser(
        "import",
        help="copy scans (and their segmentations) into the case folder",
        description="Copy scans into the case folder. Give NIfTI files or DICOM folders, or one "
        "Decathlon-style folder (with dataset.json and imagesTr/) to import all of its cases. "
        "The originals are not changed.",
    )
    s.add_argument("dir", type=Path, help="the case folder (made with 'store init')")
    s.add_argument("images", nargs="+", type=Path, help="scans to import, or one Decathlon folder")
    s.add_argument(
        "--labels", nargs="+", type=Path, default=None, help="segmentations, one per scan, in the same order"
    )
    s.add_argument(
        "--approved",
        action="store_true",
        help="mark the imported segmentations as approved by a clinician (otherwise they wait for review)",
    )
    s.add_argument(
        "--limit", type=int, default=None, help="with a Decathlon folder: import only its first N cases"
    )
    s.add_argument("--author", default=None, help="name recorded as the importer (default: your login name)")
    s.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip scans already in the store with the same image (resume an interrupted import)",
    )
    s.add_argument(
        "--case-id",
        nargs="+",
        default=None,
        metavar="ID",
        help="case names to use, one per scan (default: from the file name: accents dropped, spaces and "
        "other symbols become '_', leading '-' or '.' removed, e.g. '-scan 1 (ré).nii.gz' -> scan_1_re)",
    )
    s.set_defaults(func=run_import)

    s = sub.add_parser(
        "list",
        help="show every case with its review status, versions, last editor, lock and uncertainty",
        description="Show every case: review status, number of saved versions, who edited last, "
        "who is working on it (lock) and the model's uncertainty score.",
    )
    s.add_argument("dir", type=Path, help="the case folder")
    s.add_argument(
        "--sort",
        choices=("case", "uncertainty", "status"),
        default="case",
        help="order: by case name (default), by uncertainty (most uncertain first: review these first) or by status",
    )
    s.set_defaults(func=run_list)

    s = sub.add_parser(
        "history",
        help="show every saved version of one case: who, when, from what, how much changed",
        description="Show every saved version of one case (who, when, model or human, what it was edited "
        "from, voxels changed, agreement with the model proposal) and its review events.",
    )
    s.add_argument("dir", type=Path, help="the case folder")
    s.add_argument("case", help="case name, e.g. hippocampus_001")
    s.set_defaults(func=run_history)

    s = sub.add_parser(
        "status",
        help="move a case in the review workflow (e.g. approve it) or leave a comment",
        description="Move a case in the review workflow: new -> proposed -> in_review -> corrected -> "
        "approved. Approving publishes the latest version to labelsTr/. With no status, only records "
        "the comment (e.g. 'needs work: posterior boundary').",
    )
    s.add_argument("dir", type=Path, help="the case folder")
    s.add_argument("case", help="case name")
    s.add_argument(
        "status", nargs="?", choices=("proposed", "in_review", "corrected", "approved"), default=None
    )
    s.add_argument("--comment", default="", help="comment recorded with the change")
    s.add_argument("--author", default=None, help="your name (default: your login name)")
    s.set_defaults(func=run_status)

    s = sub.add_parser(
        "measure",
        help="volume (mL) and longest axial diameter (mm) of every structure of the approved cases",
        description="Measure every structure of every approved case on its approved segmentation (with "
        "--all: every case's latest version, a person's or the model's): volume in mL and the longest "
        "diameter within an axial slice (K index of the image) with the perpendicular short axis, in mm, "
        "between voxel centres. One row per case and structure; --csv also writes them to a file.",
    )
    s.add_argument("dir", type=Path, help="the case folder")
    s.add_argument("--all", action="store_true", help="every case's latest version, not only approved ones")
    s.add_argument("--csv", type=Path, default=None, metavar="FILE", help="also write the rows as CSV")
    s.set_defaults(func=run_measure)

    s = sub.add_parser(
        "export",
        help="write the approved segmentations as a new Decathlon (MSD) or nnU-Net v2 dataset",
        description="Write every approved case and its latest approved segmentation as a new dataset. "
        "--format msd (default): a Decathlon folder OUT (imagesTr/, labelsTr/, imagesTs/, dataset.json) "
        "that MONAI reads as is; name OUT like an MSD task, TaskNN_Name (one underscore), and "
        "nnUNetv2_convert_MSD_dataset -i OUT converts it. --format nnunetv2: nnU-Net v2's own layout, "
        "OUT/DatasetNNN_Name/ (images with the _0000 channel suffix, dataset.json with channel_names and "
        "labels name -> value), ready for nnUNetv2_plan_and_preprocess -d NNN; OUT is usually $nnUNet_raw.",
    )
    s.add_argument("dir", type=Path, help="the case folder")
    s.add_argument(
        "out",
        type=Path,
        help="msd: new (or empty) folder to write; nnunetv2: folder to create DatasetNNN_Name in",
    )
    s.add_argument(
        "--format", choices=("msd", "nnunetv2"), default="msd", help="dataset layout (default: msd)"
    )
    s.add_argument(
        "--dataset-id",
        type=int,
        default=None,
        help="nnunetv2 only: the nnU-Net dataset id NNN, 1-999 (default: 500); must be free in OUT",
    )
    s.set_defaults(func=run_export)

    s = sub.add_parser(
        "check",
        help="verify the case folder after a crash or power cut (and optionally tidy it)",
        description="Verify that every saved version is intact and the database is healthy. Files left "
        "by an interrupted save are reported; --clean moves them aside (nothing is deleted except "
        "temporary files).",
    )
    s.add_argument("dir", type=Path, help="the case folder")
    s.add_argument(
        "--clean", action="store_true", help="move interrupted-save leftovers aside and repair labelsTr/"
    )
    s.set_defaults(func=run_check)

    s = sub.add_parser(
        "rebuild",
        help="recreate a lost or damaged store database from the saved versions",
        description="Recreate .medseg/store.sqlite from the files: the cases, every saved version with its "
        "provenance (from the sidecar written beside it), approvals (from labelsTr/) and whatever events "
        "the old database still holds. The old database is moved to .medseg/damaged/, never deleted. "
        "Locks, comments and status history held only by the lost database cannot come back.",
    )
    s.add_argument("dir", type=Path, help="the case folder")
    s.add_argument("--force", action="store_true", help="rebuild even if the database looks healthy")
    s.set_defaults(func=run_rebuild)


def _who(name: str | None) -> str:
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _open(path: Path, write: bool):
    """Open the store read-write (``write``) or read-only; say once when this user cannot write it."""
    from napari_medseg.store import CaseStore

    store = CaseStore.open(path, write=write)
    note_read_only(store)
    return store


def note_read_only(store) -> None:  # noqa: ANN001 - CaseStore, imported lazily
    """Print one note on stderr when the user cannot write ``store`` (it was opened read-only)."""
    if not store.writable:
        print(
            f"note: you cannot write to the case store {store.root}; it is opened read-only "
            "(listing, history, export, check and evaluation work; saving, approving and importing do not)",
            file=sys.stderr,
        )


def run_init(args: argparse.Namespace) -> int:
    from napari_medseg.store import CaseStore

    store = CaseStore.init(args.dir, name=args.name, labels=args.labels, modality=args.modality)
    labels = ", ".join(f"{k}={v}" for k, v in store.labels.items())
    print(f"created case folder {store.root} ({labels})")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from napari_medseg.store.msd import is_msd_folder

    store = _open(args.dir, write=True)
    author = _who(args.author)

    def progress(done: int, total: int) -> None:
        if done == total or done % 20 == 0:
            print(f"  imported {done}/{total}", flush=True)

    if len(args.images) == 1 and is_msd_folder(args.images[0]):
        if args.labels:
            raise InputError("a Decathlon folder brings its own labels; do not pass --labels with it")
        if args.case_id:
            raise InputError("a Decathlon folder names its own cases; do not pass --case-id with it")
        from napari_medseg.io.dataset_json import read_dataset_json

        index = read_dataset_json(args.images[0])
        if not store.case_ids() and index.labels:
            store.adopt_labels(index.labels, author)
        pairs = index.training[: args.limit] if args.limit is not None else index.training
        case_ids = None
    else:
        if args.labels is not None and len(args.labels) != len(args.images):
            raise InputError(
                f"got {len(args.images)} scans but {len(args.labels)} label files; give one per scan"
            )
        if args.case_id is not None and len(args.case_id) != len(args.images):
            raise InputError(
                f"got {len(args.images)} scans but {len(args.case_id)} case ids; give one per scan"
            )
        images = args.images[: args.limit] if args.limit is not None else args.images
        labels = args.labels or [None] * len(images)
        pairs = list(zip(images, labels, strict=False))
        case_ids = args.case_id[: len(images)] if args.case_id else None
    report = store.import_batch(
        pairs,
        author=author,
        approved=args.approved,
        progress=progress,
        skip_existing=args.skip_existing,
        case_ids=case_ids,
        keep_going=len(pairs) > 1,  # one scan: its error is the command's error (exit 2)
    )
    print(
        f"imported {len(report.imported)} case(s) into {store.root}"
        + (f", skipped {len(report.skipped)} already there" if report.skipped else "")
    )
    if report.failed:
        print(f"{len(report.failed)} scan(s) could not be imported:", file=sys.stderr)
        for path, message in report.failed:
            print(f"  {path}: {message}", file=sys.stderr)
        return 1
    return 0


def _fmt(value, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def run_list(args: argparse.Namespace) -> int:
    store = _open(args.dir, write=False)
    cases = store.cases()
    if args.sort == "uncertainty":
        cases.sort(key=lambda c: (c.uncertainty is None, -(c.uncertainty or 0.0), c.case_id))
    elif args.sort == "status":
        from napari_medseg.store.schema import STATUSES

        cases.sort(key=lambda c: (STATUSES.index(c.status), c.case_id))
    rows = [("case", "status", "versions", "last editor", "lock", "uncertainty")]
    for c in cases:
        lock = f"{c.lock_owner} since {c.lock_since[:16].replace('T', ' ')}" if c.lock_owner else "-"
        rows.append(
            (c.case_id, c.status, str(c.n_versions), _fmt(c.last_editor), lock, _fmt(c.uncertainty, "{:.3f}"))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    print(f"{len(cases)} case(s)")
    return 0


def run_history(args: argparse.Namespace) -> int:
    store = _open(args.dir, write=False)
    info = store.case(args.case)
    print(
        f"case {info.case_id}: {info.status}"
        + (f", approved version {info.approved_version}" if info.approved_version else "")
    )
    for v in store.versions(args.case):
        kind = "proposal" if v.is_proposal else "edit"
        parts = [f"v{v.number}", v.created_utc[:19].replace("T", " "), v.author, v.source, kind]
        parts.append(f"from v{v.parent}" if v.parent else "first")
        if v.changed_vs_parent is not None:
            parts.append(f"{v.changed_vs_parent} voxels changed")
        if v.dice_vs_proposal is not None:
            parts.append(f"Dice vs proposal {v.dice_vs_proposal:.3f} ({v.changed_vs_proposal} voxels differ)")
        if v.note:
            parts.append(f"note: {v.note}")
        print("  " + " | ".join(parts))
    print("events:")
    for e in store.events(args.case):
        print(f"  {e.time_utc[:19].replace('T', ' ')}  {e.author}: {e.kind} {e.detail}".rstrip())
    return 0


def run_status(args: argparse.Namespace) -> int:
    store = _open(args.dir, write=True)
    author = _who(args.author)
    if args.status is None:
        if not args.comment:
            raise StoreError("give a new status, a --comment, or both")
        store.comment(args.case, author, args.comment)
        print(f"comment recorded on {args.case}")
    else:
        store.set_status(args.case, args.status, author, args.comment)
        print(f"{args.case} is now {args.status}")
    return 0


MEASURE_COLUMNS = (
    "case",
    "version",
    "kind",
    "structure",
    "volume_ml",
    "long_axis_mm",
    "short_axis_mm",
    "slice_k",
)


def run_measure(args: argparse.Namespace) -> int:
    import csv
    import io

    from napari_medseg.io.atomic import atomic_write_bytes
    from napari_medseg.review.measurements import measure_structures

    store = _open(args.dir, write=False)
    names = store.labels
    rows: list[tuple] = []
    for case in store.cases():
        if args.all:
            info = store.latest_version(case.case_id)
        else:
            info = store.version(case.case_id, case.approved_version) if case.approved_version else None
        if info is None:
            continue
        label = store.load_label(case.case_id, info.number)
        kind = "proposal" if info.is_proposal else "person"
        for m in measure_structures(label.array, label.affine, names):
            d = m.diameters
            rows.append(
                (case.case_id, info.number, kind, m.name, round(m.working_ml, 4))
                + ((round(d.long_mm, 2), round(d.short_mm, 2), d.k) if d else (None, None, None))
            )
    if not rows:
        what = "case with a segmentation" if args.all else "approved case (use --all for the others)"
        print(f"no {what} in {store.root}")
        return 0
    table = [MEASURE_COLUMNS, *[tuple("-" if v is None else str(v) for v in r) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(MEASURE_COLUMNS))]
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    if args.csv is not None:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(MEASURE_COLUMNS)
        writer.writerows(rows)
        atomic_write_bytes(args.csv, text.getvalue().encode())
        print(f"wrote {len(rows)} row(s) to {args.csv}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    store = _open(args.dir, write=False)
    if args.format == "nnunetv2":
        from napari_medseg.store.export_nnunet import DEFAULT_DATASET_ID, export_nnunet

        dataset_id = DEFAULT_DATASET_ID if args.dataset_id is None else args.dataset_id
        done = export_nnunet(store, args.out, dataset_id)
        print(
            f"exported {len(done.case_ids)} approved case(s) to {done.folder} (nnU-Net v2 dataset {dataset_id})"
        )
        if any(k != v for k, v in done.relabel.items()):
            pairs = ", ".join(f"{k}->{v}" for k, v in done.relabel.items() if k != v)
            print(f"label values renumbered to be consecutive, as nnU-Net requires: {pairs}")
        return 0
    if args.dataset_id is not None:
        raise StoreError("--dataset-id is for --format nnunetv2")
    from napari_medseg.store.export import MSD_TASK_NAME

    out = store.export(args.out)
    n = sum(1 for _ in (out / "labelsTr").glob("*.nii.gz"))
    print(f"exported {n} approved case(s) to {out}")
    if not MSD_TASK_NAME.match(out.name):
        print(
            "note: nnUNetv2_convert_MSD_dataset only converts folders named TaskNN_Name (one underscore); "
            "rename the folder or use --format nnunetv2"
        )
    return 0


def run_check(args: argparse.Namespace) -> int:
    store = _open(args.dir, write=args.clean)
    report = store.check(clean=args.clean)
    for line in report.lines():
        print(line)
    if args.clean:  # exit 0 only when nothing is left to fix (damaged versions/images cannot be cleaned)
        after = store.check()
        if not after.ok:
            print("problems remain after cleaning:")
            for line in after.lines()[1:-1]:
                print(f"  {line}")
        return 0 if after.ok else 1
    return 0 if report.ok else 1


def run_rebuild(args: argparse.Namespace) -> int:
    from napari_medseg.store import CaseStore
    from napari_medseg.store.rebuild import rebuild_index

    report = rebuild_index(args.dir, force=args.force)
    for line in report.lines():
        print(line)
    CaseStore.open(args.dir, write=True).close()  # opening republishes labelsTr/ and dataset.json
    print(f"rebuilt the index of {Path(args.dir).resolve()}; check it with 'napari-medseg store check'")
    return 1 if report.skipped else 0
