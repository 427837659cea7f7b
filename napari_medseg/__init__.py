"""napari-medseg: review, correct and retrain 3D medical segmentations.

The package is split into a headless core (``io``, ``store``, ``models``, ``inference``,
``training``, ``evaluation``) that never imports Qt or napari, and thin napari widgets
(``widgets``) plus the npe2 adapters (``_napari``) that wire the core to layers.
"""

import os

# Before torch loads its OpenMP runtime: idle OpenMP threads sleep instead of spinning. With another job on
# one of 2 cores, spinning threads wait for a descheduled peer at every barrier: the 512x512x300
# post-processing took 7-9.5 s with 2 threads instead of 0.7-1.5 s (bench/RESULTS.md, issue 10 session 3).
# A policy the user sets in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Large torch CPU tensors on transparent huge pages (2 MiB, where the kernel offers them on request): the
# post-processing of a 512x512x300 pair map touches ~1 GB of fresh tensors per run; with 4 KiB pages its
# page faults (100k+) cost 0.1-1 s of system time and made it vary 0.5-1.5 s; with huge pages 0.41-0.5 s
# (bench/RESULTS.md, issue 10 session 4). numpy already asks for huge pages on its large arrays.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from napari_medseg.bundled import resource_path  # noqa: E402

__version__ = "0.1.0"

#: Folder with the bundled sample cases and default models (package data ``napari_medseg/resources``,
#: found through :func:`napari_medseg.bundled.resource_path`).
RESOURCES_DIR = resource_path()
