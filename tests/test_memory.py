"""Freed heap memory goes back to the OS between cases (napari_medseg.memory)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from napari_medseg import memory

# A fresh interpreter: 240 MiB in 4 KiB malloc blocks, one in 64 kept so the heap cannot shrink from its
# top by itself, as after a case whose arrays are gone while the next case's live on.
_PROBE = textwrap.dedent(
    """
    import os
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    blocks = [bytearray(4096) for _ in range(60_000)]
    keep = blocks[::64]
    del blocks
    before = rss()
    from napari_medseg.memory import give_back_freed_memory
    ran = give_back_freed_memory()
    print(ran, before, rss())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux")
def test_freed_blocks_leave_the_process() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    ran, before, after = out.stdout.split()
    assert ran == "True"
    assert float(before) - float(after) > 150, (before, after)  # MiB: the freed ~235 MiB went back


def test_without_malloc_trim_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)  # macOS, Windows, musl
    assert memory.give_back_freed_memory() is False


def test_a_c_library_without_malloc_trim_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTrim:
        def __init__(self, *_args: object) -> None:
            pass

    memory._malloc_trim.cache_clear()
    monkeypatch.setattr(memory.ctypes, "CDLL", NoTrim)
    try:
        assert memory._malloc_trim() is None
    finally:
        memory._malloc_trim.cache_clear()
