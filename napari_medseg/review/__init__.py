"""Headless review loop: open a case, predict, correct, save, approve (no Qt, no napari).

Public API::

    ReviewSession(store, user=None, model_dir=None, predictor=None)   # see review.session
    label_diff(working, proposal) -> LabelDiff
    queue_order(cases, order="uncertainty", statuses=None) -> list[CaseInfo]
"""

from napari_medseg.review.diff import LabelDiff, label_diff
from napari_medseg.review.queue import queue_order
from napari_medseg.review.session import NETWORKS, ReviewSession, UnsavedChangesError

__all__ = ["NETWORKS", "LabelDiff", "ReviewSession", "UnsavedChangesError", "label_diff", "queue_order"]
