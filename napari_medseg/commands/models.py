"""``napari-medseg models``: list, promote and roll back the models registered in a case store."""

from __future__ import annotations

import argparse

from napari_medseg.errors import StoreError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list, promote or roll back the trained models of a case store",
        description=(
            "Every model trained on a store is kept in STORE/.medseg/models with its validation scores. "
            "Only the 'current' model is used for proposals. A newly trained model becomes current only "
            "if it is not worse than the current one; these commands show that history and let you "
            "override it."
        ),
    )
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="registered models with status, scores and which one is current")
    p.add_argument("store", help="case store folder")
    p.set_defaults(func=_list)
    p = actions.add_parser("promote", help="make a registered model the current one (bypasses the rule)")
    p.add_argument("store", help="case store folder")
    p.add_argument("model_id", help="id shown by 'models list'")
    p.add_argument("--reason", default="promoted by hand", help="why (kept in the history)")
    p.set_defaults(func=_promote)
    p = actions.add_parser("rollback", help="go back to the model that was current before this one")
    p.add_argument("store", help="case store folder")
    p.set_defaults(func=_rollback)


def _registry(store: str):
    from pathlib import Path

    from napari_medseg.registry import ModelRegistry

    if not (Path(store) / ".medseg").is_dir():
        raise StoreError(f"{store} is not a case store (no .medseg folder); create one with 'store init'")
    return ModelRegistry(store)


def _list(args: argparse.Namespace) -> int:
    registry = _registry(args.store)
    current = registry.current_id
    entries = registry.entries()
    print(f"current model: {current or 'bundled default'} ({registry.current_model_dir()})")
    if not entries:
        print("no trained models registered yet")
        return 0
    print(f"{'':2}{'model':<28} {'status':<10} {'dice_mean':>9}  {'parent':<24} registered")
    for e in entries:
        mark = "* " if e.model_id == current else "  "
        dice = e.metrics.get("dice_mean")
        dice_s = f"{dice:.4f}" if dice is not None else "-"
        print(
            f"{mark}{e.model_id:<28} {e.status:<10} {dice_s:>9}  {str(e.parent or '-'):<24} {e.registered_utc}"
        )
        if e.reason:
            print(f"{'':4}{e.reason}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    registry = _registry(args.store)
    registry.promote(args.model_id, reason=args.reason)
    print(f"{args.model_id} is now the current model")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    registry = _registry(args.store)
    now = registry.rollback()
    print(f"current model is now {now or 'the bundled default'}")
    return 0
