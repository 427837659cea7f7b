"""How a working label map differs from the model's proposal (what the reviewer changed).

Both maps are integer ``(I, J, K)`` arrays on the same voxel grid. A voxel is *changed* when its
label differs; a changed voxel is *added* when the working map labels it foreground (it gained a
label or changed class) and *removed* when the working map sets it back to background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_medseg.errors import GeometryError
from napari_medseg.store.provenance import mean_foreground_dice

#: Values of :attr:`LabelDiff.map`.
UNCHANGED, ADDED, REMOVED = 0, 1, 2


@dataclass(eq=False)
class LabelDiff:
    """Working labels versus proposal.

    Attributes:
        map: uint8 ``(I, J, K)``: 0 unchanged, 1 added (foreground in the working map that the
            proposal labels differently), 2 removed (proposal foreground set to background).
        added: number of added voxels.
        removed: number of removed voxels.
        changed: voxels whose label differs (``added + removed``).
        dice: Dice(proposal, working), mean over the foreground classes present in either (1.0 when
            neither has foreground).
    """

    map: np.ndarray
    added: int
    removed: int
    changed: int
    dice: float

    def summary(self) -> str:
        """One line for the UI, e.g. ``"412 voxels changed (+300 / -112), Dice 0.954"``."""
        return f"{self.changed} voxels changed (+{self.added} / -{self.removed}), Dice {self.dice:.3f}"


def label_diff(working: np.ndarray, proposal: np.ndarray) -> LabelDiff:
    """Compare ``working`` to ``proposal`` (both ``(I, J, K)`` integer label maps)."""
    working = np.asarray(working)
    proposal = np.asarray(proposal)
    if working.shape != proposal.shape:
        raise GeometryError(
            f"working labels {working.shape} and proposal {proposal.shape} are not on one grid"
        )
    changed = working != proposal
    added = changed & (working != 0)
    removed = changed & (working == 0)
    out = np.zeros(working.shape, dtype=np.uint8)
    out[added] = ADDED
    out[removed] = REMOVED
    n_added = int(np.count_nonzero(added))
    n_removed = int(np.count_nonzero(removed))
    return LabelDiff(
        map=out,
        added=n_added,
        removed=n_removed,
        changed=n_added + n_removed,
        dice=mean_foreground_dice(proposal, working),
    )
