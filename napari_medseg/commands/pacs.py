"""``napari-medseg pacs``: search a PACS, pull a series into a case store, push a reviewed SEG back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_DESCRIPTION = """\
Talk to a PACS over DICOMweb (QIDO-RS search, WADO-RS retrieve, STOW-RS store).

  napari-medseg pacs list --url https://pacs.example.org/dicom-web --modality CT --since 2024-01-01
  napari-medseg pacs pull --url URL --study STUDY_UID [--series SERIES_UID] MYSTORE
  napari-medseg pacs push --url URL MYSTORE CASE [--version N]

Credentials never go on the command line: set MEDSEG_PACS_TOKEN (bearer token), or MEDSEG_PACS_USER and
MEDSEG_PACS_PASSWORD (HTTP basic), or give a credentials file (--auth-file or MEDSEG_PACS_AUTH_FILE; JSON
{"token": ...} or {"username": ..., "password": ...}, readable only by you). TLS certificates are always
verified; give your hospital's CA file with --ca-bundle.

A pulled case keeps its study/series/instance UIDs (.medseg/pacs/<case>.json) but no patient data; with
--deidentify the instances are de-identified first (DICOM PS3.15 basic profile, UIDs remapped the same way
for the whole store), for research stores. 'push' sends the approved version (or --version N) as a DICOM
SEG referencing the pulled series; pushing the same version again sends nothing new, a new version makes a
new SEG series.
"""


def _client_args(p: argparse.ArgumentParser, url_required: bool = True) -> None:
    p.add_argument(
        "--url",
        required=url_required,
        metavar="URL",
        help="DICOMweb base URL, e.g. https://pacs.example.org/dicom-web"
        + ("" if url_required else " (default: the URL the case was pulled from)"),
    )
    p.add_argument(
        "--auth-file", type=Path, default=None, metavar="FILE", help="JSON credentials file (chmod 600)"
    )
    p.add_argument("--ca-bundle", default=None, metavar="PEM", help="CA certificates to trust for https")
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds to wait per request (30)"
    )
    p.add_argument("--retries", type=int, default=2, metavar="N", help="retries after a failed request (2)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pacs`` and its actions (list, pull, push)."""
    p = subparsers.add_parser(
        "pacs",
        help="search a PACS, pull a series into a case store, push a reviewed DICOM SEG back",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])
    sub = p.add_subparsers(dest="pacs_command", metavar="ACTION")

    s = sub.add_parser("list", help="studies (and their series) on the PACS, one line each")
    _client_args(s)
    s.add_argument("--patient", default=None, metavar="ID", help="only this PatientID")
    s.add_argument(
        "--modality", default=None, metavar="MOD", help="only studies with this modality (CT, MR...)"
    )
    s.add_argument("--since", default=None, metavar="DATE", help="only studies on or after YYYY-MM-DD")
    s.add_argument("--study", default=None, metavar="UID", help="only this study")
    s.set_defaults(func=run_list)

    s = sub.add_parser("pull", help="retrieve one image series into a case store as a new case")
    _client_args(s)
    s.add_argument("store", type=Path, metavar="STORE", help="case store folder")
    s.add_argument("--study", required=True, metavar="UID", help="StudyInstanceUID")
    s.add_argument(
        "--series", default=None, metavar="UID", help="SeriesInstanceUID (default: the only image series)"
    )
    s.add_argument(
        "--case-id", default=None, metavar="ID", help="case id (default: derived from the series UID)"
    )
    s.add_argument(
        "--deidentify", action="store_true", help="de-identify (PS3.15 basic profile) before storing"
    )
    s.add_argument("--author", default=None, help="your name (default: your login name)")
    s.set_defaults(func=run_pull)

    s = sub.add_parser(
        "push", help="store a case's approved (or given) label version on the PACS as a DICOM SEG"
    )
    _client_args(s, url_required=False)
    s.add_argument("store", type=Path, metavar="STORE", help="case store folder")
    s.add_argument("case", metavar="CASE", help="case id")
    s.add_argument(
        "--version", type=int, default=None, metavar="N", help="label version (default: the approved one)"
    )
    s.add_argument("--author", default=None, help="your name (default: your login name)")
    s.set_defaults(func=run_push)


def _client(args: argparse.Namespace, url: str | None = None):  # noqa: ANN202 - PacsClient, lazy import
    from napari_medseg.pacs import PacsClient, load_credentials

    return PacsClient(
        url or args.url,
        load_credentials(args.auth_file),
        ca_bundle=args.ca_bundle,
        timeout_s=args.timeout,
        retries=max(0, args.retries),
    )


def _who(name: str | None) -> str:
    from napari_medseg.review.session import default_user

    return name or default_user()


def _progress(label: str):  # noqa: ANN202 - Callable[[int, int], None]
    def report(done: int, total: int) -> None:
        if done == total or done % 20 == 0:
            print(f"  {label} {done}/{total}", file=sys.stderr, flush=True)

    return report


def run_list(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.study:
        studies = [s for s in client.search_studies() if s.study_uid == args.study]
    else:
        studies = client.search_studies(patient_id=args.patient, modality=args.modality, since=args.since)
    if not studies:
        print(f"no study on {client.name} matches")
        return 0
    for study in studies:
        print(study.line())
        for series in client.search_series(study.study_uid):
            print(series.line())
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from napari_medseg.pacs import pull_series
    from napari_medseg.store import CaseStore

    client = _client(args)
    with CaseStore.open(args.store) as store:
        result = pull_series(
            client,
            store,
            args.study,
            args.series,
            author=_who(args.author),
            deidentify_data=args.deidentify,
            case_id=args.case_id,
            progress=_progress("retrieved"),
        )
    print(result.line())
    return 0


def run_push(args: argparse.Namespace) -> int:
    from napari_medseg.pacs import push_version
    from napari_medseg.pacs.push import pushed_source
    from napari_medseg.store import CaseStore

    with CaseStore.open(args.store) as store:
        client = _client(args, args.url or pushed_source(store, args.case).url)
        result = push_version(
            client, store, args.case, args.version, author=_who(args.author), progress=_progress("retrieved")
        )
    print(result.line())
    return 0
