"""Retraining from corrected labels: fine-tune the current model, compare, promote only if better.

Headless (no Qt): the ``retrain`` command and the Train panel (which runs the command as a separate
process) both call :func:`retrain`.
"""

from napari_medseg.retraining.retrain import RetrainResult, retrain
from napari_medseg.retraining.split import RoundSplit, case_hash, split_for_round

__all__ = ["RetrainResult", "RoundSplit", "case_hash", "retrain", "split_for_round"]
