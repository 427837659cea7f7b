"""``ReviewController``: what the panels docked in one viewer share (the session and its events).

Each viewer gets one controller (:func:`controller_for`), created by the first panel that asks;
panels never talk to each other, only to the controller, and redraw on its signals. The controller
is thin: the review logic lives in :class:`~napari_medseg.review.session.ReviewSession`; this class
adds the viewer side (layers, questions to the user, notifications, the prediction worker).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from napari_medseg.errors import LockedError, MedsegError, StaleSaveError
from napari_medseg.memory import give_back_freed_memory
from napari_medseg.widgets import _dialogs, _layers, _notify
from napari_medseg.widgets._background import run_in_background

if TYPE_CHECKING:
    import napari

    from napari_medseg.inference.prediction import Prediction
    from napari_medseg.review.diff import LabelDiff
    from napari_medseg.review.proposals import StoredProposal
    from napari_medseg.review.session import ReviewSession
    from napari_medseg.store.records import VersionInfo

_CONTROLLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def unwrap(viewer: napari.Viewer) -> napari.Viewer:
    """The viewer itself when npe2 handed a panel a ``PublicOnlyProxy`` of it (one controller per viewer)."""
    return getattr(viewer, "__wrapped__", viewer)


def controller_for(viewer: napari.Viewer) -> ReviewController:
    """The controller of ``viewer`` (created on first use; forgotten with the viewer)."""
    viewer = unwrap(viewer)
    ctrl = _CONTROLLERS.get(viewer)
    if ctrl is None:
        from napari_medseg.widgets import _warmup
        from napari_medseg.widgets._close_guard import install_close_guard
        from napari_medseg.widgets.layout import prefer_our_reader
        from napari_medseg.widgets.shortcuts import install_shortcuts
        from napari_medseg.widgets.window_drag import install_window_drag

        prefer_our_reader()
        _warmup.start()  # napari's lazy imports of the first open, off the GUI thread

        ctrl = _CONTROLLERS[viewer] = ReviewController(viewer)
        install_shortcuts(viewer, ctrl)
        install_window_drag(viewer, on_change=lambda _layer: ctrl.window_dragged.emit())
        ctrl.close_guard = install_close_guard(viewer, ctrl)
    return ctrl


#: Images up to this many voxels get their structures' axial diameters measured by themselves (with the
#: volumes); larger ones (a whole CT: 78 M) on the Measure button.
AUTO_DIAMETER_VOXELS = 16_000_000


class ReviewController:
    """Viewer-side actions of the review loop, shared by the panels of one viewer.

    Signals: ``session_changed()``, ``case_opened(case_id)``, ``prediction_started(case_id)``,
    ``prediction_progress(done, total)``, ``prediction_finished(prediction or None)``,
    ``store_changed()`` (a save or status change), ``region_changed(index)``, ``diff_changed(diff)``,
    ``overlay_visibility(visible)`` (the uncertainty overlay was shown or hidden, e.g. by Alt-U),
    ``measurements_changed(case_id, rows)`` (structure volumes and diameters, from a worker),
    ``view_changed(name)`` (the reading plane shown) and ``window_dragged()`` (window/level set by mouse).
    """

    session_changed = Signal()
    case_opened = Signal(str)
    prediction_started = Signal(str)
    prediction_progress = Signal(int, int)
    prediction_finished = Signal(object)
    store_changed = Signal()
    region_changed = Signal(int)
    diff_changed = Signal(object)
    overlay_visibility = Signal(bool)
    measurements_changed = Signal(str, object)  # case id, list of review.measurements.StructureMeasurement
    view_changed = Signal(str)  # the reading plane shown: "axial", "coronal", "sagittal" or "" (another)
    window_dragged = Signal()  # the image's window/level was set with the mouse (no preset any more)

    def __init__(self, viewer: napari.Viewer) -> None:
        self._viewer = weakref.ref(viewer)
        self.session: ReviewSession | None = None
        self.busy: str | None = None  # what the store worker is doing for this viewer (opening, saving)
        self.region_index = -1
        self.band_only = True
        self.worker: Any = None
        self._cancel: Any = None
        self._progress_bar: Any = None
        self._relay: Any = None
        self.predict_options: dict[str, Any] = {
            "net": "pair",
            "device": "auto",
            "show_probabilities": False,
            "outside_domain": False,
        }
        self.close_guard: Any = None
        self._measure_cancel: Any = None  # the CancelToken of the structure measurement in flight
        self.prediction_progress.connect(self._on_progress)
        for event in (
            viewer.scene.camera.events.center,
            viewer.scene.camera.events.zoom,
            viewer.dims.events.current_step,  # the letters live on the slice shown
        ):
            event.connect(self._follow_camera)  # napari holds bound methods weakly
        # the plane can also change by napari's own transpose / roll buttons: the letters follow it
        viewer.dims.events.order.connect(self._follow_plane)
        viewer.scene.camera.events.orientation2d.connect(self._follow_plane)

    def _follow_camera(self, _event: Any = None) -> None:
        viewer = self._viewer()
        if viewer is not None:
            _layers.place_markers(viewer)

    def _follow_plane(self, _event: Any = None) -> None:
        viewer = self._viewer()
        if viewer is None:
            return
        _layers.place_markers(viewer)
        self.describe_overlay()  # the region's slice number is the new plane's
        self.view_changed.emit(self.view or "")

    @property
    def view(self) -> str | None:
        """The reading plane shown (``"axial"``, ``"coronal"``, ``"sagittal"``), ``None`` for another one."""
        from napari_medseg.io.napari_view import view_name

        viewer = self.viewer
        lead = viewer.dims.ndim - 3
        order = [int(a) - lead for a in viewer.dims.order[-3:]]
        return view_name(order, viewer.scene.camera.orientation2d)

    def set_view(self, name: str, through_cursor: bool = False) -> None:
        """Show the axial, coronal or sagittal plane (radiological convention) through the point under the
        sliders; the orientation letters and the Cases panel's View box follow. ``through_cursor`` (Alt-1/2/3,
        pressed with the mouse on the image): through the point under the mouse instead, so a radiologist
        points at a finding in one plane and sees it in the next."""
        viewer = self.viewer
        image = _layers.get(viewer, _layers.IMAGE)
        if through_cursor and image is not None and viewer.dims.ndisplay == 2:
            where = np.asarray(viewer.cursor.position, dtype=np.float64)[-3:]
            low, high = np.asarray(image.extent.world, dtype=np.float64)[:, -3:]
            if where.shape == (3,) and np.all((where >= low) & (where <= high)):
                lead = viewer.dims.ndim - 3
                viewer.dims.set_point(range(lead, lead + 3), tuple(float(v) for v in where))
        _layers.set_view(viewer, name)  # the plane's events update the letters and the canvas line

    @property
    def viewer(self) -> napari.Viewer:
        viewer = self._viewer()
        if viewer is None:
            raise RuntimeError("the viewer of this review controller was closed")
        return viewer

    @contextmanager
    def _busy_with(self, what: str) -> Iterator[None]:
        """Mark the controller busy while slow store work runs (see :mod:`._background`)."""
        self.busy = what
        try:
            yield
        finally:
            self.busy = None

    def refuse_while_busy(self) -> bool:
        """``True`` (and a notification) when a case is being opened or saved: the action must wait."""
        if self.busy is None:
            return False
        _notify.info(f"still {self.busy}: try again when it has finished")
        return True

    # ------------------------------------------------------------------ store / session
    @property
    def store_root(self) -> Path | None:
        """Root folder of the open session's case store (the one store every panel works on), or ``None``."""
        return Path(self.session.store.root) if self.session is not None else None

    def set_session(self, session: ReviewSession) -> None:
        """Use ``session`` (closing the previous one's case, asking about unsaved edits)."""
        if self.refuse_while_busy():
            return
        if self.session is not None and self.session is not session:
            if not self._leave_case():
                return
            self.session.close_case(discard=True)
        self.session = session
        self.region_index = -1
        _layers.clear_case(self.viewer)
        self.session_changed.emit()

    def open_store(
        self, root: str | Path, user: str | None = None, model_dir: str | Path | None = None
    ) -> bool:
        """Open the case store in ``root``; returns ``False`` (with a notification) when it cannot."""
        from napari_medseg.review.session import ReviewSession

        try:
            session = ReviewSession.open(root, user=user, model_dir=model_dir)
        except MedsegError as err:
            _notify.report(err)
            return False
        self.set_session(session)
        return True

    def release(self) -> None:
        """On closing: give the open case's lock back unless it has unsaved edits (then the lock stays,
        so whoever opens the case next learns that this session did not finish)."""
        s = self.session
        if s is None or s.case_id is None:
            return
        self.cancel_prediction()
        self.cancel_measurement()
        try:
            _layers.pull_labels(self.viewer, s)
        except RuntimeError:  # viewer already gone
            pass
        if not s.has_unsaved_changes:
            s.close_case()

    def has_unsaved_edits(self) -> bool:
        """``True`` when the open case's working labels (as the viewer shows them) are not saved."""
        s = self.session
        if s is None or s.case_id is None:
            return False
        try:
            _layers.pull_labels(self.viewer, s)
        except RuntimeError:  # the viewer is already gone
            return False
        return s.has_unsaved_changes

    def confirm_close(self) -> bool:
        """The viewer is about to close: ask about unsaved edits; ``False`` = keep the window open.

        Saved or discarded, the open case's lock is given back here.
        """
        s = self.session
        if s is None or s.case_id is None:
            return True
        if self.refuse_while_busy():  # closing now would cut a save short
            return False
        try:
            if not self._leave_case():
                return False
        except RuntimeError:  # the viewer is already gone: nothing left to ask about
            return True
        self.cancel_prediction()
        self.cancel_measurement()
        s.close_case(discard=True)
        return True

    # ------------------------------------------------------------------ cases
    def _leave_case(self) -> bool:
        """Ask what to do with unsaved edits of the open case; ``False`` = stay on it."""
        s = self.session
        if s is None or s.case_id is None:
            return True
        _layers.pull_labels(self.viewer, s)
        if not s.has_unsaved_changes:
            return True
        answer = _dialogs.ask_unsaved(s.case_id)
        if answer == "save":
            return self.save() is not None
        return answer == "discard"

    def open_case(self, case_id: str) -> bool:
        """Open ``case_id`` (takes its lock) and show it; asks first if the open case has unsaved edits."""
        s = self.session
        if s is None:
            _notify.report(MedsegError("no case store is open: open one in the Cases panel first"))
            return False
        if self.refuse_while_busy():
            return False
        if case_id != s.case_id and not self._leave_case():
            return False
        self.cancel_prediction()
        self.cancel_measurement()
        _layers.set_editable(self.viewer, False)  # strokes on the case being left would be lost

        def load_image(force: bool) -> None:
            run_in_background(
                lambda: s.open_image(case_id, discard=True, force_lock=force), f"Opening {case_id}"
            )

        try:
            with self._busy_with(f"opening {case_id}"):
                try:
                    load_image(force=False)
                except LockedError as err:
                    if not _dialogs.ask_break_lock(str(err)):
                        raise
                    load_image(force=True)
                self.region_index = -1
                _layers.show_image(self.viewer, s)  # on screen while the labels load
                run_in_background(s.load_case_labels, f"Loading the labels of {case_id}")
        except Exception as err:  # noqa: BLE001 - report() re-raises what is not a user-facing fault
            if s.case_id is None:  # the previous case was closed before the new one failed to load
                _layers.clear_case(self.viewer)
                self.session_changed.emit()
            else:
                _layers.set_editable(self.viewer, True)
            _notify.report(err)  # a user error or an environment fault (unreadable file): one line
            return False
        _layers.show_labels(self.viewer, s)
        if s.proposal is not None:
            _layers.show_uncertainty(self.viewer, s, band_only=self.band_only)
        self.describe_overlay()
        give_back_freed_memory()  # the previous case's arrays and layers are gone by now (2-3 ms)
        self.case_opened.emit(case_id)
        self.measure_structures()
        return True

    def adopt_image(self, run: bool = False) -> bool:
        """Import the image opened with File > Open (our reader: its layer knows its source file) into the
        open store, open it as a case and (``run``) run the model on it."""
        from napari_medseg.errors import InputError

        s = self.session
        if s is None:
            _notify.report(MedsegError("no case store is open: open one in the Cases panel first"))
            return False
        if self.refuse_while_busy():
            return False
        layer = next(
            (
                lyr
                for lyr in [self.viewer.layers.selection.active, *reversed(list(self.viewer.layers))]
                if lyr is not None and lyr.metadata.get("source") and lyr._type_string == "image"
            ),
            None,
        )
        if layer is None:
            _notify.report(
                InputError("no image opened with File > Open to add: open a NIfTI file or DICOM folder")
            )
            return False
        source = layer.metadata["source"]
        try:
            case_id = s.store.import_case(source, author=s.user)
        except MedsegError as err:
            _notify.report(err)
            return False
        self.viewer.layers.remove(layer)  # the case view shows it now, with the review layers
        self.store_changed.emit()
        if not self.open_case(case_id):
            return False
        _notify.info(f"added {source} to the store as {case_id}")
        if run:
            self.run_prediction()
        return True

    def step_case(self, step: int, order: str = "uncertainty", statuses: list[str] | None = None) -> bool:
        """Open the next (``step=1``) or previous (``-1``) case of the review queue."""
        if self.session is None:
            return False
        target = self.session.next_case(step, order, statuses)
        if target is None:
            _notify.info("no more cases in this direction of the queue")
            return False
        return self.open_case(target)

    # ------------------------------------------------------------------ prediction
    @property
    def running(self) -> bool:
        return self.worker is not None

    def run_prediction(self, net: str | None = None, device: str | None = None) -> Any:
        """Start the model on the open case in a background thread; returns the napari worker."""
        from napari.qt.threading import create_worker

        from napari_medseg.inference.cancel import CancelToken

        s = self.session
        if s is None or s.case_id is None:
            _notify.report(MedsegError("no case is open: open a case before running the model"))
            return None
        if self.running:
            _notify.info("a prediction is already running; cancel it first")
            return self.worker
        if self.refuse_while_busy():
            return None
        opts = self.predict_options
        net = net or opts["net"]
        device = device or opts["device"]
        case_id = s.case_id
        outside_ok = bool(opts.get("outside_domain"))
        try:
            domain = s.check_domain()  # here, so a refusal is one line at once, not a failed worker
        except MedsegError as err:
            _notify.report(err)
            return None
        if domain.refused and not outside_ok:
            from napari_medseg.models.domain import OutsideDomainError

            _notify.report(
                OutsideDomainError(
                    f"{domain.message}: not run; tick 'run outside the training domain' in Predict to insist"
                )
            )
            return None
        self._cancel = CancelToken()
        self._relay = _progress_relay(self.prediction_progress)
        self._progress_bar = _napari_progress(f"Predicting {case_id} ({net})")
        cancel, relay = self._cancel, self._relay

        def predict_and_store() -> tuple:
            """Worker thread: the model run and the store write, so the viewer never waits on either."""
            prediction = s.predict(
                net=net, device=device, progress=relay.emit, cancel=cancel, outside_domain=outside_ok
            )
            cancel.check()
            return prediction, s.save_proposal(prediction, case_id)

        worker = create_worker(
            predict_and_store,
            _start_thread=False,
            _connect={
                "returned": lambda result: self._prediction_done(case_id, *result),
                "errored": self._prediction_failed,  # handled here: not re-raised in the event loop
                "finished": self._prediction_cleanup,
            },
        )
        self.worker = worker
        self.prediction_started.emit(case_id)
        worker.start()
        return worker

    def cancel_prediction(self) -> None:
        """Ask the running prediction to stop (it stops at its next batch of windows)."""
        if self._cancel is not None:
            self._cancel.cancel()

    def _on_progress(self, done: int, total: int) -> None:
        bar = self._progress_bar
        if bar is not None:
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

    def _prediction_done(self, case_id: str, prediction: Prediction, saved: StoredProposal) -> None:
        if self.busy is not None:  # a save or an open is running: show the result right after it
            from qtpy.QtCore import QTimer

            QTimer.singleShot(50, lambda: self._prediction_done(case_id, prediction, saved))
            return
        s = self.session
        try:
            s.apply_prediction(prediction, case_id=case_id, saved=saved)
        except MedsegError as err:
            _notify.report(err)
            self.prediction_finished.emit(None)
            return
        self.show_prediction(prediction)
        give_back_freed_memory()  # the model run's temporaries
        said = [msg for msg in [*prediction.messages, saved.reason] if msg]
        if said:  # one toast for what one run has to say
            _notify.info("; ".join(said))
        self.store_changed.emit()
        self.prediction_finished.emit(prediction)

    def show_prediction(self, prediction: Prediction) -> None:
        """Show proposal, uncertainty overlay (and per-network probabilities if asked) of the open case."""
        viewer, s = self.viewer, self.session
        _layers.show_proposal(viewer, s)
        _layers.show_uncertainty(viewer, s, band_only=self.band_only)
        if self.predict_options.get("show_probabilities"):
            _layers.show_probabilities(viewer, s, prediction)
        if _layers.LABELS in viewer.layers:
            viewer.layers.selection.active = viewer.layers[_layers.LABELS]
        self.region_index = -1
        self.describe_overlay()
        self.measure_structures()

    def _prediction_failed(self, err: BaseException) -> None:
        self.prediction_finished.emit(None)
        if isinstance(err, MedsegError):
            _notify.report(err)
        else:  # a bug: keep its traceback visible
            from napari.utils.notifications import notification_manager

            notification_manager.receive_error(type(err), err, err.__traceback__)

    def _prediction_cleanup(self) -> None:
        if self._progress_bar is not None:
            self._progress_bar.close()
        self._progress_bar = None
        self.worker = None
        self._cancel = None

    # ------------------------------------------------------------------ uncertainty regions
    def regions(self) -> list:
        s = self.session
        return [] if s is None or s.case_id is None else s.regions

    def go_to_region(self, index: int) -> bool:
        """Centre the view (all three sliders and the camera) on region ``index`` (0 = most uncertain)."""
        regions = self.regions()
        if not regions:
            _notify.info("no uncertain regions: run the model on this case first")
            return False
        index = max(0, min(index, len(regions) - 1))
        self.region_index = index
        region = regions[index]
        world = _layers.voxel_to_world(self.viewer, region.centroid_voxel)
        _layers.centre_on(self.viewer, world)
        radius = (3.0 * region.volume_mm3 / (4.0 * 3.141592653589793)) ** (1.0 / 3.0)
        _layers.show_region(self.viewer, world, radius)
        self.describe_overlay()
        self.region_changed.emit(index)
        return True

    def region_slice(self, region: Any) -> str:
        """Where a region is in the plane shown, as the slider says it: e.g. ``"coronal slice 212"``."""
        world = _layers.voxel_to_world(self.viewer, region.centroid_voxel)
        return f"{self.view or 'this view'}: slice {_layers.slice_number(self.viewer, world)}"

    def describe_overlay(self) -> None:
        """The canvas line: overlay threshold and the current region (number, slice, mean uncertainty)."""
        viewer = self.viewer
        layer = _layers.get(viewer, _layers.UNCERTAINTY)
        overlay = viewer.canvas.overlays.text
        if layer is None or self.session is None:
            overlay.visible = False
            return
        text = f"uncertainty shown from {layer.contrast_limits[0]:.2f} (0 = sure, 1 = split evenly)"
        regions = self.regions()
        if 0 <= self.region_index < len(regions):
            r = regions[self.region_index]
            text += (
                f"  ·  region {self.region_index + 1}/{len(regions)}, {self.region_slice(r)}, "
                f"mean {r.mean_uncertainty:.2f}"
            )
        if self.session.outside_domain:
            text += "  ·  OUTSIDE THE MODEL'S TRAINING DOMAIN"
        overlay.text = text
        overlay.color = "white"
        overlay.visible = True

    def step_region(self, step: int) -> bool:
        """Go to the next (``1``) or previous (``-1``) region."""
        n = len(self.regions())
        if n == 0:
            return self.go_to_region(0)
        return self.go_to_region((self.region_index + step) % n if self.region_index >= 0 else 0)

    def set_band_only(self, band_only: bool) -> None:
        """Limit the overlay to the boundary band (or show the pair's disagreement everywhere)."""
        self.band_only = band_only
        if self.session is not None and self.session.case_id is not None:
            _layers.show_uncertainty(self.viewer, self.session, band_only=band_only)

    def toggle_overlay(self) -> None:
        """Show / hide the uncertainty overlay (Alt-U); the Uncertainty panel's checkbox follows."""
        layer = _layers.get(self.viewer, _layers.UNCERTAINTY)
        if layer is not None:
            self.set_overlay_visible(not layer.visible)

    def set_overlay_visible(self, visible: bool) -> None:
        layer = _layers.get(self.viewer, _layers.UNCERTAINTY)
        if layer is not None and layer.visible != visible:
            layer.visible = visible
        self.overlay_visibility.emit(bool(visible))

    # ------------------------------------------------------------------ review
    def _open_session(self) -> ReviewSession | None:
        s = self.session
        if s is None or s.case_id is None:
            _notify.report(MedsegError("no case is open: open a case from the Cases panel first"))
            return None
        if self.refuse_while_busy():
            return None
        _layers.pull_labels(self.viewer, s)
        return s

    def accept_proposal(self) -> bool:
        s = self._open_session()
        if s is None:
            return False
        proposal_layer = _layers.get(self.viewer, _layers.PROPOSAL)
        with _notify.reporting():
            if proposal_layer is not None:  # keep edits made on the proposal layer
                from napari_medseg.io.napari_view import from_display

                s.set_labels(from_display(proposal_layer.data).astype(s.labels.dtype))
                s.mark_edited_from_proposal()
            else:
                s.accept_proposal()
            _layers.refresh_labels(self.viewer, s)
            self.measure_structures()
            return True
        return False

    def save(self, note: str = "") -> VersionInfo | None:
        """Save the working labels; a stale save asks to save as a new version."""
        s = self._open_session()
        if s is None:
            return None
        snapshot = s.snapshot()  # taken here: strokes painted while the save runs stay unsaved edits
        case_id = s.case_id
        try:
            with self._busy_with(f"saving {case_id}"):
                try:
                    info = run_in_background(lambda: s.save_version(note, snapshot), f"Saving {case_id}")
                except StaleSaveError as err:
                    if not _dialogs.ask_save_as_new(str(err)):
                        _notify.report(err)
                        return None
                    info = run_in_background(
                        lambda: s.save_as_new_version(note, snapshot), f"Saving {case_id} as a new version"
                    )
        except Exception as err:  # noqa: BLE001 - report() re-raises what is not a user-facing fault
            _notify.report(err)
            return None
        _notify.info(f"saved {s.case_id} version {info.number}")
        self.store_changed.emit()
        self.measure_structures()
        return info

    def approve(self, comment: str = "") -> bool:
        s = self._open_session()
        if s is None:
            return False
        with _notify.reporting(), self._busy_with(f"approving {s.case_id}"):
            run_in_background(lambda: s.approve(comment), f"Approving {s.case_id}")  # checksums a whole CT
            _notify.info(f"{s.case_id} approved")
            self.store_changed.emit()
            return True
        return False

    def needs_work(self, comment: str) -> bool:
        s = self._open_session()
        if s is None:
            return False
        with _notify.reporting():
            status = s.needs_work(comment)
            _notify.info(f"{s.case_id} sent back ({status})")
            self.store_changed.emit()
            return True
        return False

    def measure_structures(self, diameters: bool | None = None) -> Any:
        """Measure the open case's structures (volumes in mL of the working labels and the proposal, axial
        diameters) in a worker thread; :attr:`measurements_changed` carries the result. Returns the worker.

        One measurement at a time: a new one (or leaving the case) cancels the one in flight. ``diameters``
        ``None`` = automatic: with the volumes for images up to :data:`AUTO_DIAMETER_VOXELS`; a whole CT gets
        its diameters from the Measure button (its per-slice search, slowed by a busy viewer holding the
        GIL, made a 512×512×300 scroll block 101 ms instead of 60 while it ran).
        """
        from napari.qt.threading import create_worker

        from napari_medseg.errors import Cancelled
        from napari_medseg.inference.cancel import CancelToken
        from napari_medseg.review.measurements import measure_structures

        self.cancel_measurement()
        s = self.session
        if s is None or s.case_id is None or s.labels is None or s.image is None:
            return None
        case_id, names = s.case_id, s.store.labels  # the store is read here, in the GUI thread
        labels, proposal, affine = s.labels, s.proposal, s.image.affine  # read in place, never copied
        if diameters is None:
            diameters = labels.size <= AUTO_DIAMETER_VOXELS
        cancel = self._measure_cancel = CancelToken()
        # the arrays travel in a box emptied when the worker ends: a finished superqt worker can outlive its
        # run (held by its Qt connections), and as an argument it kept a whole CT's labels and proposal
        # alive, case after case (+75 MiB a case in the whole-CT memory probe)
        job = {"labels": labels, "proposal": proposal, "affine": affine, "names": names}

        def run() -> list | None:
            try:
                return measure_structures(diameters=diameters, cancel=cancel, **job)
            except Cancelled:  # returned, not raised: a traceback would hold the arrays too
                return None

        def measured(rows: list | None) -> None:
            if rows is not None and self.session is not None and self.session.case_id == case_id:
                self.measurements_changed.emit(case_id, rows)  # (not for a case left meanwhile)

        worker = create_worker(
            run,
            _start_thread=False,
            _connect={"returned": measured, "errored": _notify.report, "finished": job.clear},
        )
        worker.start()
        return worker

    def cancel_measurement(self) -> None:
        """Stop the structure measurement in flight, if any (its result would describe another state)."""
        if self._measure_cancel is not None:
            self._measure_cancel.cancel()
            self._measure_cancel = None

    def show_measurement(self, measurement: Any) -> bool:
        """Go to the axial slice where a structure (a ``review.measurements.StructureMeasurement``) is widest
        and draw its long and short axis there, as a radiologist's calipers would be."""
        d = measurement.diameters
        if self.session is None or self.session.case_id is None:
            return False
        if d is None or d.long_axis is None:
            if measurement.working_ml > 0:  # a large scan: its diameters are measured on request
                _notify.info(
                    f"press Measure to measure the diameters of {measurement.name} on a scan this size"
                )
            else:
                _notify.info(
                    f"{measurement.name} is not in the working labels (only in the proposal): nothing to show"
                )
            return False
        viewer = self.viewer
        if self.view != "axial":
            self.set_view("axial")
        segments = [
            tuple(_layers.voxel_to_world(viewer, (i, j, float(d.k))) for i, j in axis)
            for axis in (d.long_axis, d.short_axis)
        ]
        (a, b) = segments[0]
        middle = tuple((float(u) + float(v)) / 2 for u, v in zip(a, b, strict=True))
        _layers.centre_on(viewer, middle)
        _layers.show_diameters(viewer, segments)
        return True

    def show_diff(self) -> LabelDiff | None:
        """Compute and show the working labels versus the proposal."""
        s = self._open_session()
        if s is None:
            return None
        with _notify.reporting():
            diff = s.diff()
            _layers.show_diff(self.viewer, s, diff)
            self.diff_changed.emit(diff)
            return diff
        return None


def _progress_relay(target: Any) -> Any:
    """A Qt object whose ``emit(done, total)`` may be called from any thread; ``target`` fires in the GUI thread."""
    from qtpy.QtCore import QObject, Qt, Signal

    class _Relay(QObject):
        changed = Signal(int, int)

        def emit(self, done: int, total: int) -> None:
            self.changed.emit(int(done), int(total))

    relay = _Relay()
    relay.changed.connect(target.emit, Qt.QueuedConnection)
    return relay


def _napari_progress(description: str) -> Any:
    from napari.utils import progress

    return progress(total=0, desc=description)
