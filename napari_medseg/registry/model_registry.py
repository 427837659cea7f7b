"""``.medseg/models/`` of a case store: trained model pairs, their cards and scores, and which is current.

Layout::

    <store>/.medseg/models/
        registry.json          {"current": id | null, "models": {id: entry}, "events": [...]}
        <model_id>/            a ModelPair folder (pair.json + safetensors + cards), never modified

Registering copies the model folder under a temporary name and renames it into place, then rewrites
``registry.json`` atomically, so a crash leaves either the old registry or the new one. Model folders
are append-only: a model id is registered once. When nothing was promoted yet, the bundled default
model is the current one.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from napari_medseg.bundled import default_model_dir
from napari_medseg.errors import StoreError
from napari_medseg.io.atomic import TMP_PREFIX, atomic_write_bytes, fsync_dir
from napari_medseg.models.card import utc_now
from napari_medseg.registry.promotion import Decision, PromotionRule, decide
from napari_medseg.store.ids import validate_case_id

DEFAULT_MODEL_DIR = default_model_dir()
REGISTRY_FILE = "registry.json"


def current_model_dir(store_root: str | Path | None = None) -> Path:
    """The one answer to "which model runs": the store's promoted model, else the bundled default pair."""
    if store_root is None:
        return DEFAULT_MODEL_DIR
    return ModelRegistry(store_root).current_model_dir()


@dataclass
class RegistryEntry:
    """One registered model.

    Attributes:
        model_id: the pair card's ``model_id``.
        registered_utc: ISO time of registration.
        parent: model it was fine-tuned from (``None`` for a model trained from scratch).
        metrics: validation scores on the store's validation cases (``dice_mean``, ``dice_<class>``, ...).
        trained_on: ``"<case>:<version>"`` label versions used for training.
        status: ``candidate`` | ``promoted`` | ``rejected`` | ``retired``.
        reason: why the last promotion decision went the way it did.
        validation: how ``metrics`` were measured: validation ``"<case>:<version>"`` list, the
            compared model and its scores on the same cases (``{"cases", "baseline_model",
            "baseline_metrics"}``); empty for models registered by hand.
    """

    model_id: str
    registered_utc: str
    parent: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    trained_on: list[str] = field(default_factory=list)
    status: str = "candidate"
    reason: str = ""
    validation: dict[str, Any] = field(default_factory=dict)


class ModelRegistry:
    """The model registry of one store (``store_root/.medseg/models``)."""

    def __init__(self, store_root: str | Path):
        self.root = Path(store_root) / ".medseg" / "models"
        with contextlib.suppress(OSError):  # a read-only store still lists and uses its models
            self.root.mkdir(parents=True, exist_ok=True)

    # -- reading -----------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        path = self.root / REGISTRY_FILE
        if not path.exists():
            return {"current": None, "models": {}, "events": []}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise StoreError(f"the model registry {path} is damaged ({err})") from None

    def _write(self, data: dict[str, Any]) -> None:
        atomic_write_bytes(self.root / REGISTRY_FILE, (json.dumps(data, indent=2) + "\n").encode())

    def entries(self) -> list[RegistryEntry]:
        """All registered models, oldest first."""
        return [RegistryEntry(**e) for e in self._read()["models"].values()]

    def entry(self, model_id: str) -> RegistryEntry:
        models = self._read()["models"]
        if model_id not in models:
            raise StoreError(f"no model {model_id!r} in the registry (known: {', '.join(models) or 'none'})")
        return RegistryEntry(**models[model_id])

    @property
    def current_id(self) -> str | None:
        """Id of the promoted model in use, ``None`` while the bundled default is used."""
        return self._read()["current"]

    def current_model_dir(self) -> Path:
        """Folder of the model the viewer and ``predict`` should use."""
        current = self.current_id
        return self.model_dir(current) if current else DEFAULT_MODEL_DIR

    def model_dir(self, model_id: str) -> Path:
        validate_case_id(model_id)
        return self.root / model_id

    def events(self) -> list[dict[str, Any]]:
        return list(self._read()["events"])

    # -- writing -----------------------------------------------------------------------------------
    def register(
        self,
        model_dir: str | Path,
        metrics: dict[str, float],
        trained_on: list[str] | None = None,
        parent: str | None = None,
        validation: dict[str, Any] | None = None,
    ) -> RegistryEntry:
        """Copy a trained ModelPair folder into the registry as a candidate.

        ``validation`` records how ``metrics`` were measured (see :class:`RegistryEntry`).
        """
        src = Path(model_dir)
        card_path = src / "pair.json"
        if not card_path.is_file():
            raise StoreError(f"{src} holds no model pair (pair.json missing)")
        model_id = str(json.loads(card_path.read_text())["model_id"])
        dest = self.model_dir(model_id)
        data = self._read()
        if model_id in data["models"] or dest.exists():
            raise StoreError(
                f"model {model_id!r} is already registered; registered models are never replaced"
            )
        tmp = self.root / f"{TMP_PREFIX}{model_id}"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(src, tmp)
        tmp.rename(dest)
        fsync_dir(self.root)
        entry = RegistryEntry(
            model_id=model_id,
            registered_utc=utc_now(),
            parent=parent,
            metrics={k: float(v) for k, v in metrics.items()},
            trained_on=list(trained_on or []),
            validation=dict(validation or {}),
        )
        data["models"][model_id] = asdict(entry)
        data["events"].append({"time": utc_now(), "event": "registered", "model": model_id})
        self._write(data)
        return entry

    def consider(
        self, model_id: str, current_metrics: dict[str, float] | None, rule: PromotionRule
    ) -> Decision:
        """Promote ``model_id`` if ``rule`` says it is not worse than the current model, else reject it.

        ``current_metrics`` are the current model's scores on the same validation cases.
        """
        candidate = self.entry(model_id)
        decision = decide(candidate.metrics, current_metrics, rule)
        self._set(
            model_id,
            "promoted" if decision.promote else "rejected",
            decision.reason,
            make_current=decision.promote,
        )
        return decision

    def promote(self, model_id: str, reason: str = "promoted by hand") -> None:
        """Make ``model_id`` the current model regardless of the rule (``models promote``)."""
        self.entry(model_id)
        self._set(model_id, "promoted", reason, make_current=True)

    def rollback(self) -> str | None:
        """Go back to the model that was current before the current one; returns the new current id."""
        data = self._read()
        history = [e["model"] for e in data["events"] if e["event"] == "current"]
        if not history:
            raise StoreError("nothing to roll back: no model was ever promoted in this store")
        previous = history[-2] if len(history) >= 2 else None
        if data["current"]:
            data["models"][data["current"]]["status"] = "retired"
        data["current"] = previous
        data["events"].append({"time": utc_now(), "event": "current", "model": previous, "why": "rollback"})
        self._write(data)
        return previous

    def _set(self, model_id: str, status: str, reason: str, make_current: bool) -> None:
        data = self._read()
        data["models"][model_id]["status"] = status
        data["models"][model_id]["reason"] = reason
        data["events"].append({"time": utc_now(), "event": status, "model": model_id, "why": reason})
        if make_current:
            previous = data["current"]
            if previous and previous != model_id:
                data["models"][previous]["status"] = "retired"
            data["current"] = model_id
            data["events"].append({"time": utc_now(), "event": "current", "model": model_id, "why": reason})
        self._write(data)
