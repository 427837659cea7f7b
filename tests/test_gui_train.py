"""Train panel: runs `retrain` as a separate process, parses its progress, cancels cleanly, reloads the model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from conftest import store_with_tiny_model

from napari_medseg.registry import ModelRegistry

#: Where the panel picture goes: a temp folder, or docs/screenshots when refreshing the docs
#: (MEDSEG_SCREENSHOT_DIR=docs/screenshots), so a test run never modifies the checkout.
SCREENSHOTS = Path(os.environ.get("MEDSEG_SCREENSHOT_DIR", tempfile.gettempdir()))


@pytest.fixture
def store_root(tmp_path, hippo_cases, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the training process inherits it
    return store_with_tiny_model(tmp_path, hippo_cases[:3], n_approved=2, model_id="tiny-start")


@pytest.fixture
def panel(make_napari_viewer, store_root):
    from napari_medseg.widgets.train import TrainPanel

    viewer = make_napari_viewer(show=True)
    p = TrainPanel(viewer)
    viewer.window.add_dock_widget(p, name="Train", area="right")
    p.store_edit.setText(str(store_root))
    p.device_combo.setCurrentText("cpu")
    yield p
    if p.running:
        p.process.kill()
        p.process.waitForFinished(5000)


def test_parse_line_reads_progress_and_result_json_only():
    from napari_medseg.widgets.train import parse_line

    assert parse_line('PROGRESS {"stage": "train", "epoch": 2}') == (
        "PROGRESS",
        {"stage": "train", "epoch": 2},
    )
    assert parse_line('RESULT {"status": "done"}\n') == ("RESULT", {"status": "done"})
    assert parse_line("epoch 1/3 12s pair=0.5") is None
    assert parse_line("PROGRESS {not json") is None


def test_training_process_streams_progress_and_promotion_reloads_the_review_model(panel, store_root, qtbot):
    from napari_medseg.review.session import ReviewSession
    from napari_medseg.widgets._controller import controller_for

    session = ReviewSession.open(store_root, user="alice", model_dir=store_root / "unused")
    controller_for(panel.viewer).set_session(session)
    panel.epochs_spin.setValue(2)
    panel.delta_spin.setValue(-1.0)  # accept any candidate, so the promotion path runs
    changed: list[str] = []
    panel.model_changed.connect(changed.append)
    assert panel.start() is not None
    qtbot.waitUntil(lambda: not panel.running, timeout=150_000)
    assert panel.result["status"] == "done", panel._stderr
    assert [e["epoch"] for e in panel.history] == [1, 2]
    assert panel.progress.maximum() == 2 and panel.progress.value() == 2
    xs, ys = panel.ax_loss.lines[0].get_data()
    assert list(xs) == [1, 2] and all(y > 0 for y in ys)
    assert len(panel.ax_dice.lines[0].get_xdata()) == 2  # live validation Dice curve
    registry = ModelRegistry(store_root)
    assert changed == [str(registry.current_model_dir())] and registry.current_id == panel.result["model_id"]
    assert session.model_dir == registry.current_model_dir() and session.pair.model_id == registry.current_id
    assert "promoted" in panel.decision_label.text() and panel.result["reason"] in panel.decision_label.text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    panel.viewer.window._qt_window.grab().save(str(SCREENSHOTS / "train_panel.png"))


def test_cancel_stops_the_training_process_and_leaves_the_registry_untouched(panel, store_root, qtbot):
    registry_file = store_root / ".medseg" / "models" / "registry.json"
    before = registry_file.read_bytes()
    panel.epochs_spin.setValue(200)
    panel.start()
    qtbot.waitUntil(lambda: "training on 2 cases" in panel.status_label.text(), timeout=120_000)  # parsed
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert panel.result["status"] == "cancelled"
    assert panel.process.exitCode() == 130
    assert "cancelled" in panel.status_label.text() and panel.start_btn.isEnabled()
    assert registry_file.read_bytes() == before
