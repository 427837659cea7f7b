"""The one path from a prediction to the case store, and back when a case is reopened.

Every prediction made for a store case (demo scoring, ``predict --store``, the Predict panel) goes through
:func:`store_prediction`:

* the proposal is saved once as a proposal version, with its uncertainty map and regions beside it
  (:mod:`napari_medseg.store.proposal_files`); a proposal identical to the case's latest one (same labels,
  same model) is not saved again;
* a label made by a person (an imported reference or a reviewer's save) stays the case's working label:
  a proposal stored after it is shown beside it, never loaded in its place
  (:func:`working_version`), and ``predict --store`` leaves such cases alone;
* the case's uncertainty score (review queue order) is recorded only for a prediction inside the model's
  training domain: a run the user insisted on outside it never ranks as if it were trustworthy.

:func:`load_stored_prediction` gives back what was stored, so opening a case shows proposal and overlay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari_medseg.inference.prediction import Prediction
    from napari_medseg.inference.regions import Region
    from napari_medseg.io.volume import Volume
    from napari_medseg.models.domain import DomainCheck
    from napari_medseg.store import CaseStore
    from napari_medseg.store.records import VersionInfo


@dataclass
class StoredProposal:
    """What :func:`store_prediction` did.

    Attributes:
        version: the proposal version holding this prediction (new, or the identical earlier one).
        created: ``True`` when a new version was written.
        scored: ``True`` when the case's uncertainty score was recorded.
        reason: one sentence when the proposal was reused or a person's label stays the working label.
    """

    version: VersionInfo
    created: bool
    scored: bool
    reason: str = ""


@dataclass
class StoredPrediction:
    """A case's latest stored proposal with what was kept beside it.

    Attributes:
        version: the proposal version.
        labels: the proposal ``(I, J, K)`` uint8.
        uncertainty: ``(I, J, K)`` float32 in [0, 1], or ``None`` (stored before maps were kept).
        regions: ranked uncertain regions.
        summary: the prediction's summary (model, net, score, domain check), ``{}`` if none was kept.
    """

    version: VersionInfo
    labels: np.ndarray
    uncertainty: np.ndarray | None
    regions: list[Region] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def outside_domain(self) -> bool:
        """``True`` when the proposal was made on a case outside the model's training domain."""
        return (self.summary.get("domain") or {}).get("inside") is False


def is_human(version: VersionInfo) -> bool:
    """``True`` for a label a person made (an imported reference or a save), not a model proposal."""
    return not version.is_proposal and not version.source.startswith("model:")


def human_reference(store: CaseStore, case_id: str) -> VersionInfo | None:
    """The newest label version a person made for the case, or ``None``."""
    for version in reversed(store.versions(case_id)):
        if is_human(version):
            return version
    return None


def working_version(store: CaseStore, case_id: str) -> VersionInfo | None:
    """The version a reviewer starts from: the newest human label, else the newest proposal, else ``None``."""
    return human_reference(store, case_id) or store.latest_version(case_id)


def store_prediction(
    store: CaseStore,
    case_id: str,
    prediction: Prediction,
    author: str,
    domain: DomainCheck | None = None,
    image: Volume | None = None,
) -> StoredProposal:
    """Save ``prediction`` of ``case_id`` as its proposal (see the module docstring for the rules).

    Touches only the store (thread-safe): a worker thread may call it. ``image``: the case's image if
    already loaded (saves reading it again for the uncertainty map's grid).
    """
    from napari_medseg.store.casestore import labels_checksum
    from napari_medseg.store.proposal_files import write_proposal_extras

    outside = domain is not None and domain.inside is False
    scored = False
    if prediction.uncertainty is not None and np.isfinite(prediction.score) and not outside:
        store.set_uncertainty(case_id, prediction.score)
        scored = True
    summary = {**prediction.summary(), "domain": domain.to_dict() if domain is not None else None}
    labels = np.asarray(prediction.labels, dtype=np.uint8)
    unc = None if prediction.uncertainty is None else np.asarray(prediction.uncertainty, dtype=np.float32)

    reference = human_reference(store, case_id)
    kept = (
        f"; the label by {reference.author} (version {reference.number}) stays the working label"
        if reference is not None
        else ""
    )
    latest = store.proposal(case_id)
    if (
        latest is not None
        and latest.source == prediction.source
        and latest.label_checksum == labels_checksum(labels)
    ):
        write_proposal_extras(
            store, case_id, latest, unc, summary, image
        )  # refresh the map of the same proposal
        return StoredProposal(
            latest, False, scored, f"same proposal as version {latest.number}: not saved again{kept}"
        )
    note = f"{prediction.net} proposal, uncertainty score {prediction.score:.4f}"
    if outside:
        note += "; outside the model's training domain (run on request)"
    version = store.save_version(
        case_id, labels, author=author, source=prediction.source, note=note, is_proposal=True
    )
    write_proposal_extras(store, case_id, version, unc, summary, image)
    return StoredProposal(
        version, True, scored, f"proposal stored as version {version.number}{kept}" if kept else ""
    )


def load_stored_prediction(store: CaseStore, case_id: str) -> StoredPrediction | None:
    """The case's latest proposal with its stored uncertainty map and regions, or ``None``."""
    from napari_medseg.inference.regions import Region
    from napari_medseg.store.proposal_files import read_proposal_extras

    version = store.proposal(case_id)
    if version is None:
        return None
    labels = np.asarray(store.load_label(case_id, version.number).array, dtype=np.uint8)
    unc, summary = read_proposal_extras(version)
    summary = summary or {}
    if unc is not None and unc.shape != labels.shape:
        unc = None
    regions = [Region.from_dict(r) for r in summary.get("regions", [])]
    return StoredPrediction(version, labels, unc, regions, summary)
