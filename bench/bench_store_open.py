"""What the store's safety checks cost: opening, loading a label, check, rebuild, on a real-sized store.

Usage: python bench/bench_store_open.py [--data ../shared/data] [--cases 240] [--repeat 5]

Builds a store of N MSD hippocampus cases (all approved) in a temporary folder, then prints the median
wall time of: a plain ``sqlite3.connect`` + one query (the floor), ``CaseStore.open`` (header check,
``PRAGMA quick_check``, labelsTr/dataset.json agreement = one sha256 per approved label), the same open
read-only, ``load_label`` (sha256 verified) against a plain ``load_labels`` of the same file,
``store check`` (every version sha256 + every image re-read and checksummed), and ``store rebuild``
(``--force``) from the sidecars. There is no MONAI counterpart to compare with: the ratios are against
the unchecked floor measured in the same run.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def median_ms(fn, repeat: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cases", type=int, default=240)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from napari_medseg.io import load_labels
    from napari_medseg.store import CaseStore
    from napari_medseg.store.rebuild import rebuild_index

    hippo = args.data / "msd-hippocampus"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = CaseStore.init(root, labels={0: "background", 1: "Anterior", 2: "Posterior"})
        start = time.perf_counter()
        ids = store.import_msd_folder(hippo, limit=args.cases, approved=True, author="bench")
        import_s = time.perf_counter() - start
        store.close()
        db = root / ".medseg" / "store.sqlite"
        case = ids[len(ids) // 2]

        def plain() -> None:
            conn = sqlite3.connect(db)
            conn.execute("SELECT COUNT(*) FROM cases").fetchone()
            conn.close()

        def open_rw() -> None:
            CaseStore.open(root).close()

        def open_ro() -> None:
            CaseStore.open(root, write=False).close()

        opened = CaseStore.open(root)
        path = opened.version(case, 1).path
        rows = [
            ("sqlite3.connect + 1 query (floor)", median_ms(plain, args.repeat)),
            ("CaseStore.open, read-write (checks + labelsTr agreement)", median_ms(open_rw, args.repeat)),
            ("CaseStore.open, read-only", median_ms(open_ro, args.repeat)),
            (
                "load_labels of a version file (no checksum)",
                median_ms(lambda: load_labels(path), args.repeat),
            ),
            (
                "CaseStore.load_label (sha256 verified)",
                median_ms(lambda: opened.load_label(case, 1), args.repeat),
            ),
            ("store check (versions + images)", median_ms(lambda: opened.check(), 1)),
        ]
        opened.close()
        rows.append(
            ("store rebuild --force (from sidecars)", median_ms(lambda: rebuild_index(root, force=True), 1))
        )
        print(f"store of {len(ids)} approved hippocampus cases (import took {import_s:.1f} s)")
        floor = rows[0][1]
        for name, ms in rows:
            print(f"| {name} | {ms:.1f} ms | {ms / floor:.1f}x floor |")


if __name__ == "__main__":
    main()
