"""The promotion rule: a newly trained model replaces the current one only if it is not worse.

Both models must have been scored on the *same* validation cases (the caller evaluates them side by
side); the rule compares one summary metric (default: mean foreground Dice) and, optionally, refuses a
candidate that loses more than ``max_class_drop`` on any single class.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionRule:
    """When is a candidate good enough to replace the current model?

    Attributes:
        metric: key of the summary metric in the metrics dict (higher is better).
        min_delta: candidate[metric] must be >= current[metric] + min_delta (0.0 = "not worse").
        max_class_drop: largest allowed drop of any per-class Dice (keys ``dice_<class>``); ``None`` = no check.
    """

    metric: str = "dice_mean"
    min_delta: float = 0.0
    max_class_drop: float | None = 0.02


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(candidate: dict[str, float], current: dict[str, float] | None, rule: PromotionRule) -> Decision:
    """Apply ``rule`` to the candidate's and the current model's validation metrics."""
    if rule.metric not in candidate:
        return Decision(False, f"the candidate has no {rule.metric!r} score, so it cannot be compared")
    new = float(candidate[rule.metric])
    if current is None or rule.metric not in current:
        return Decision(True, f"no current model to compare with; {rule.metric} = {new:.4f}")
    old = float(current[rule.metric])
    if new < old + rule.min_delta:
        return Decision(
            False,
            f"{rule.metric} {new:.4f} is below the current model's {old:.4f}"
            + (f" + {rule.min_delta:.4f}" if rule.min_delta else "")
            + "; the current model stays",
        )
    if rule.max_class_drop is not None:
        for key, old_value in current.items():
            if key.startswith("dice_") and key != rule.metric and key in candidate:
                drop = float(old_value) - float(candidate[key])
                if drop > rule.max_class_drop:
                    return Decision(
                        False,
                        f"{key} drops by {drop:.4f} ({old_value:.4f} -> {candidate[key]:.4f}), more than the "
                        f"allowed {rule.max_class_drop:.4f}; the current model stays",
                    )
    return Decision(True, f"{rule.metric} {new:.4f} >= current {old:.4f}")
