"""PACS round-trip timings against a local Orthanc (DICOMweb plugin), same run, same machine.

    python bench/bench_pacs.py [--repeat 3]

Needs Debian's ``orthanc`` + ``orthanc-dicomweb`` (started on a free loopback port by the test helper
``tests/_orthanc.py``) and ``../shared/data/ibsi-sts-ct/dicom/STS_001`` (59-slice CT, 202 x 198).

Measured (median of ``--repeat`` runs):

* ``pull``: ``pull_series`` (QIDO + WADO-RS one instance at a time into a temporary folder, the store's
  DICOM import, UID record) into a fresh store;
* baseline ``stock``: dicomweb-client ``retrieve_series`` + writing the files + ``load_series`` (what a
  script would do, without a store), and ``disk``: ``load_series`` of the same files already on disk;
* ``push``: ``push_version`` of a new version (WADO-RS of the source series, SEG build with highdicom,
  STOW-RS, QIDO check); ``re-push``: the same version again (one QIDO query, nothing sent).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--study", type=Path, default=REPO.parent / "shared" / "data" / "ibsi-sts-ct" / "dicom" / "STS_001"
    )
    args = parser.parse_args()

    from _orthanc import Orthanc, missing_reason

    from napari_medseg.io.dicom import load_series
    from napari_medseg.pacs import Credentials, PacsClient, pull_series, push_version
    from napari_medseg.store import CaseStore

    if missing_reason():
        print(missing_reason())
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="bench-pacs-"))
    server = Orthanc(tmp / "orthanc").start()
    try:
        server.upload_folder(args.study)
        client = PacsClient(server.dicomweb_url, Credentials("basic", "bench", *server.auth))
        study = client.search_studies()[0].study_uid
        ct = client.search_series(study, modality="CT")[0].series_uid
        counter = iter(range(1000))

        def pull() -> None:
            with CaseStore.init(tmp / f"store{next(counter)}", labels={0: "bg", 1: "tumour"}) as store:
                pull_series(client, store, study, author="bench")

        def stock() -> None:
            folder = tmp / f"stock{next(counter)}"
            folder.mkdir()
            for i, ds in enumerate(client._client.retrieve_series(study, ct)):
                ds.save_as(str(folder / f"{i:06d}.dcm"), enforce_file_format=True)
            load_series(folder)

        disk_folder = args.study / "CT" / "image"
        t_pull = _median_s(pull, args.repeat)
        t_stock = _median_s(stock, args.repeat)
        t_disk = _median_s(lambda: load_series(disk_folder), args.repeat)

        store = CaseStore.init(tmp / "push-store", labels={0: "bg", 1: "tumour"})
        case = pull_series(client, store, study, author="bench").case_id
        labels = np.zeros(store.load_image(case).shape, np.uint8)
        labels[60:120, 70:130, 20:35] = 1
        state = {"n": 0}

        def push_new() -> None:
            state["n"] += 1
            labels[60:120, 70:130, 35 + state["n"]] = 1  # a new version each time
            store.save_version(case, labels, author="bench")
            push_version(client, store, case, state["n"], author="bench")

        t_push = _median_s(push_new, args.repeat)
        t_repush = _median_s(lambda: push_version(client, store, case, 1, author="bench"), args.repeat)
    finally:
        server.stop()
    print(f"series: 59 CT instances 202x198, Orthanc on loopback, median of {args.repeat}")
    print(f"pull into a store      {t_pull:6.2f} s")
    print(f"stock retrieve+load    {t_stock:6.2f} s   (pull / stock = {t_pull / t_stock:.2f})")
    print(f"load from disk only    {t_disk:6.2f} s")
    print(f"push new version (SEG) {t_push:6.2f} s")
    print(f"re-push same version   {t_repush:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
