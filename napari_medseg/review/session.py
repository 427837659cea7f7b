"""``ReviewSession``: the headless review loop that the napari panels (and scripts) drive.

One session = one user working through one case store::

    session = ReviewSession.open("/data/hippo-store", user="alice")
    session.open_case(session.queue_ids()[0])      # most uncertain first; takes the case lock
    pred = session.run_prediction()                 # proposal + uncertainty, proposal saved to the store
    session.accept_proposal()                       # working labels := proposal
    session.labels[10, 20, 5] = 2                   # edit (napari paints into this array)
    session.save_version(note="fixed the tail")     # StaleSaveError if someone saved in between
    session.approve()

Arrays are in the image's own voxel order ``(I, J, K)`` (see :class:`~napari_medseg.io.volume.Volume`);
the widgets show them in napari's display order through :mod:`napari_medseg.io.napari_view`.
No Qt or napari import here; torch is imported only when a prediction runs.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.errors import StaleSaveError, StoreError
from napari_medseg.review.diff import LabelDiff, label_diff
from napari_medseg.review.queue import neighbour, queue_order

if TYPE_CHECKING:
    from napari_medseg.inference.cancel import CancelToken
    from napari_medseg.inference.prediction import Prediction
    from napari_medseg.inference.regions import Region
    from napari_medseg.io.volume import Volume
    from napari_medseg.models.domain import DomainCheck
    from napari_medseg.models.pair import ModelPair
    from napari_medseg.review.proposals import StoredPrediction, StoredProposal
    from napari_medseg.store import CaseStore
    from napari_medseg.store.records import CaseInfo, VersionInfo

#: Networks a prediction can use: both peers (mean probabilities + disagreement) or one of them.
NETWORKS = ("pair", "unetr", "bsnet")

Predictor = Callable[..., "Prediction"]


class UnsavedChangesError(StoreError):
    """The working labels have edits that were not saved and the action would drop them."""


def default_model_dir(store: CaseStore | None = None) -> Path:
    """The store's current (promoted) model, else the bundled default pair (``resources/models/default``)."""
    from napari_medseg.registry.model_registry import current_model_dir

    return current_model_dir(store.root if store is not None else None)


