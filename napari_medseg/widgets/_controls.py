"""The run controls the long-work panels share: a Cancel button, a progress bar and a status line."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton


def run_controls(
    on_cancel: Callable[[], object], status: str = ""
) -> tuple[QPushButton, QProgressBar, QLabel]:
    """``(cancel button (disabled until work starts), empty progress bar, word-wrapped status label)``."""
    cancel = QPushButton("Cancel")
    cancel.setEnabled(False)
    cancel.clicked.connect(on_cancel)
    progress = QProgressBar()
    progress.setRange(0, 1)
    progress.setValue(0)
    label = QLabel(status)
    label.setWordWrap(True)
    return cancel, progress, label
