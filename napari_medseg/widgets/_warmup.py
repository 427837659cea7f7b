"""Pay napari's one-off costs of the first case while the user is still choosing one.

The first Image, Labels and Points layers of a process make napari import what it loads lazily (pandas
for the layers' feature tables, pint's unit registry for "mm", parts of scipy) in the GUI thread: on a
512×512×300 CT the first open blocked the event loop 1.07–1.25 s, 0.67–0.86 s with this warm-up
(bench/RESULTS.md, session 9). :func:`start` builds tiny layer *models* of the same kinds and options — no viewer, no
OpenGL, nothing a user sees — in a daemon thread when the panels start, so those imports happen before
the first open instead of inside it.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_THREAD: threading.Thread | None = None


def _build_layers() -> None:
    """One tiny layer of each kind the review opens with, with the options the app passes."""
    import numpy as np
    from napari.layers import Image, Labels, Points

    from napari_medseg.io.napari_view import UNITS
    from napari_medseg.widgets._layers import MARKER_STYLE

    scale = (2.0, 0.7, 0.7)
    Image(np.zeros((2, 4, 4), np.int16), contrast_limits=(-160.0, 240.0), scale=scale, units=UNITS)
    Labels(np.zeros((2, 4, 4), np.uint8), scale=scale, units=UNITS)
    Points(np.zeros((2, 3)), features={"letter": ["A", "P"]}, **MARKER_STYLE)  # the orientation letters


def _run() -> None:
    try:
        _build_layers()
    except Exception:  # noqa: BLE001 - a warm-up that fails only leaves the cost to the first open
        pass


def start() -> threading.Thread:
    """Start the warm-up once per process (later calls return the same thread; join it to wait)."""
    global _THREAD
    with _LOCK:
        if _THREAD is None:
            _THREAD = threading.Thread(target=_run, name="medseg-warmup", daemon=True)
            _THREAD.start()
        return _THREAD
