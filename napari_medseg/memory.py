"""Hand freed heap memory back to the operating system between cases.

A reviewer keeps the app open all day. Each case allocates and frees hundreds of MiB (the image, labels,
proposal, the networks' windows, the post-processing), much of it in small and mid-sized blocks that
glibc's allocator keeps in its arenas after they are freed — one arena per thread that allocated, and the
app runs the store, the model and the CPU windows on their own threads. Measured over 60 hippocampus
cases in one viewer (tests/test_gui_all_day.py, bench/RESULTS.md session 9): the process held 1.18–1.23 GiB
from the tenth case on and grew ~1 MiB a case; with :func:`give_back_freed_memory` after each case,
0.93–0.95 GiB, growing ~0.5 MiB a case. Each call takes 2–3 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _malloc_trim():  # noqa: ANN202 - a ctypes function or None
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl or another C library without malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def give_back_freed_memory() -> bool:
    """Return the free pages of every malloc arena to the OS (glibc ``malloc_trim(0)``).

    Returns:
        ``True`` where glibc's ``malloc_trim`` ran (Linux), ``False`` where there is none (macOS, Windows,
        musl): their allocators return memory on their own terms, and nothing else is needed.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
