"""Torch work spread over Python threads, one torch thread each, instead of over OpenMP threads.

``napari_medseg/__init__.py`` sets ``OMP_WAIT_POLICY=PASSIVE``: idle OpenMP workers sleep, so a busy second
core never stalls a barrier (with spinning workers the whole-CT post-processing took 7-9 s instead of
~1 s while another job held a core, bench/RESULTS.md issue 10 session 3). The price is a wake-up at every
parallel torch op. A network forward pass or a post-processing box is hundreds of such ops, and on this
2-core CPU the wake-ups cost a third to a half of the time (bench/RESULTS.md, issue 10 session 8).

Independent pieces of work (sliding windows, post-processing boxes) therefore run on as many Python
threads as torch had threads, each op on one torch thread: the ops release the GIL, so the pieces run
side by side with no OpenMP barrier at all, quiet or loaded.

``torch.set_num_threads`` is process-wide; :func:`python_threads` sets it to 1 for its block and restores
it when the last such block in the process ends (a lock and a depth count cover blocks that overlap in
different threads).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch

_T = TypeVar("_T")
_R = TypeVar("_R")

_LOCK = threading.Lock()
_depth = 0
_saved = 1


@dataclass(frozen=True)
class Workers:
    """Python threads for torch work: ``count`` of them in ``pool``, torch on one thread per op."""

    pool: ThreadPoolExecutor
    count: int

    def map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``[fn(item) for item in items]`` on the threads, each call in the caller's torch modes."""
        return list(self.pool.map(in_caller_modes(fn), items))

    def submit(self, fn: Callable[[_T], _R], item: _T) -> Future[_R]:
        """``fn(item)`` on a thread, in the caller's torch modes."""
        return self.pool.submit(in_caller_modes(fn), item)


@contextmanager
def python_threads(device: torch.device, pieces: int = 2) -> Iterator[Workers | None]:
    """As many Python threads as torch has threads, with torch on one thread per op, for this block.

    Args:
        device: where the work runs; only the CPU gets threads.
        pieces: how many independent pieces there are; fewer than 2 gets none.

    Yields:
        :class:`Workers`, or ``None`` (a GPU, one torch thread, or one piece: run in the calling thread,
        torch's thread count untouched).
    """
    global _depth, _saved
    if device.type != "cpu" or pieces < 2 or (_depth == 0 and torch.get_num_threads() < 2) or _spinning():
        yield None
        return
    with _LOCK:
        if _depth == 0:
            _saved = torch.get_num_threads()
        _depth += 1
        count = _saved
        torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(count, thread_name_prefix="medseg-torch") as pool:
            yield Workers(pool, count)
    finally:
        with _LOCK:
            _depth -= 1
            if _depth == 0:
                torch.set_num_threads(_saved)


@contextmanager
def side_by_side(
    device: torch.device, pieces: int
) -> Iterator[Callable[[Callable[[_T], _R], Sequence[_T]], list[_R]]]:
    """A ``run(fn, items) -> [fn(item), ...]`` for this block: on :func:`python_threads` where they apply
    (each call in the caller's torch modes), else in order in the calling thread."""
    with python_threads(device, pieces) as workers:
        yield workers.map if workers is not None else (lambda fn, items: [fn(item) for item in items])


def _spinning() -> bool:
    """Whether the user asked OpenMP workers to spin (``OMP_WAIT_POLICY=ACTIVE``): then an idle worker of
    torch's own team keeps a core busy for good, and Python threads beside it would share what is left
    (CT example, 2 cores, spinning: 10.2 s with the threads, 7.8 s with the windows one after another)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "ACTIVE"


def in_caller_modes(fn: Callable[[_T], _R]) -> Callable[[_T], _R]:
    """``fn`` wrapped to run in the calling thread's inference and grad modes (both are thread-local)."""
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def call(item: _T) -> _R:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return fn(item)

    return call
