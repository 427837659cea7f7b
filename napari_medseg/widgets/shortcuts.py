"""Keyboard shortcuts of the review loop, bound on the viewer (listed in the Help panel and README)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import napari

    from napari_medseg.widgets._controller import ReviewController


class Shortcut(NamedTuple):
    key: str
    description: str
    action: Callable[[ReviewController], object]


#: The review loop's shortcuts (napari key syntax).
SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("Alt-N", "open the next case in the queue", lambda c: c.step_case(1)),
    Shortcut("Alt-B", "open the previous case in the queue", lambda c: c.step_case(-1)),
    Shortcut("Alt-R", "run the model on the open case", lambda c: c.run_prediction()),
    Shortcut("Alt-J", "go to the next uncertain region", lambda c: c.step_region(1)),
    Shortcut("Alt-K", "go to the previous uncertain region", lambda c: c.step_region(-1)),
    Shortcut("Alt-U", "show / hide the uncertainty overlay", lambda c: c.toggle_overlay()),
    Shortcut("Alt-S", "save the working labels as a new version", lambda c: c.save()),
    Shortcut("Alt-A", "approve the open case", lambda c: c.approve()),
    Shortcut(
        "Alt-1",
        "axial view through the point under the mouse (anterior up, patient's right on the left)",
        lambda c: c.set_view("axial", through_cursor=True),
    ),
    Shortcut(
        "Alt-2",
        "coronal view through the point under the mouse (superior up, right on the left)",
        lambda c: c.set_view("coronal", through_cursor=True),
    ),
    Shortcut(
        "Alt-3",
        "sagittal view through the point under the mouse (superior up, anterior on the left)",
        lambda c: c.set_view("sagittal", through_cursor=True),
    ),
)


def install_shortcuts(viewer: napari.Viewer, ctrl: ReviewController) -> None:
    """Bind :data:`SHORTCUTS` on ``viewer`` (replacing earlier bindings of the same keys)."""
    for shortcut in SHORTCUTS:

        def handler(_viewer: napari.Viewer, action: Callable = shortcut.action) -> None:
            action(ctrl)

        handler.__doc__ = shortcut.description
        viewer.bind_key(shortcut.key, handler, overwrite=True)


def shortcuts_markdown() -> str:
    """The shortcut table as Markdown (for the README)."""
    rows = ["| Key | Action |", "| --- | --- |"]
    rows += [f"| `{s.key}` | {s.description} |" for s in SHORTCUTS]
    return "\n".join(rows)
