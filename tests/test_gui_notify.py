"""Information toasts give way to the next one; errors stay until the user closes them (real napari toasts)."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_medseg.errors import MedsegError  # noqa: E402
from napari_medseg.widgets import _notify  # noqa: E402

pytestmark = pytest.mark.gui


def _on_screen(qtbot) -> list[str]:
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    qtbot.wait(50)
    return [
        w.message.text()
        for w in QApplication.allWidgets()
        if isinstance(w, NapariQtNotification) and w.isVisible()
    ]


def test_a_day_of_messages_does_not_pile_up_over_the_image(make_napari_viewer, qtbot):
    make_napari_viewer(show=True)
    _notify.report(MedsegError("the file is not a NIfTI image"))
    for k in range(5):  # e.g. "saved ... version k", one after another
        _notify.info(f"saved case_{k} version 2")
    shown = _on_screen(qtbot)
    assert [m for m in shown if m.startswith("saved")] == ["saved case_4 version 2"]
    assert "the file is not a NIfTI image" in shown  # an error waits for the user


def test_the_same_error_again_replaces_the_one_on_screen(make_napari_viewer, qtbot):
    make_napari_viewer(show=True)
    for _ in range(3):  # e.g. Run pressed three times on a case outside the model's domain
        _notify.report(MedsegError("this case is outside the model's training domain"))
    _notify.report(MedsegError("the store is read-only"))
    shown = _on_screen(qtbot)
    assert shown.count("this case is outside the model's training domain") == 1
    assert "the store is read-only" in shown  # a different error is still shown beside it
