"""Where the review panels go in the napari window, so that all of them are usable on a 1920×1080 screen.

The Cases panel (the queue) stays visible at the top right; every other panel is a tab below it, each
inside a scroll area, so no panel pushes another (or napari's slice slider) off the screen. Tabs are titled
with the panel's name only ("Uncertainty", not "Uncertainty (napari-medseg)").
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication, QDockWidget, QScrollArea

if TYPE_CHECKING:
    import napari

PLUGIN = "napari-medseg"
#: Panels in the order of the loop; the first one sits alone above the tabs of the others.
REVIEW_PANELS = ("Cases", "Predict", "Uncertainty", "Review", "Tools", "Train", "Failures", "Help")
#: Width of the dock column (px): the Cases table's columns fit without clipping.
DOCK_WIDTH = 580


def _scrollable(dock: QDockWidget) -> None:
    """Put the dock's panel in a scroll area (a tall panel scrolls instead of growing the dock)."""
    inner = dock.widget()
    if inner is None or isinstance(inner, QScrollArea):
        return
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.NoFrame)
    inner.setParent(None)
    area.setWidget(inner)
    dock.setWidget(area)


def dock_review_panels(
    viewer: napari.Viewer, names: tuple[str, ...] = REVIEW_PANELS
) -> tuple[dict[str, QDockWidget], dict[str, Any]]:
    """Dock ``names`` on the right (first alone, the rest tabified) and size the window to the screen.

    Returns:
        ``(docks, panels)`` by panel name; a panel that fails to load is skipped with a warning.
    """
    docks: dict[str, QDockWidget] = {}
    panels: dict[str, Any] = {}
    for i, name in enumerate(names):
        try:
            dock, panel = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=i > 1)
        except Exception as err:  # noqa: BLE001 - a missing optional panel must not stop the others
            print(f"warning: panel {name} not available ({err})", file=sys.stderr)
            continue
        dock.setWindowTitle(name)
        if i > 0:
            _scrollable(dock)
        docks[name], panels[name] = dock, panel
    fit_to_screen(viewer, list(docks.values()))
    if len(names) > 1 and names[1] in docks:  # the first tab of the loop in front, not the last one added
        docks[names[1]].raise_()
        QTimer.singleShot(0, docks[names[1]].raise_)
    return docks, panels


def fit_to_screen(viewer: napari.Viewer, docks: list[QDockWidget]) -> None:
    """Size the window to the screen's free area and give the dock column :data:`DOCK_WIDTH`."""
    from qtpy.QtCore import Qt

    window = viewer.window._qt_window  # napari's QMainWindow: the docks' parent
    screen = QApplication.primaryScreen()
    if screen is not None:
        free = screen.availableGeometry()
        window.setGeometry(free)
    if docks:
        window.resizeDocks(docks[:1], [DOCK_WIDTH], Qt.Horizontal)


#: File patterns our reader should open by default (napari asks otherwise, preselecting its own reader).
READER_PATTERNS = ("*.nii.gz", "*.nii")


def prefer_our_reader() -> list[str]:
    """Make napari-medseg the reader for NIfTI files unless the user already chose one for them.

    npe2 gives readers no priority (several matching readers make napari ask, with its builtin reader
    preselected, which fails on ``.nii.gz``); napari's own remedy is the per-pattern preference that its
    "remember" box in that dialog writes. Set it once, only where the user has no choice of their own;
    returns the patterns that were set.
    """
    from napari.settings import get_settings

    plugins = get_settings().plugins
    prefs = dict(plugins.extension2reader)
    added = [p for p in READER_PATTERNS if p not in prefs]
    if added:
        plugins.extension2reader = {**prefs, **dict.fromkeys(added, PLUGIN)}
    return added
