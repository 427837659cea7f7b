"""Curriculum for label correction: cases whose two peers agree most are corrected first.

During each epoch the trainer records, per training case, the Dice between the two networks'
predictions on that case's sample (mean over foreground classes). After ``warmup_epochs`` the
curriculum admits a growing share of the cases into label correction — ``start_fraction`` at the
first epoch after warm-up, rising linearly to all cases over ``ramp_epochs`` — most agreeing first.
Admission is monotonic: a case once admitted stays admitted (its learned label is not thrown away).
"""

from __future__ import annotations

import numpy as np
import torch


def peer_dice(pred_a: torch.Tensor, pred_b: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean foreground Dice between two label maps per sample.

    Args:
        pred_a, pred_b: (B, D, H, W) int64 predictions.
    Returns:
        (B,) float; a class absent from both predictions counts as agreement (1.0).
    """
    scores = []
    for c in range(1, num_classes):
        a = (pred_a == c).flatten(1).float()
        b = (pred_b == c).flatten(1).float()
        inter = (a * b).sum(1)
        denom = a.sum(1) + b.sum(1)
        scores.append(torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom)))
    return torch.stack(scores, 1).mean(1)


class AgreementCurriculum:
    """Per-case peer agreement and the admission schedule into label correction.

    Args:
        n_cases: number of training cases.
        warmup_epochs: epochs with no case admitted.
        start_fraction: share admitted at epoch ``warmup_epochs``.
        ramp_epochs: epochs from ``start_fraction`` to all cases.
    """

    def __init__(
        self, n_cases: int, warmup_epochs: int = 3, start_fraction: float = 0.25, ramp_epochs: int = 5
    ):
        self.n_cases = n_cases
        self.warmup_epochs = warmup_epochs
        self.start_fraction = start_fraction
        self.ramp_epochs = ramp_epochs
        self.sum = np.zeros(n_cases)
        self.count = np.zeros(n_cases)
        self.last = np.full(n_cases, np.nan)

    def fraction(self, epoch: int) -> float:
        """Share of cases admitted after (0-based) ``epoch`` has ended."""
        done = epoch + 1 - self.warmup_epochs
        if done <= 0:
            return 0.0
        if self.ramp_epochs <= 0:
            return 1.0
        return min(1.0, self.start_fraction + (1.0 - self.start_fraction) * (done - 1) / self.ramp_epochs)

    def record(self, case_index: torch.Tensor, agreement: torch.Tensor) -> None:
        """Accumulate this epoch's per-sample agreement ((B,) each)."""
        for case, score in zip(case_index.tolist(), agreement.detach().cpu().tolist(), strict=True):
            self.sum[case] += score
            self.count[case] += 1

    def end_epoch(self) -> np.ndarray:
        """Close the epoch: per-case mean agreement (kept for cases not seen this epoch); resets sums."""
        seen = self.count > 0
        self.last[seen] = self.sum[seen] / self.count[seen]
        self.sum[:] = 0
        self.count[:] = 0
        return self.last.copy()

    def admit(self, epoch: int, admitted: np.ndarray) -> np.ndarray:
        """New admission mask after ``epoch``: ``admitted`` plus the most agreeing others up to the share."""
        want = int(round(self.fraction(epoch) * self.n_cases))
        out = admitted.copy()
        missing = want - int(out.sum())
        if missing <= 0:
            return out
        score = np.where(np.isnan(self.last), -np.inf, self.last)
        order = [i for i in np.argsort(-score, kind="stable") if not out[i]]
        out[order[:missing]] = True
        return out

    def state_dict(self) -> dict:
        return {"last": self.last.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.last = np.asarray(state["last"], dtype=float)
