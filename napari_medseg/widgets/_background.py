"""Run slow store work (reading a whole CT, compressing a save) off the GUI thread, in order.

:func:`run_in_background` hands a function to a worker thread and keeps Qt's event loop running until
it returns, so the canvas repaints, scrolls and takes paint strokes while a 512x512x300 case is read or
saved, yet the caller still gets the result (or the exception) in line, like a plain call. That keeps
the panels' code and their tests as simple as before, and no half-opened case is ever shown.

While such a call runs, the controller is *busy*: actions that would change the session (open another
case, save again, approve...) are refused with a notification instead of running inside the wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")

#: One worker: store work of one viewer runs in the order it was asked for.
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medseg-store")
#: How often the waiting event loop looks whether the worker is done (ms).
POLL_MS = 10


def run_in_background(fn: Callable[[], T], description: str) -> T:
    """``fn()`` in the store worker thread; the Qt event loop keeps running meanwhile.

    Args:
        fn: the work; it must not touch Qt or napari objects.
        description: shown in napari's activity dock while it runs (e.g. ``"Opening ct300"``).

    Returns:
        What ``fn`` returned; an exception it raised is raised here, in the GUI thread.
    """
    from qtpy.QtCore import QCoreApplication, QEventLoop, QTimer

    if QCoreApplication.instance() is None or threading.current_thread() is not threading.main_thread():
        return fn()  # no event loop to keep alive (scripts) or already off the GUI thread
    future: Future = _POOL.submit(fn)
    wait([future], timeout=0.05)  # quick work (a small case) needs no progress bar or nested loop
    if not future.done():
        loop = QEventLoop()
        timer = QTimer()
        timer.setInterval(POLL_MS)
        timer.timeout.connect(lambda: loop.quit() if future.done() else None)
        bar = _indeterminate_progress(description)
        timer.start()
        try:
            while not future.done():
                loop.exec_()
        finally:
            timer.stop()
            if bar is not None:
                bar.close()
    return future.result()


def _indeterminate_progress(description: str) -> Any:
    try:
        from napari.utils import progress
    except ImportError:  # pragma: no cover - napari is a dependency of the widgets
        return None
    return progress(total=0, desc=description)
