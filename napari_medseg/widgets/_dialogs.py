"""Questions the panels ask the user (tests replace these functions with ``monkeypatch``)."""

from __future__ import annotations

from typing import Literal


def _parent():  # noqa: ANN202 - the active window, if any
    from qtpy.QtWidgets import QApplication

    return QApplication.activeWindow()


def ask_unsaved(case_id: str) -> Literal["save", "discard", "cancel"]:
    """Case ``case_id`` has unsaved edits: save them, discard them, or stay on the case?"""
    from qtpy.QtWidgets import QMessageBox

    box = QMessageBox(_parent())
    box.setIcon(QMessageBox.Warning)
    box.setWindowTitle("Unsaved edits")
    box.setText(f"Case {case_id} has edits that are not saved.")
    box.setInformativeText("Save them as a new version before leaving the case?")
    box.setStandardButtons(QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel)
    box.setDefaultButton(QMessageBox.Save)
    answer = box.exec_()
    return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")


def ask_save_as_new(message: str) -> bool:
    """A save was refused as stale (``message`` says who saved and when): save as a new version?"""
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        _parent(),
        "Case changed by someone else",
        f"{message}\n\nSave your labels as a new version on top of theirs (both are kept)?",
        QMessageBox.Yes | QMessageBox.No,
        QMessageBox.Yes,
    )
    return answer == QMessageBox.Yes


def ask_break_lock(message: str) -> bool:
    """The case is locked by someone else (``message``): break the lock (only if it is stale)?"""
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        _parent(),
        "Case locked",
        f"{message}\n\nBreak the lock? Only do this if that session has crashed.",
        QMessageBox.Yes | QMessageBox.No,
        QMessageBox.No,
    )
    return answer == QMessageBox.Yes
