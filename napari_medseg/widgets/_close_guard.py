"""Closing the napari window with unsaved label edits asks first (save / discard / stay), once.

Three ways close a napari window, and each must survive *Cancel*:

* the window's close button sends Qt's ``Close`` event: an event filter (it runs before napari's own
  ``closeEvent``) asks and, on *Cancel*, ignores the event;
* ``viewer.close()`` clears the layer list and napari's ``Window.close`` tears the canvas down *before*
  the Qt window closes, so asking in the event filter would be too late: the guard wraps both and asks
  first;
* File > Close Window / Exit call the Qt window's ``close(quit_app, confirm_need)``, which shows napari's
  own "close?" question when that setting is on: with unsaved edits the guard asks its own question
  instead (save / discard / stay says more) and skips napari's, so there is one question, not two.

*Save* saves a new version through the store first; *Discard* drops the edits and gives the case lock
back. A question answered once is not asked again by the event filter of the same close.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QObject, QTimer

if TYPE_CHECKING:
    import napari

    from napari_medseg.widgets._controller import ReviewController


class CloseGuard(QObject):
    """Event filter on the viewer's main window that asks ``ctrl`` before the window closes.

    Holds the controller only weakly and the window only as its Qt parent: the controller lives in
    a per-viewer weak map, and a strong path back to the viewer would keep every viewer alive.
    """

    def __init__(self, ctrl: ReviewController, window: QObject) -> None:
        super().__init__(window)
        self._ctrl = weakref.ref(ctrl)
        self._answered = False  # this close was already asked about (by a wrapped close call)

    def unsaved(self) -> bool:
        """``True`` when the open case has edits that a close would drop."""
        ctrl = self._ctrl()
        return ctrl is not None and ctrl.has_unsaved_edits()

    def ask(self) -> bool:
        """Ask about unsaved edits (if any); ``False`` = the user chose to stay."""
        ctrl = self._ctrl()
        ok = ctrl is None or ctrl.confirm_close()
        self._answered = ok
        return ok

    def eventFilter(self, obj: QObject, event: Any) -> bool:  # noqa: N802 - Qt's name
        if event.type() != QEvent.Close or obj is not self.parent():
            return False
        if self._answered:  # asked by the wrapped close that sent this event
            self._answered = False
            return False
        had_edits = self.unsaved()
        if not self.ask():
            event.ignore()
            return True  # consumed: napari never sees it, the window stays
        if had_edits and event.spontaneous():
            # the close button: napari would now ask its own "close?"; close again from code instead
            # (not spontaneous: napari does not ask), so the user answers one question
            event.ignore()
            window = self.parent()
            QTimer.singleShot(0, window.close)
            return True
        self._answered = False
        return False


def install_close_guard(viewer: napari.Viewer, ctrl: ReviewController) -> CloseGuard | None:
    """Guard ``viewer``'s main window; ``None`` when the viewer has no Qt window (headless model)."""
    napari_window = getattr(viewer, "window", None)
    window = getattr(napari_window, "_qt_window", None)
    if window is None:
        return None
    guard = CloseGuard(ctrl, window)
    window.installEventFilter(guard)

    qt_close = window.close

    def close_qt_window(quit_app: bool = False, confirm_need: bool = False) -> Any:
        """File > Close Window / Exit: our question replaces napari's when there are unsaved edits."""
        if _alive(guard) and guard.unsaved():
            if not guard.ask():
                return None
            confirm_need = False  # answered: no second question
        return qt_close(quit_app=quit_app, confirm_need=confirm_need)

    window.close = close_qt_window

    for owner in (napari_window, viewer):  # Window.close and Viewer.close (which first clears the layers)
        _ask_before(owner, guard)
    return guard


def _ask_before(owner: Any, guard: CloseGuard) -> None:
    """Make ``owner.close()`` ask about unsaved edits before it tears anything down."""
    original = owner.close

    def close(*args: Any, **kwargs: Any) -> Any:
        if _alive(guard) and guard.unsaved() and not guard.ask():
            return None  # the user stays: nothing was torn down
        return original(*args, **kwargs)

    close.__doc__ = original.__doc__
    object.__setattr__(owner, "close", close)  # an instance attribute (the viewer is a pydantic model)


def _alive(guard: CloseGuard) -> bool:
    """``False`` once Qt has deleted the guard (with its window): nothing left to ask about."""
    try:
        return guard.parent() is not None
    except RuntimeError:
        return False
