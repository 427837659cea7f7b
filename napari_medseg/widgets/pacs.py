"""PACS panel: search a DICOMweb PACS, pull the selected series into the open store, push the open case's
approved version back as a DICOM SEG. Every PACS call runs in a napari worker thread with a progress bar
and Cancel; the work itself is :mod:`napari_medseg.pacs` (the same functions ``napari-medseg pacs`` runs).

Credentials are never typed here: they come from ``MEDSEG_PACS_TOKEN``, ``MEDSEG_PACS_USER`` /
``MEDSEG_PACS_PASSWORD`` or a credentials file (``MEDSEG_PACS_AUTH_FILE``), see :mod:`napari_medseg.pacs.auth`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.errors import MedsegError
from napari_medseg.widgets import _notify
from napari_medseg.widgets._controller import _progress_relay, controller_for, unwrap
from napari_medseg.widgets._controls import run_controls

if TYPE_CHECKING:
    import napari

MODALITIES = ("any", "CT", "MR", "PT", "US")
#: Role of a tree item holding ``(study_uid, series_uid)`` of an image series.
SERIES_ROLE = Qt.UserRole + 1


class PacsPanel(QWidget):
    """URL, filters, Search; a study → series tree; Pull selected (optionally de-identified); Push SEG."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.ctrl = controller_for(self.viewer)
        self.worker: Any = None
        self._cancel: Any = None
        self._relay: Any = None

        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("https://pacs.example.org/dicom-web")
        self.patient_edit = QLineEdit()
        self.patient_edit.setPlaceholderText("PatientID (optional)")
        self.modality_combo = QComboBox()
        self.modality_combo.addItems(list(MODALITIES))
        self.since_edit = QLineEdit()
        self.since_edit.setPlaceholderText("YYYY-MM-DD (optional)")
        self.search_btn = QPushButton("Search")
        self.search_btn.clicked.connect(self.search)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Study / series", "Date / modality", "Instances"])
        self.tree.itemSelectionChanged.connect(self._sync_buttons)
        self.deid_check = QCheckBox("de-identify (research store)")
        self.pull_btn = QPushButton("Pull selected")
        self.pull_btn.clicked.connect(self.pull_selected)
        self.push_btn = QPushButton("Push SEG of the open case")
        self.push_btn.setToolTip("the approved version, as a DICOM SEG referencing the pulled series")
        self.push_btn.clicked.connect(self.push_open_case)
        self.cancel_btn, self.progress, self.status_label = run_controls(
            self.cancel, "credentials: from MEDSEG_PACS_* environment variables or a file"
        )

        form = QFormLayout()
        form.addRow("DICOMweb URL", self.url_edit)
        form.addRow("Patient", self.patient_edit)
        form.addRow("Modality", self.modality_combo)
        form.addRow("Since", self.since_edit)
        pull_row = QHBoxLayout()
        pull_row.addWidget(self.pull_btn)
        pull_row.addWidget(self.deid_check)
        run_row = QHBoxLayout()
        run_row.addWidget(self.push_btn)
        run_row.addWidget(self.cancel_btn)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.search_btn)
        layout.addWidget(self.tree)
        layout.addLayout(pull_row)
        layout.addLayout(run_row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        self.ctrl.session_changed.connect(self._sync_buttons)
        self.ctrl.case_opened.connect(lambda _case: self._sync_buttons())
        self._sync_buttons()

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self.worker is not None

    def selected_series(self) -> tuple[str, str] | None:
        """``(study_uid, series_uid)`` of the selected image series, ``None`` when none is selected."""
        items = self.tree.selectedItems()
        data = items[0].data(0, SERIES_ROLE) if items else None
        return tuple(data) if data else None

    def _sync_buttons(self) -> None:
        s = self.ctrl.session
        idle = not self.running
        self.search_btn.setEnabled(idle)
        self.pull_btn.setEnabled(idle and s is not None and self.selected_series() is not None)
        self.push_btn.setEnabled(idle and s is not None and s.case_id is not None)
        self.cancel_btn.setEnabled(not idle)

    def _client(self):  # noqa: ANN202 - PacsClient
        from napari_medseg.pacs import PacsClient

        return PacsClient(self.url_edit.text().strip())

    # ------------------------------------------------------------------ background work
    def _start(self, label: str, work: Callable[..., Any], done: Callable[[Any], None]) -> Any:
        """Run ``work(progress, cancel)`` in a worker thread; ``done(result)`` in the GUI thread."""
        from napari.qt.threading import create_worker

        from napari_medseg.inference.cancel import CancelToken

        if self.running:
            _notify.info("a PACS transfer is running; cancel it first")
            return self.worker
        self._cancel = CancelToken()
        self._relay = _progress_relay(_ProgressTarget(self._progress))
        cancel, relay = self._cancel, self._relay

        def failed(err: BaseException) -> None:
            self.status_label.setText(
                f"{label}: stopped" if isinstance(err, MedsegError) else f"{label}: failed"
            )
            _notify.report(err)

        worker = create_worker(
            lambda: work(relay.emit, cancel.check),
            _start_thread=False,
            _connect={"returned": done, "errored": failed, "finished": self._cleanup},
        )
        self.worker = worker
        self.status_label.setText(f"{label}…")
        self.progress.setRange(0, 0)
        self._sync_buttons()
        worker.start()
        return worker

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _cleanup(self) -> None:
        self.worker = None
        self._cancel = None
        self.progress.setRange(0, 1)
        self._sync_buttons()

    def cancel(self) -> None:
        """Stop the running transfer at its next instance (nothing half-done is kept)."""
        if self._cancel is not None:
            self._cancel.cancel()

    # ------------------------------------------------------------------ actions
    def search(self) -> Any:
        """QIDO-RS search with the filters; fills the tree with studies and their series."""
        try:
            client = self._client()
        except MedsegError as err:
            _notify.report(err)
            return None
        patient = self.patient_edit.text().strip() or None
        modality = self.modality_combo.currentText()
        modality = None if modality == "any" else modality
        since = self.since_edit.text().strip() or None

        def work(progress: Callable[[int, int], None], cancel: Callable[[], None]) -> list:
            studies = client.search_studies(patient_id=patient, modality=modality, since=since)
            found = []
            for i, study in enumerate(studies):
                cancel()
                found.append((study, client.search_series(study.study_uid)))
                progress(i + 1, len(studies))
            return found

        return self._start("search", work, self._show_results)

    def _show_results(self, found: list) -> None:
        self.tree.clear()
        for study, series in found:
            top = QTreeWidgetItem(
                [study.description or study.study_uid, study.date, str(study.n_instances or "")]
            )
            top.setToolTip(0, study.study_uid)
            for s in series:
                child = QTreeWidgetItem([s.description or s.series_uid, s.modality, str(s.n_instances or "")])
                child.setToolTip(0, s.series_uid)
                if s.is_image:
                    child.setData(0, SERIES_ROLE, [study.study_uid, s.series_uid])
                else:
                    child.setFlags(child.flags() & ~Qt.ItemIsSelectable)
                top.addChild(child)
            self.tree.addTopLevelItem(top)
            top.setExpanded(True)
        n = sum(len(series) for _, series in found)
        self.status_label.setText(f"{len(found)} studies, {n} series")

    def pull_selected(self) -> Any:
        """Pull the selected image series into the open store as a new case (then open it)."""
        from napari_medseg.pacs import pull_series

        s, chosen = self.ctrl.session, self.selected_series()
        if s is None or chosen is None:
            _notify.info("open a case store and select an image series first")
            return None
        try:
            client = self._client()
        except MedsegError as err:
            _notify.report(err)
            return None
        study_uid, series_uid = chosen
        deid = self.deid_check.isChecked()

        def work(progress: Callable[[int, int], None], cancel: Callable[[], None]) -> Any:
            return pull_series(
                client,
                s.store,
                study_uid,
                series_uid,
                author=s.user,
                deidentify_data=deid,
                progress=progress,
                cancel=cancel,
            )

        return self._start("pull", work, self._pulled)

    def _pulled(self, result: Any) -> None:
        self.status_label.setText(result.line())
        self.ctrl.store_changed.emit()
        self.ctrl.open_case(result.case_id)

    def push_open_case(self) -> Any:
        """Push the open case's approved version as a DICOM SEG to the PACS it was pulled from."""
        from napari_medseg.pacs import PacsClient, push_version
        from napari_medseg.pacs.push import pushed_source

        s = self.ctrl.session
        if s is None or s.case_id is None:
            _notify.info("open a case first")
            return None
        case_id = s.case_id
        try:
            url = self.url_edit.text().strip() or pushed_source(s.store, case_id).url
            client = PacsClient(url)
        except MedsegError as err:
            _notify.report(err)
            return None

        def work(progress: Callable[[int, int], None], cancel: Callable[[], None]) -> Any:
            return push_version(client, s.store, case_id, author=s.user, progress=progress, cancel=cancel)

        return self._start("push", work, lambda result: self.status_label.setText(result.line()))


class _ProgressTarget:
    """Adapter: the relay calls ``emit(done, total)``; this forwards it to a panel method (GUI thread)."""

    def __init__(self, fn: Callable[[int, int], None]) -> None:
        self.emit = fn
