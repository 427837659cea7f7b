"""The one reader of a dataset folder's ``dataset.json`` (MSD and nnU-Net v2 styles), validated.

Everything that reads a ``dataset.json`` (``store import``, ``train``, ``evaluate``, the napari reader
and ``info`` when they guess a modality) goes through :func:`read_dataset_json`, so a malformed file
gives one :class:`~napari_medseg.errors.InputError` sentence naming the file and the bad field, never
a ``TypeError``/``KeyError`` from deep inside a command.

Accepted shape (other keys are ignored)::

    {
      "name": "Hippocampus",                          optional string
      "labels": {"0": "background", "1": "Anterior"}   MSD: value -> name
             or {"background": 0, "Anterior": 1}      nnU-Net v2: name -> value
      "modality": {"0": "MRI"}                         optional (v2: "channel_names")
      "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, ...]
      "file_ending": ".nii.gz"                         v2, used when "training" is absent
    }

Label values are non-negative integers below 2**31 and must include 0 (background). Paths in
``training`` are relative to the folder and may not point outside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from napari_medseg.errors import InputError

#: Largest dataset.json read (bytes); an index of a few thousand cases is well below this.
MAX_BYTES = 64 * 2**20


@dataclass(frozen=True)
class DatasetJson:
    """A validated ``dataset.json``.

    Attributes:
        path: the file read.
        name: dataset name ("" when absent).
        labels: ``{value: name}``, including 0, or empty when the file declares none.
        modality: first channel's modality (e.g. ``"MRI"``, ``"CT"``) or ``""``.
        training: ``(image, label or None)`` absolute paths inside the folder, in file order.
    """

    path: Path
    name: str = ""
    labels: dict[int, str] = field(default_factory=dict)
    modality: str = ""
    training: list[tuple[Path, Path | None]] = field(default_factory=list)


def _fail(path: Path, what: str) -> InputError:
    return InputError(f"{path} is not a valid dataset.json: {what}")


def _labels(path: Path, raw: object) -> dict[int, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(
            path, f'\'labels\' must be an object like {{"0": "background"}}, not {type(raw).__name__}'
        )
    labels: dict[int, str] = {}
    for key, value in raw.items():
        # MSD: "1": "Anterior"; nnU-Net v2: "Anterior": 1
        number, name = (
            (key, value) if not isinstance(value, int | float) or isinstance(value, bool) else (value, key)
        )
        if isinstance(number, str) and number.strip().isdigit():
            number = int(number)
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 2**31:
            raise _fail(path, f"label {key!r}: {value!r} needs a non-negative integer value below 2**31")
        if not isinstance(name, str) or not name.strip():
            raise _fail(path, f"label {number} needs a name (text), got {name!r}")
        if number in labels:
            raise _fail(path, f"label value {number} is declared twice")
        labels[number] = name.strip()
    if labels and 0 not in labels:
        raise _fail(path, "'labels' must include 0 (background)")
    return labels


def _modality(path: Path, content: dict) -> str:
    for key in ("modality", "channel_names"):
        raw = content.get(key)
        if raw is None:
            continue
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise _fail(path, f'\'{key}\' must be an object like {{"0": "MRI"}}')
        if raw:
            return str(next(iter(raw.values())))
    return ""


def _inside(root: Path, path: Path, rel: str, where: str) -> Path:
    resolved = (root / rel).resolve()
    if root not in resolved.parents:
        raise _fail(root / "dataset.json", f"{where} {rel!r} points outside {root}")
    return resolved


def _training(path: Path, root: Path, content: dict) -> list[tuple[Path, Path | None]]:
    raw = content.get("training")
    if raw is None:  # nnU-Net v2: the files themselves are the index
        ending = content.get("file_ending", ".nii.gz")
        if not isinstance(ending, str) or not ending.startswith("."):
            raise _fail(path, f"'file_ending' must be text like \".nii.gz\", got {ending!r}")
        pairs = []
        for image in sorted((root / "imagesTr").glob(f"*_0000{ending}")):
            case = image.name[: -len(f"_0000{ending}")]
            label = root / "labelsTr" / f"{case}{ending}"
            pairs.append((image.resolve(), label.resolve() if label.is_file() else None))
        return pairs
    if not isinstance(raw, list):
        raise _fail(
            path,
            f'\'training\' must be a list of {{"image": ..., "label": ...}} entries, not {type(raw).__name__}',
        )
    pairs = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise _fail(
                path, f"training entry {i + 1} must be an object with 'image' and 'label', got {entry!r:.60}"
            )
        image = entry.get("image")
        label = entry.get("label")
        if not isinstance(image, str) or not image.strip():
            raise _fail(path, f"training entry {i + 1} has no 'image' path")
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise _fail(path, f"training entry {i + 1} has a 'label' that is not a path: {label!r:.60}")
        pairs.append(
            (
                _inside(root, path, image, f"training entry {i + 1} image"),
                _inside(root, path, label, f"training entry {i + 1} label") if label else None,
            )
        )
    return pairs


def read_dataset_json(folder: str | Path) -> DatasetJson:
    """Read and validate ``folder/dataset.json``.

    Raises:
        InputError: the file is missing, unreadable, not JSON, or not shaped as described in the
            module docstring (the message names the field).
    """
    root = Path(folder).resolve()
    path = root / "dataset.json"
    try:
        if path.stat().st_size > MAX_BYTES:
            raise _fail(path, f"it is larger than {MAX_BYTES // 2**20} MiB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{root} has no dataset.json") from None
    except IsADirectoryError:
        raise _fail(path, "it is a folder") from None
    except UnicodeDecodeError:
        raise _fail(path, "it is not UTF-8 text") from None
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        content = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise _fail(path, f"it is not JSON ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(content, dict):
        raise _fail(path, f"the top level must be an object, not {type(content).__name__}")
    name = content.get("name", "")
    if not isinstance(name, str):
        raise _fail(path, f"'name' must be text, got {name!r:.60}")
    return DatasetJson(
        path=path,
        name=name,
        labels=_labels(path, content.get("labels")),
        modality=_modality(path, content),
        training=_training(path, root, content),
    )


def modality_hint(folder: str | Path) -> str:
    """The modality a ``dataset.json`` in ``folder`` declares, or ``""`` (missing or malformed file: it
    is only a hint for guessing a NIfTI file's modality, so a broken index never stops a file opening)."""
    if not (Path(folder) / "dataset.json").is_file():
        return ""
    try:
        return read_dataset_json(folder).modality
    except InputError:
        return ""
