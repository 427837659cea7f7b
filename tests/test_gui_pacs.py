"""The PACS panel in a real napari window against a real Orthanc: search, pull (cancelled, then done),
push the approved version as a SEG. Every PACS call runs in a worker thread."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_medseg.pacs import PacsClient  # noqa: E402
from napari_medseg.pacs.auth import ENV_PASSWORD, ENV_USER  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def notifications(monkeypatch):
    from napari.utils import notifications as nmod

    seen: list[str] = []
    monkeypatch.setattr(nmod, "show_error", lambda msg: seen.append(f"error: {msg}"))
    monkeypatch.setattr(nmod, "show_info", lambda msg: seen.append(f"info: {msg}"))
    return seen


@pytest.fixture
def panel(make_napari_viewer, orthanc, tmp_path, monkeypatch, notifications):
    from napari_medseg.store import CaseStore
    from napari_medseg.widgets._controller import controller_for
    from napari_medseg.widgets.pacs import PacsPanel

    monkeypatch.setenv(ENV_USER, orthanc.auth[0])
    monkeypatch.setenv(ENV_PASSWORD, orthanc.auth[1])
    CaseStore.init(tmp_path / "store", labels={0: "background", 1: "tumour"}, modality="CT").close()
    viewer = make_napari_viewer(show=True)
    ctrl = controller_for(viewer)
    assert ctrl.open_store(tmp_path / "store", user="alice")
    p = PacsPanel(viewer)
    viewer.window.add_dock_widget(p, name="PACS", area="right")
    p.url_edit.setText(orthanc.dicomweb_url)
    p.notes = notifications
    yield p
    if ctrl.session is not None and ctrl.session.case_id is not None:
        ctrl.session.close_case(discard=True)


def _wait(panel, qtbot, timeout=60_000) -> None:
    qtbot.waitUntil(lambda: not panel.running, timeout=timeout)


def _select_ct(panel) -> None:
    top = panel.tree.topLevelItem(0)
    ct = next(top.child(i) for i in range(top.childCount()) if top.child(i).text(1) == "CT")
    panel.tree.setCurrentItem(ct)


def test_search_pull_and_push_from_the_panel(panel, orthanc, qtbot):
    ctrl = panel.ctrl
    store = ctrl.session.store
    panel.modality_combo.setCurrentText("CT")
    assert not panel.pull_btn.isEnabled()  # nothing selected yet
    panel.search()
    _wait(panel, qtbot)
    assert panel.tree.topLevelItemCount() >= 1, panel.notes
    _select_ct(panel)
    assert panel.selected_series() is not None and panel.pull_btn.isEnabled()

    panel.pull_selected()
    panel.cancel()  # before the first instance arrives: nothing may be stored
    _wait(panel, qtbot)
    assert store.case_ids() == [] and "stopped" in panel.status_label.text()

    panel.pull_selected()
    _wait(panel, qtbot)
    (case,) = store.case_ids()
    assert ctrl.session.case_id == case and "pulled into case" in panel.status_label.text(), panel.notes
    assert panel.push_btn.isEnabled()

    labels = np.zeros(ctrl.session.image.shape, np.uint8)
    labels[60:100, 60:100, 10:30] = 1
    ctrl.session.set_labels(labels)
    ctrl.session.save_version(note="drawn in the test")
    ctrl.session.approve()
    panel.push_open_case()
    _wait(panel, qtbot)
    assert "as SEG series" in panel.status_label.text(), panel.notes
    seg_uid = panel.status_label.text().split("as SEG series ")[1].split()[0]
    study_uid = panel.selected_series()[0]
    assert PacsClient(orthanc.dicomweb_url).search_series(study_uid, modality="SEG", series_uid=seg_uid)


def test_panel_reports_an_unreachable_pacs_in_one_line(panel, qtbot):
    from _orthanc import free_port

    panel.url_edit.setText(f"http://127.0.0.1:{free_port()}/dicom-web")
    panel.search()
    _wait(panel, qtbot)
    assert any(n.startswith("error: cannot reach the PACS") for n in panel.notes), panel.notes
    assert panel.search_btn.isEnabled() and not panel.cancel_btn.isEnabled()
