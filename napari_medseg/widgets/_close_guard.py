"""Closing the napari window with unsaved label edits asks first (save / discard / stay).

napari has no public "about to close" hook, so an event filter watches the main window's ``Close``
event; it runs before napari's own ``closeEvent``. Answering *Cancel* ignores the event and the
window stays open; *Save* saves a new version through the store first; *Discard* drops the edits
and gives the case lock back. Every close is guarded (the window's close button, File > Quit and
``viewer.close()``), since each of them would otherwise drop the edits silently.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QObject

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

    def eventFilter(self, obj: QObject, event: Any) -> bool:  # noqa: N802 - Qt's name
        if event.type() != QEvent.Close or obj is not self.parent():
            return False
        ctrl = self._ctrl()
        if ctrl is None or ctrl.confirm_close():
            return False
        event.ignore()
        return True  # consumed: napari never sees it, the window stays


def install_close_guard(viewer: napari.Viewer, ctrl: ReviewController) -> CloseGuard | None:
    """Guard ``viewer``'s main window; ``None`` when the viewer has no Qt window (headless model)."""
    window = getattr(getattr(viewer, "window", None), "_qt_window", None)
    if window is None:
        return None
    guard = CloseGuard(ctrl, window)
    window.installEventFilter(guard)
    return guard
