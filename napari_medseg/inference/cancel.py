"""Cooperative cancellation of long computations.

A :class:`CancelToken` is shared between the caller (a widget's *Cancel* button, Ctrl-C handler) and
the worker. The worker calls :meth:`CancelToken.check` between units of work (one window batch in the
inference engine), which raises :class:`~napari_medseg.errors.Cancelled` once :meth:`cancel` was called.
"""

from __future__ import annotations

import threading

from napari_medseg.errors import Cancelled


class CancelToken:
    """Thread-safe cancel flag.

    Example:
        >>> token = CancelToken()
        >>> token.cancel()
        >>> token.cancelled
        True
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the worker to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancel` has been called."""
        if self._event.is_set():
            raise Cancelled("cancelled by the user")