def default_user() -> str:
    """The login name of the current user (the author recorded with saves)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "annotator"


class ReviewSession:
    """State of one user's review of one case store.

    Attributes:
        store: the open :class:`~napari_medseg.store.CaseStore`.
        user: author of saves and owner of locks.
        model_dir: model pair used by :meth:`predict` (default: the bundled model).
        pair: the loaded :class:`~napari_medseg.models.pair.ModelPair` (loaded on first prediction;
            may be set directly).
        case_id: the open case, or ``None``.
        image: the open case's image.
        labels: working label map, ``(I, J, K)`` integers (edit in place; the viewer paints into it).
        base_version: store version the working labels were loaded from or last saved as (``None``
            when the case had no label).
        proposal: latest model proposal ``(I, J, K)`` uint8 (from this session's prediction, else the
            store's latest proposal version), or ``None``.
        proposal_version: store version number of :attr:`proposal`, if it was saved.
        prediction: the latest :class:`~napari_medseg.inference.prediction.Prediction` for this case.
        stored: the case's stored proposal with its uncertainty map and regions (see
            :mod:`napari_medseg.review.proposals`), shown until this session predicts again.
        edited_from: the version the working labels came from (opened, accepted proposal or saved):
            what a save records as edited.
    """

    def __init__(
        self,
        store: CaseStore,
        user: str | None = None,
        model_dir: str | Path | None = None,
        predictor: Predictor | None = None,
    ) -> None:
        """Args:
        store: an open case store.
        user: author name (default: the login name).
        model_dir: model pair folder (default :func:`default_model_dir`).
        predictor: function with the signature of
            :func:`napari_medseg.inference.engine.predict_volume` (default: that function).
        """
        self.store = store
        self.user = (user or default_user()).strip()
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir(store)
        self.pair: ModelPair | None = None
        self._predictor = predictor
        self._clear_case()

    @classmethod
    def open(cls, root: str | Path, user: str | None = None, **kwargs: Any) -> ReviewSession:
        """Open the case store in ``root`` and start a session on it."""
        from napari_medseg.store import CaseStore

        return cls(CaseStore.open(root), user=user, **kwargs)

    def _clear_case(self) -> None:
        self.case_id: str | None = None
        self.image: Volume | None = None
        self.labels: np.ndarray | None = None
        self.base_version: int | None = None
        self.proposal: np.ndarray | None = None
        self.proposal_version: int | None = None
        self.prediction: Prediction | None = None
        self._baseline: np.ndarray | None = None
        self._own_versions: set[int] = set()
        self._full_uncertainty: np.ndarray | None = None
        self.stored: StoredPrediction | None = None
        self.edited_from: int | None = None
        self._domain: DomainCheck | None = None

    # ------------------------------------------------------------------ queue
    def cases(self, order: str = "uncertainty", statuses: Sequence[str] | None = None) -> list[CaseInfo]:
        """The store's cases in review order (see :func:`~napari_medseg.review.queue.queue_order`)."""
        return queue_order(self.store.cases(), order, statuses)

    def queue_ids(self, order: str = "uncertainty", statuses: Sequence[str] | None = None) -> list[str]:
        """Case ids in review order (most uncertain first by default)."""
        return [c.case_id for c in self.cases(order, statuses)]

    def next_case(
        self, step: int = 1, order: str = "uncertainty", statuses: Sequence[str] | None = None
    ) -> str | None:
        """Id of the case ``step`` places after the open one in the queue (``None`` past the end)."""
        return neighbour(self.queue_ids(order, statuses), self.case_id, step)

    def previous_case(self, order: str = "uncertainty", statuses: Sequence[str] | None = None) -> str | None:
        """Id of the case before the open one in the queue (``None`` before the start)."""
        return self.next_case(-1, order, statuses)

    # ------------------------------------------------------------------ opening / closing
    def _require_case(self) -> str:
        if self.case_id is None or self.labels is None:
            raise StoreError("no case is open: open a case from the Cases panel first")
        return self.case_id

    @property
    def has_unsaved_changes(self) -> bool:
        """``True`` when the working labels differ from what was loaded or last saved."""
        if self.labels is None or self._baseline is None:
            return False
        return not np.array_equal(self.labels, self._baseline)

    def open_case(self, case_id: str, discard: bool = False, force_lock: bool = False) -> None:
        """Open ``case_id``: take its lock, load its image, working label and latest stored proposal.

        The working label is the newest label a person made, else the newest proposal
        (:func:`~napari_medseg.review.proposals.working_version`). Same as :meth:`open_image` then
        :meth:`load_case_labels` (a viewer shows the image in between).

        Args:
            discard: drop unsaved edits of the currently open case (else ``UnsavedChangesError``).
            force_lock: break another user's lock (for a lock left by a crashed session).

        Raises:
            UnsavedChangesError: the open case has unsaved edits and ``discard`` is false.
            LockedError: someone else holds the case's lock.
            StoreDamagedError: a file of the case is missing or altered (the case is not left open).
        """
        self.open_image(case_id, discard=discard, force_lock=force_lock)
        self.load_case_labels()

    def open_image(self, case_id: str, discard: bool = False, force_lock: bool = False) -> Volume:
        """First half of :meth:`open_case`: take the lock, close the current case, load the image.

        Until :meth:`load_case_labels` runs the case has no working labels, so nothing can be edited
        or saved (:meth:`_require_case` refuses).
        """
        if self.has_unsaved_changes and not discard:
            raise UnsavedChangesError(
                f"case {self.case_id} has unsaved edits: save a version first, or discard them"
            )
        self.store.lock(case_id, self.user, force=force_lock)  # before dropping the current case
        previous = self.case_id
        if previous is not None and previous != case_id:
            self._release(previous)
        self._clear_case()
        self.case_id = case_id
        with self._closing_on_failure():
            self.image = self.store.load_image(case_id)
        return self.image

    def load_case_labels(self) -> None:
        """Second half of :meth:`open_case`: the working label and the stored proposal of the case
        whose image :meth:`open_image` loaded."""
        from napari_medseg.review.proposals import load_stored_prediction, working_version

        case_id = self.case_id
        if case_id is None or self.image is None:
            raise StoreError("no case is being opened: open its image first")
        with self._closing_on_failure():
            start = working_version(self.store, case_id)  # a person's label is never replaced by a proposal
            if start is not None:
                label = self.store.load_label(case_id, start.number)
                self.labels = np.array(label.array, copy=True)  # keeps the file's (Fortran) memory order
                self.base_version = start.number
            else:  # the image's memory order, so comparisons and saves never transpose
                self.labels = np.zeros_like(self.image.array, dtype=np.uint8)
            self._baseline = self.labels.copy(order="K")
            self.edited_from = self.base_version
            self.stored = load_stored_prediction(self.store, case_id)
            if self.stored is not None:
                self.proposal = self.stored.labels
                self.proposal_version = self.stored.version.number

    @contextmanager
    def _closing_on_failure(self) -> Iterator[None]:
        """A file that fails to load (missing, altered) leaves no half-open case, and the lock goes back."""
        try:
            yield
        except BaseException:
            if self.case_id is not None:
                self._release(self.case_id)
            self._clear_case()
            raise

    def _release(self, case_id: str) -> None:
        try:
            self.store.unlock(case_id, self.user)
        except StoreError:  # lock broken by someone else meanwhile: nothing of ours to release
            pass

    def close_case(self, discard: bool = False) -> None:
        """Release the open case's lock and forget it (``UnsavedChangesError`` unless saved or ``discard``)."""
        if self.case_id is None:
            return
        if self.has_unsaved_changes and not discard:
            raise UnsavedChangesError(
                f"case {self.case_id} has unsaved edits: save a version first, or discard them"
            )
        self._release(self.case_id)
        self._clear_case()

    def close(self, discard: bool = False) -> None:
        """Close the open case (see :meth:`close_case`) and the store."""
        self.close_case(discard=discard)
        self.store.close()

    def set_labels(self, labels: np.ndarray) -> None:
        """Replace the working labels' values (in place; shape must match the image)."""
        self._require_case()
        labels = np.asarray(labels)
        if labels.shape != self.labels.shape:
            raise StoreError(
                f"labels of shape {labels.shape} do not fit case {self.case_id} {self.labels.shape}"
            )
        if labels is not self.labels and not np.shares_memory(labels, self.labels):
            self.labels[...] = labels

    # ------------------------------------------------------------------ prediction
    def use_model(self, model_dir: str | Path) -> None:
        """Predict with the model pair in ``model_dir`` from now on (loaded at the next prediction)."""
        if Path(model_dir) != self.model_dir:
            self.model_dir = Path(model_dir)
            self.pair = None
            self._domain = None

    def check_domain(self) -> DomainCheck:
        """Is the open case like the model's training images? (see :mod:`napari_medseg.models.domain`)"""
        from napari_medseg.models.domain import check_domain, image_stats, read_model_domain

        self._require_case()
        if self._domain is None:
            domain, model_id = read_model_domain(self.model_dir)
            self._domain = check_domain(image_stats(self.image), domain, model_id)
        return self._domain

    def load_model(self, model_dir: str | Path | None = None) -> ModelPair:
        """Load (and keep) the model pair in ``model_dir`` (default :attr:`model_dir`)."""
        from napari_medseg.models.pair import ModelPair

        if model_dir is not None:
            self.use_model(model_dir)
        if self.pair is None:
            self.pair = ModelPair.load(self.model_dir, device="cpu")
        return self.pair

    def predict(
        self,
        net: str = "pair",
        device: str = "auto",
        progress: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        outside_domain: bool = False,
    ) -> Prediction:
        """Run the model on the open case's image; does not change the session (safe in a worker thread).

        Args:
            net: ``"pair"``, ``"unetr"`` or ``"bsnet"``.
            device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
            progress: ``progress(done, total)`` after each batch of windows.
            cancel: checked between batches (raises ``Cancelled``).
            outside_domain: run even when the case is outside the model's training domain.

        Raises:
            OutsideDomainError: the case is outside the model's training domain and ``outside_domain``
                is false.
        """
        from napari_medseg.models.domain import OutsideDomainError

        if net not in NETWORKS:
            raise StoreError(f"unknown network {net!r}: choose one of {', '.join(NETWORKS)}")
        self._require_case()
        check = self.check_domain()
        if check.refused and not outside_domain:
            raise OutsideDomainError(f"{check.message}: not run; run it anyway only if you know why")
        image = self.image
        pair = self.load_model()
        predictor = self._predictor
        if predictor is None:
            from napari_medseg.inference.engine import predict_volume as predictor
        return predictor(image, pair, net=net, device=device, progress=progress, cancel=cancel)

    def save_proposal(self, prediction: Prediction, case_id: str) -> StoredProposal:
        """Store ``prediction`` of ``case_id`` through :func:`~napari_medseg.review.proposals.store_prediction`.

        Touches only the store (thread-safe), not the session: a worker thread may call it.
        """
        from napari_medseg.review.proposals import store_prediction

        same = case_id == self.case_id
        image = self.image if same else None
        return store_prediction(
            self.store, case_id, prediction, self.user, self._domain if same else None, image
        )

    def apply_prediction(
        self,
        prediction: Prediction,
        case_id: str | None = None,
        save: bool = True,
        saved: StoredProposal | None = None,
    ) -> None:
        """Make ``prediction`` the open case's proposal (saved as a proposal version, see :meth:`save_proposal`).

        Args:
            case_id: the case the prediction was computed for (refused if another case is open now).
            save: store the proposal as a version (``is_proposal``) so later saves record how much the
                reviewer changed it.
            saved: the version :meth:`save_proposal` already wrote for it (then nothing is written here).
        """
        current = self._require_case()
        if case_id is not None and case_id != current:
            raise StoreError(f"the prediction was made for case {case_id}, but case {current} is open now")
        if tuple(prediction.labels.shape) != tuple(self.image.shape):
            raise StoreError(
                f"the prediction's shape {prediction.labels.shape} does not match case {current}"
            )
        if saved is None and save:
            saved = self.save_proposal(prediction, current)
        self.prediction = prediction
        self.stored = None
        self.proposal = np.asarray(prediction.labels, dtype=np.uint8)
        self._full_uncertainty = None
        version = saved.version if saved is not None else None
        self.proposal_version = version.number if version is not None else None
        if version is not None and saved.created:
            self._own_versions.add(version.number)

    def run_prediction(
        self,
        net: str = "pair",
        device: str = "auto",
        progress: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        save: bool = True,
        outside_domain: bool = False,
    ) -> Prediction:
        """:meth:`predict` then :meth:`apply_prediction` (for scripts; the viewer splits the two)."""
        case_id = self._require_case()
        prediction = self.predict(
            net=net, device=device, progress=progress, cancel=cancel, outside_domain=outside_domain
        )
        self.apply_prediction(prediction, case_id=case_id, save=save)
        return prediction

    def uncertainty_map(self, band_only: bool = True) -> np.ndarray | None:
        """Voxel uncertainty ``(I, J, K)`` in ``[0, 1]`` of the latest prediction, or ``None``.

        Floating point as the engine made it (float16 for a pair: no whole-volume float32 copy of a CT;
        napari converts only the slice it draws).

        Args:
            band_only: keep only the boundary band (voxels near either net's predicted boundary, where
                segmentation errors live); ``False`` shows the uncertainty everywhere. A pair's map is
                band-limited by the engine, so its unrestricted map is recomputed from the kept
                probabilities; a single net's map is unrestricted and is masked here.
        """
        pred = self.prediction
        if pred is None:
            return self.stored.uncertainty if self.stored is not None else None
        if pred.uncertainty is None:
            return None
        unc = np.asarray(pred.uncertainty)
        if not np.issubdtype(unc.dtype, np.floating):
            unc = unc.astype(np.float32)
        if pred.net != "pair":
            return np.where(pred.band, unc, 0.0).astype(np.float32) if band_only else unc
        if band_only or len(pred.probs) < 2:
            return unc
        if self._full_uncertainty is None:
            import torch

            from napari_medseg.inference import uncertainty as unc_mod

            p_a, p_b = (
                torch.from_numpy(np.asarray(p, dtype=np.float32)) for p in list(pred.probs.values())[:2]
            )
            method = pred.method if pred.method in unc_mod.PAIR_METHODS else unc_mod.DEFAULT_METHOD
            self._full_uncertainty = unc_mod.pair_disagreement(p_a, p_b, method).numpy().astype(np.float32)
        return self._full_uncertainty

    @property
    def regions(self) -> list[Region]:
        """Ranked uncertain regions of the latest prediction, else of the stored proposal."""
        if self.prediction is not None:
            return list(self.prediction.regions)
        return list(self.stored.regions) if self.stored is not None else []

    @property
    def outside_domain(self) -> bool:
        """``True`` when the shown proposal was made on a case outside the model's training domain."""
        if self.prediction is not None:
            return self._domain is not None and self._domain.refused
        return self.stored is not None and self.stored.outside_domain

    # ------------------------------------------------------------------ editing
    def accept_proposal(self) -> None:
        """Copy the proposal into the working labels (in place, so a viewer showing them updates)."""
        self._require_case()
        if self.proposal is None:
            raise StoreError(f"case {self.case_id} has no proposal yet: run the model first")
        self.labels[...] = self.proposal.astype(self.labels.dtype, copy=False)
        self.mark_edited_from_proposal()

    def mark_edited_from_proposal(self) -> None:
        """The working labels now start from the proposal (saves record its version as edited)."""
        if self.proposal_version is not None:
            self.edited_from = self.proposal_version

    def diff(self) -> LabelDiff:
        """Working labels versus the proposal: added/removed voxels, changed count, Dice."""
        self._require_case()
        if self.proposal is None:
            raise StoreError(f"case {self.case_id} has no proposal to compare with: run the model first")
        return label_diff(self.labels, self.proposal)

    # ------------------------------------------------------------------ saving and review
    def _newer_by_others(self) -> list[VersionInfo]:
        base = self.base_version or 0
        return [
            v
            for v in self.store.versions(self.case_id)
            if v.number > base and v.number not in self._own_versions and not v.is_proposal
        ]

    def save_version(self, note: str = "", labels: np.ndarray | None = None) -> VersionInfo:
        """Save the working labels as a new version edited from :attr:`base_version`.

        ``labels`` is the snapshot of the working labels to save (default: a copy taken now); a viewer
        takes it in its own thread, so strokes painted while the save runs elsewhere stay unsaved edits.

        Raises:
            StaleSaveError: someone else saved this case after it was opened (says who and when);
                nothing was saved - use :meth:`save_as_new_version` to keep both.
        """
        case_id = self._require_case()
        others = self._newer_by_others()
        if others:
            who = "; ".join(f"version {v.number} by {v.author} at {v.created_utc}" for v in others)
            raise StaleSaveError(
                f"case {case_id} changed since you opened it: {who}; nothing was saved - "
                "save as a new version to keep both"
            )
        latest = self.store.latest_version(case_id)
        parent = latest.number if latest is not None else None
        if parent is not None and parent != self.edited_from:
            base = f"version {self.edited_from}" if self.edited_from else "an empty label"
            note = f"{note} (edited from {base})".strip()
        return self._save(parent, note, labels)

    def save_as_new_version(self, note: str = "", labels: np.ndarray | None = None) -> VersionInfo:
        """Save the working labels (or the snapshot ``labels``, see :meth:`save_version`) on top of the
        latest version, even if someone saved in between."""
        case_id = self._require_case()
        latest = self.store.latest_version(case_id)
        parent = latest.number if latest is not None else None
        if parent is not None and parent != self.edited_from:
            base = f"version {self.edited_from}" if self.edited_from else "an empty label"
            note = f"{note} (edited from {base}; saved over version {parent} by {latest.author})".strip()
        return self._save(parent, note, labels)

    def snapshot(self) -> np.ndarray:
        """A copy of the working labels in their memory order (what a save writes)."""
        self._require_case()
        return self.labels.copy(order="K")

    def _save(self, parent: int | None, note: str, labels: np.ndarray | None) -> VersionInfo:
        snapshot = self.snapshot() if labels is None else labels  # its grid is checked by the store
        held = {self.base_version: self._baseline, self.proposal_version: self.proposal}  # no re-reading
        info = self.store.save_version(
            self.case_id,
            snapshot,
            author=self.user,
            source="human",
            parent=parent,
            note=note,
            known_labels={n: a for n, a in held.items() if n is not None and a is not None},
        )
        self.base_version = self.edited_from = info.number
        self._own_versions.add(info.number)
        self._baseline = snapshot  # edits made since the snapshot stay unsaved
        return info

    def status(self) -> str:
        """Review status of the open case."""
        return self.store.case(self._require_case()).status

    def approve(self, comment: str = "") -> None:
        """Approve the open case's latest version (must be what is on screen: save first)."""
        from napari_medseg.store.casestore import labels_checksum

        case_id = self._require_case()
        if self.has_unsaved_changes:
            raise UnsavedChangesError(f"case {case_id} has unsaved edits: save a version before approving")
        latest = self.store.latest_version(case_id)
        if latest is None:
            raise StoreError(f"case {case_id} has no saved label: save a version before approving")
        if latest.label_checksum and latest.label_checksum != labels_checksum(self.labels):
            raise UnsavedChangesError(
                f"the latest version of case {case_id} (version {latest.number}, {latest.source}) is not the "
                "label on screen: save a version before approving"
            )
        self.store.set_status(case_id, "approved", self.user, comment)

    def needs_work(self, comment: str) -> str:
        """Send the case back for correction (status ``proposed``) with a comment; returns the new status."""
        case_id = self._require_case()
        if not comment or not comment.strip():
            raise StoreError("say what needs work: the comment is empty")
        self.store.comment(case_id, self.user, f"needs work: {comment.strip()}")
        status = self.status()
        if status in ("corrected", "approved"):
            self.store.set_status(case_id, "in_review", self.user, comment.strip())
            status = "in_review"
        if status in ("new", "in_review"):
            self.store.set_status(case_id, "proposed", self.user, f"needs work: {comment.strip()}")
        return self.status()

    def versions(self) -> list[VersionInfo]:
        """Saved versions of the open case, oldest first."""
        return self.store.versions(self._require_case())
