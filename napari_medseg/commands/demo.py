"""``napari-medseg demo``: the review app on the bundled sample cases, ready to try.

Steps: create (once) a demo case store from the bundled sample cases (``napari_medseg/resources/sample``) in the user's data folder, score its
cases with the model pair (review queue = most uncertain first), open napari with the panels docked,
open the most uncertain case, run the pair in the background and show proposal + uncertainty.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "Try the review app: sample MRI cases, the default model and all panels, in napari."
DESCRIPTION = (
    "Open napari with the napari-medseg panels on a demo case store made from the bundled hippocampus "
    "MRI cases (created on first use in your data folder, or in --store). The model pair scores every "
    "case, the most uncertain one opens, and its proposed segmentation appears with the uncertainty "
    "heat map (where the two networks disagree or are unsure). Correct it, save a version and approve it, as you "
    "would with your own cases."
)

SAMPLE_LABELS = {0: "background", 1: "Anterior", 2: "Posterior"}


def default_demo_dir() -> Path:
    """``$XDG_DATA_HOME/napari-medseg/demo`` (``~/.local/share/napari-medseg/demo`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "napari-medseg" / "demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser("demo", help=HELP, description=DESCRIPTION)
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"demo case store folder (default: {default_demo_dir()}); created if missing",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="MODELDIR",
        help="model folder with pair.json (default: the bundled model napari_medseg/resources/models/default)",
    )
    p.add_argument("--user", default=None, help="your name, recorded with saves (default: your login name)")
    p.add_argument("--no-predict", action="store_true", help="open the first case without running the model")
    p.add_argument(
        "--screenshot", type=Path, default=None, metavar="PNG", help="save a picture of the window"
    )
    p.add_argument(
        "--quit", action="store_true", help="close napari once the case is shown (with --screenshot)"
    )
    p.set_defaults(func=run)


def prepare_store(root: Path) -> tuple[object, bool]:
    """Open the demo store in ``root``, creating it from the bundled sample cases (``napari_medseg/resources/sample``) when missing.

    Returns:
        ``(store, created)``. The sample images are imported without labels: the model proposes,
        the user corrects.
    """
    from napari_medseg.bundled import sample_dir
    from napari_medseg.store import CaseStore
    from napari_medseg.store.casestore import DB_NAME, MEDSEG_DIR

    if (root / MEDSEG_DIR / DB_NAME).is_file():
        return CaseStore.open(root), False
    sample = sample_dir()
    images = sorted((sample / "imagesTr").glob("*.nii.gz"))
    if not images:
        from napari_medseg.errors import InputError

        raise InputError(f"no sample cases found in {sample / 'imagesTr'}; reinstall napari-medseg")
    root.mkdir(parents=True, exist_ok=True)
    store = CaseStore.init(root, name="napari-medseg demo (MSD hippocampus)", labels=SAMPLE_LABELS)
    store.import_many([(p, None) for p in images], author="demo")
    return store, True


def score_cases(session, out=sys.stdout) -> int:  # noqa: ANN001 - ReviewSession
    """Propose labels for every case of the session's store that has no proposal yet.

    Each prediction is stored once, with its uncertainty map and regions, as the case's proposal
    (:func:`~napari_medseg.review.proposals.store_prediction`): the viewer then shows it without running
    the model again, and a second demo start predicts nothing. Returns the number of cases predicted.
    """
    from napari_medseg.models.domain import OutsideDomainError

    done = 0
    for info in session.store.cases():
        if session.store.proposal(info.case_id) is not None:
            continue
        session.open_case(info.case_id)
        try:
            pred = session.run_prediction(device="auto")
        except OutsideDomainError as err:
            print(f"  {info.case_id}: {err}", file=out)
            continue
        print(f"  {info.case_id}: uncertainty score {pred.score:.3f}", file=out)
        done += 1
    session.close_case()
    return done


def run(args: argparse.Namespace) -> int:
    from napari_medseg.review.session import ReviewSession

    root = (args.store or default_demo_dir()).expanduser().resolve()
    store, created = prepare_store(root)
    print(f"demo store: {root}" + (" (created)" if created else ""))
    session = ReviewSession(store, user=args.user, model_dir=args.model)
    predict = not args.no_predict
    if predict:
        from napari_medseg.errors import CheckpointError

        try:
            session.load_model()  # a missing model fails here, before napari opens
        except CheckpointError as err:
            raise CheckpointError(f"{err}; give a model with --model DIR, or run with --no-predict") from None
        if any(session.store.proposal(c) is None for c in session.store.case_ids()):
            print("proposing labels with the model pair (once; stored as proposals)...")
            score_cases(session)
    queue = session.queue_ids()
    return open_viewer(session, queue[0], predict, args.screenshot, args.quit)


def open_viewer(session, case_id: str, predict: bool, screenshot: Path | None, quit_after: bool) -> int:  # noqa: ANN001
    """napari with the panels docked on ``session``; opens ``case_id`` and (optionally) runs the pair."""
    import napari
    from qtpy.QtCore import QTimer

    from napari_medseg.widgets._controller import controller_for
    from napari_medseg.widgets.layout import dock_review_panels

    viewer = napari.Viewer(title="napari-medseg demo")
    docks, panels = dock_review_panels(viewer)
    if "Uncertainty" in docks:
        QTimer.singleShot(0, docks["Uncertainty"].raise_)
    ctrl = controller_for(viewer)
    ctrl.set_session(session)
    if "Predict" in panels:
        panels["Predict"].model_edit.setText(str(session.model_dir))
    if not ctrl.open_case(case_id):
        viewer.close()
        return 1
    print(f"opened {case_id}" + (" (most uncertain first)" if predict else ""))
    stored = session.stored is not None
    predict = predict and not stored  # a stored proposal shows at once, with its overlay: no second run
    status = {"code": 0}

    def finish(prediction: object = None) -> None:
        if predict and prediction is None:
            status["code"] = 1
        if prediction is not None or (stored and ctrl.regions()):
            ctrl.go_to_region(0)
        if screenshot is not None:
            QTimer.singleShot(300, take_screenshot)
        elif quit_after:
            QTimer.singleShot(0, viewer.close)

    def take_screenshot() -> None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
        print(f"screenshot: {screenshot}")
        if quit_after:
            viewer.close()

    if predict:
        ctrl.prediction_finished.connect(finish)
        QTimer.singleShot(0, lambda: ctrl.run_prediction(net="pair"))
    else:
        QTimer.singleShot(500, finish)
    napari.run()
    if session.case_id is not None:
        if session.has_unsaved_changes:
            print(f"warning: case {session.case_id} had unsaved edits; it stays locked by {session.user}")
        else:
            session.close_case()
    return status["code"]
