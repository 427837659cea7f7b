"""Every input or environment fault a user can cause ends as one ``error:`` line and exit code 2.

The suite runs the real command line in-process (``cli.main``) so 70-odd probes stay fast on CI;
a few run as real subprocesses to prove no traceback reaches a terminal. ``MEDSEG_DEBUG=1`` is set
in-process, so a bug (anything the CLI would report as an internal error) fails its probe with the
real traceback instead of passing as exit 3.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_medseg import cli
from napari_medseg.store import CaseStore

sys.path.insert(0, str(Path(__file__).parent))
import _store_killer  # noqa: E402
from conftest import REPO, TOTALSEG  # noqa: E402

LABELS = "0=background,1=Anterior,2=Posterior"


@dataclass
class World:
    """What a probe may use: a fresh copy of a small approved store, its source files, a tiny model."""

    tmp: Path
    store: Path
    image: Path
    label: Path
    other_label: Path  # a label map on another grid
    model: Path
    monkeypatch: pytest.MonkeyPatch

    def msd(self, content: object | str) -> Path:
        """An MSD folder holding the crop image/label and ``content`` as its dataset.json."""
        folder = self.tmp / "msd"
        (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
        (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
        shutil.copy(self.image, folder / "imagesTr" / "case_001.nii.gz")
        shutil.copy(self.label, folder / "labelsTr" / "case_001.nii.gz")
        text = content if isinstance(content, str) else json.dumps(content)
        (folder / "dataset.json").write_text(text)
        return folder

    def db(self) -> Path:
        return self.store / ".medseg" / "store.sqlite"

    def version_file(self) -> Path:
        return self.store / ".medseg" / "versions" / "hippocrop_001" / "1.nii.gz"


@pytest.fixture(scope="module")
def sources(tmp_path_factory, hippo_cases, tiny_model_dir):
    root = tmp_path_factory.mktemp("bad-inputs")
    image, label = _store_killer.make_crop_case(*hippo_cases[0], root / "crop")
    _, other = _store_killer.make_crop_case(*hippo_cases[1], root / "crop2", size=12)
    store = root / "store"
    s = CaseStore.init(store, labels={0: "background", 1: "Anterior", 2: "Posterior"})
    s.import_case(image, label, approved=True)
    s.close()
    return {"image": image, "label": label, "other": other, "store": store, "model": tiny_model_dir}


@pytest.fixture()
def world(sources, tmp_path, monkeypatch) -> World:
    monkeypatch.setenv("MEDSEG_DEBUG", "1")
    store = tmp_path / "store"
    shutil.copytree(sources["store"], store)
    return World(
        tmp_path, store, sources["image"], sources["label"], sources["other"], sources["model"], monkeypatch
    )


# ----------------------------------------------------------------------------- helpers for probes
def _nifti_bytes(edit: Callable[[bytearray], None] | None = None) -> bytes:
    img = nib.Nifti1Image(np.arange(512, dtype=np.int16).reshape(8, 8, 8), np.eye(4))
    raw = bytearray(img.header.binaryblock + b"\0" * 4 + img.get_fdata().astype(np.int16).tobytes())
    if edit is not None:
        edit(raw)
    return bytes(raw)


def _poke(fmt: str, offset: int, value) -> Callable[[bytearray], None]:  # noqa: ANN001
    return lambda raw: struct.pack_into(fmt, raw, offset, *(value if isinstance(value, tuple) else (value,)))


def _write(w: World, name: str, data: bytes) -> Path:
    path = w.tmp / name
    path.write_bytes(data)
    return path


def _dicom_series(w: World, edit: Callable, which: set[int] | None = None) -> Path:  # noqa: ANN001
    import pydicom

    src = TOTALSEG / "ct_dicom"
    if not src.is_dir():
        pytest.skip("the CT DICOM series is not available")
    out = w.tmp / "dicom"
    out.mkdir()
    for i, f in enumerate(sorted(p for p in src.iterdir() if p.is_file())[:4]):
        ds = pydicom.dcmread(f)
        if which is None or i in which:
            edit(ds)
        ds.save_as(out / f.name)
    return out


def _tag(tag: int, vr: str, value) -> Callable:  # noqa: ANN001
    return lambda ds: ds.add_new(tag, vr, value)


def _drop(keyword: str) -> Callable:
    def edit(ds) -> None:  # noqa: ANN001
        if keyword in ds:
            delattr(ds, keyword)

    return edit


def _bad_model(w: World, pair_edit=None, net_edit=None) -> Path:  # noqa: ANN001
    model = w.tmp / "model"
    shutil.copytree(w.model, model)
    if pair_edit is not None:
        card = json.loads((model / "pair.json").read_text())
        pair_edit(card)
        (model / "pair.json").write_text(json.dumps(card))
    if net_edit is not None:
        card = json.loads((model / "unetr.json").read_text())
        net_edit(card["config"])
        (model / "unetr.json").write_text(json.dumps(card))
    return model


def _set(key: str, value) -> Callable:  # noqa: ANN001
    return lambda d: d.__setitem__(key, value)


def _hold_write_lock(w: World) -> None:
    """Hold the store's SQLite write lock from another connection for the rest of the probe."""
    import napari_medseg.store.schema as schema_mod

    w.monkeypatch.setattr(schema_mod, "DB_WAIT_S", 0.2)
    conn = sqlite3.connect(w.db(), isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    w.monkeypatch.setattr(w, "_holder", conn, raising=False)


def _read_only(w: World) -> None:
    import napari_medseg.store.casestore as casestore_mod

    w.monkeypatch.setattr(casestore_mod, "can_write", lambda root: False)


def _os_fault(w: World, module: str, name: str, code: int) -> None:
    import importlib

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(code, os.strerror(code), str(args[-1]) if args else "")

    w.monkeypatch.setattr(importlib.import_module(module), name, fail)


def _damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _store_cmd(*args: str) -> Callable[[World], list[str]]:
    """``store ARGS`` with ``{store}``, ``{image}``, ``{label}``, ``{other}``, ``{tmp}`` filled in."""

    def build(w: World) -> list[str]:
        fill = {"store": w.store, "image": w.image, "label": w.label, "other": w.other_label, "tmp": w.tmp}
        return ["store", *[a.format(**{k: str(v) for k, v in fill.items()}) for a in args]]

    return build


def _then(prepare: Callable[[World], object], build: Callable[[World], list[str]]) -> Callable:
    def run(w: World) -> list[str]:
        prepare(w)
        return build(w)

    return run


# ----------------------------------------------------------------------------- the probes
MALFORMED_DATASET_JSON = {
    "list": [1, 2],
    "training-not-list": {"training": 5},
    "entry-without-image": {"training": [{"label": "./labelsTr/case_001.nii.gz"}]},
    "entry-not-object": {"training": ["./imagesTr/case_001.nii.gz"]},
    "labels-list": {"labels": ["background", "x"], "training": []},
    "labels-non-integer-keys": {"labels": {"a": "b"}, "training": []},
    "labels-without-background": {"labels": {"1": "x"}, "training": []},
    "labels-region-tuples": {"labels": {"background": 0, "whole": [1, 2]}, "training": []},
    "path-outside-folder": {"training": [{"image": "../../etc/passwd", "label": None}]},
    "invalid-json": "{not json",
    "empty-file": "",
    "image-not-text": {"training": [{"image": 5, "label": "x"}]},
}

NIFTI_FUZZ = {
    "dim0-zero": _poke("<h", 40, 0),
    "dim-negative": _poke("<h", 42, -5),
    "dim-huge": _poke("<3h", 42, (32767, 32767, 32767)),
    "dim-20000": _poke("<h", 42, 20000),
    "dim-k-zero": _poke("<h", 46, 0),
    "datatype-unknown": _poke("<h", 70, 9999),
    "vox-offset-past-end": _poke("<f", 108, 1e9),
    "magic-wrong": _poke("4s", 344, b"xxx\0"),
    "four-d-several-volumes": _poke("<5h", 40, (4, 8, 8, 2, 2)),
    "truncated-data": lambda raw: raw.__delitem__(slice(360, None)),
}

PROBES: dict[str, Callable[[World], list[str]]] = {}

for key, content in MALFORMED_DATASET_JSON.items():
    PROBES[f"import-dataset-json-{key}"] = lambda w, c=content: [
        "store",
        "import",
        str(w.store),
        str(w.msd(c)),
    ]
for key in ("list", "training-not-list", "entry-without-image", "invalid-json", "labels-list"):
    PROBES[f"evaluate-dataset-json-{key}"] = lambda w, c=MALFORMED_DATASET_JSON[key]: [
        "evaluate", "--model", str(w.model), "--data", str(w.msd(c)), "--no-hd95",
    ]  # fmt: skip
for key in ("list", "entry-not-object", "labels-non-integer-keys"):
    PROBES[f"train-dataset-json-{key}"] = lambda w, c=MALFORMED_DATASET_JSON[key]: [
        "train", "--data", str(w.msd(c)), "--out", str(w.tmp / "run"), "--epochs", "1", "--device", "cpu",
    ]  # fmt: skip

for key, edit in NIFTI_FUZZ.items():
    PROBES[f"info-nifti-{key}"] = lambda w, e=edit, k=key: [
        "info",
        str(_write(w, f"{k}.nii", _nifti_bytes(e))),
    ]
PROBES["info-nifti-random-bytes"] = lambda w: [
    "info", str(_write(w, "r.nii", np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8).tobytes())),
]  # fmt: skip
PROBES["info-nifti-gzip-truncated"] = lambda w: [
    "info", str(_write(w, "t.nii.gz", gzip.compress(_nifti_bytes())[:200])),
]  # fmt: skip
PROBES["info-nifti-empty-file"] = lambda w: ["info", str(_write(w, "e.nii.gz", b""))]
PROBES["info-nifti-not-gzip"] = lambda w: ["info", str(_write(w, "n.nii.gz", b"hello"))]
PROBES["info-missing-file"] = lambda w: ["info", str(w.tmp / "nothing.nii.gz")]
PROBES["info-not-nifti"] = lambda w: ["info", str(_write(w, "notes.txt", b"hello"))]

DICOM_FAULTS = {
    "no-pixel-data": (_drop("PixelData"), None),
    "rows-zero": (_tag(0x00280010, "US", 0), None),
    "position-not-numbers": (_tag(0x00200032, "LO", ["abc", "1", "2"]), None),
    "orientation-degenerate": (_tag(0x00200037, "DS", ["0"] * 6), None),
    "pixel-spacing-zero": (_tag(0x00280030, "DS", ["0", "0"]), None),
    "bits-allocated-12": (_tag(0x00280100, "US", 12), None),
    "one-slice-other-size": (_tag(0x00280010, "US", 256), {1}),
    "all-slices-same-position": (_tag(0x00200032, "DS", ["0", "0", "0"]), None),
    "pixel-data-short": (lambda ds: setattr(ds, "PixelData", ds.PixelData[:100]), None),
    "rescale-slope-nan": (_tag(0x00281053, "LO", "nan"), None),
}
for key, (edit, which) in DICOM_FAULTS.items():
    PROBES[f"info-dicom-{key}"] = lambda w, e=edit, s=which: ["info", str(_dicom_series(w, e, s))]

PROBES.update(
    {
        # a damaged, truncated, empty or foreign store database
        "list-db-garbage": _then(
            lambda w: w.db().write_bytes(b"garbage" * 100), _store_cmd("list", "{store}")
        ),
        "list-db-empty": _then(lambda w: w.db().write_bytes(b""), _store_cmd("list", "{store}")),
        "check-db-truncated": _then(
            lambda w: w.db().write_bytes(w.db().read_bytes()[:4096]), _store_cmd("check", "{store}")
        ),
        "history-db-truncated": _then(
            lambda w: w.db().write_bytes(w.db().read_bytes()[:4096]),
            _store_cmd("history", "{store}", "hippocrop_001"),
        ),
        "export-db-garbage": _then(
            lambda w: w.db().write_bytes(b"\0" * 4096), _store_cmd("export", "{store}", "{tmp}/out")
        ),
        "status-db-foreign": _then(
            lambda w: (
                w.db().unlink(),
                sqlite3.connect(w.db()).execute("CREATE TABLE x(a)").connection.commit(),
            ),
            _store_cmd("status", "{store}", "hippocrop_001", "in_review"),
        ),
        "import-db-garbage": _then(
            lambda w: w.db().write_bytes(b"garbage"), _store_cmd("import", "{store}", "{image}")
        ),
        # not a store, or a store path that is a file
        "list-not-a-store": lambda w: ["store", "list", str(w.tmp)],
        "list-store-is-a-file": lambda w: ["store", "list", str(w.image)],
        "init-on-existing-store": _store_cmd("init", "{store}"),
        "init-under-a-file": lambda w: ["store", "init", str(w.image / "sub")],
        "init-label-too-large": lambda w: [
            "store",
            "init",
            str(w.tmp / "new"),
            "--labels",
            "0=bg,2147483648=x",
        ],
        # another process holds the database
        "status-db-locked": _then(
            _hold_write_lock, _store_cmd("status", "{store}", "hippocrop_001", "in_review")
        ),
        "import-db-locked": _then(
            _hold_write_lock, _store_cmd("import", "{store}", "{other}", "--case-id", "x2")
        ),
        # a store this user cannot write
        "status-read-only-store": _then(
            _read_only, _store_cmd("status", "{store}", "hippocrop_001", "in_review")
        ),
        "import-read-only-store": _then(
            _read_only, _store_cmd("import", "{store}", "{image}", "--case-id", "n")
        ),
        # damaged files inside the store
        "approve-damaged-version": _then(
            lambda w: (
                CaseStore.open(w.store).set_status("hippocrop_001", "in_review", "me"),
                _damage(w.version_file()),
            ),
            _store_cmd("status", "{store}", "hippocrop_001", "approved"),
        ),
        "export-damaged-version": _then(
            lambda w: _damage(w.version_file()), _store_cmd("export", "{store}", "{tmp}/o")
        ),
        "export-missing-version": _then(
            lambda w: w.version_file().unlink(), _store_cmd("export", "{store}", "{tmp}/o")
        ),
        "export-swapped-image": _then(
            lambda w: shutil.copy(w.other_label, w.store / "imagesTr" / "hippocrop_001.nii.gz"),
            _store_cmd("export", "{store}", "{tmp}/o"),
        ),
        "export-missing-image": _then(
            lambda w: (w.store / "imagesTr" / "hippocrop_001.nii.gz").unlink(),
            _store_cmd("export", "{store}", "{tmp}/o"),
        ),
        # export targets
        "export-out-is-a-file": _store_cmd("export", "{store}", "{image}"),
        "export-out-not-empty": _then(
            lambda w: (w.tmp / "full").mkdir() or (w.tmp / "full" / "x").write_text("x"),
            _store_cmd("export", "{store}", "{tmp}/full"),
        ),  # fmt: skip
        "export-out-inside-store": _store_cmd("export", "{store}", "{store}/sub"),
        "export-disk-full": _then(
            lambda w: _os_fault(w, "shutil", "copyfile", errno.ENOSPC),
            _store_cmd("export", "{store}", "{tmp}/o"),
        ),
        "export-permission-denied": _then(
            lambda w: _os_fault(w, "shutil", "copyfile", errno.EACCES),
            _store_cmd("export", "{store}", "{tmp}/o"),
        ),
        # imports that cannot work
        "import-missing-file": _store_cmd("import", "{store}", "{tmp}/none.nii.gz"),
        "import-text-file": lambda w: ["store", "import", str(w.store), str(_write(w, "x.nii.gz", b"text"))],
        "import-empty-folder": lambda w: (
            (w.tmp / "emptydir").mkdir() or ["store", "import", str(w.store), str(w.tmp / "emptydir")]
        ),
        "import-case-id-unsafe": _store_cmd("import", "{store}", "{image}", "--case-id", "../evil"),
        "import-case-id-count": _store_cmd("import", "{store}", "{image}", "--case-id", "a", "b"),
        "import-name-maps-to-nothing": lambda w: [
            "store",
            "import",
            str(w.store),
            str(shutil.copy(w.image, w.tmp / "___.nii.gz")),
        ],  # fmt: skip
        "import-already-there": _store_cmd("import", "{store}", "{image}"),
        "import-same-id-other-image": _store_cmd(
            "import", "{store}", "{other}", "--case-id", "hippocrop_001", "--skip-existing"
        ),
        "import-labels-off-grid": _store_cmd(
            "import", "{store}", "{image}", "--labels", "{other}", "--case-id", "n1"
        ),
        "import-labels-count": _store_cmd("import", "{store}", "{image}", "{other}", "--labels", "{label}"),
        "import-labels-undeclared": lambda w: [
            "store",
            "import",
            str(w.store),
            str(w.image),
            "--case-id",
            "n2",
            "--labels",
            str(_label_with_value(w, 7)),
        ],  # fmt: skip
        "import-disk-full": _then(
            lambda w: _os_fault(w, "shutil", "copyfile", errno.ENOSPC),
            _store_cmd("import", "{store}", "{other}", "--case-id", "n3"),
        ),
        # workflow
        "status-unknown-case": _store_cmd("status", "{store}", "nobody", "approved"),
        "status-forbidden-move": _store_cmd("status", "{store}", "hippocrop_001", "proposed"),
        "status-nothing-to-do": _store_cmd("status", "{store}", "hippocrop_001"),
        "history-unknown-case": _store_cmd("history", "{store}", "nobody"),
        "rebuild-not-a-store": lambda w: ["store", "rebuild", str(w.tmp)],
        "rebuild-healthy-store": _store_cmd("rebuild", "{store}"),
        # models
        "predict-model-patch-nonsense": lambda w: [
            "predict",
            str(w.image),
            "--out",
            str(w.tmp / "p"),
            "--model",
            str(_bad_model(w, pair_edit=_set("patch_size", [0, -1, 5]))),
        ],  # fmt: skip
        "predict-model-absurd-size": lambda w: [
            "predict",
            str(w.image),
            "--out",
            str(w.tmp / "p"),
            "--model",
            str(_bad_model(w, net_edit=_set("hidden_size", 10**7))),
        ],  # fmt: skip
        "predict-model-pair-json-broken": lambda w: [
            "predict",
            str(w.image),
            "--out",
            str(w.tmp / "p"),
            "--model",
            str(_bad_model(w) and _write(w, "model/pair.json", b"{").parent),
        ],  # fmt: skip
        "predict-model-missing": lambda w: [
            "predict",
            str(w.image),
            "--out",
            str(w.tmp / "p"),
            "--model",
            str(w.tmp),
        ],
        "predict-out-is-a-file": lambda w: [
            "predict",
            str(w.image),
            "--out",
            str(w.image),
            "--model",
            str(w.model),
        ],
        "predict-missing-scan": lambda w: [
            "predict",
            str(w.tmp / "x.nii.gz"),
            "--out",
            str(w.tmp / "p"),
            "--model",
            str(w.model),
        ],
        "evaluate-out-is-a-folder": lambda w: [
            "evaluate",
            "--model",
            str(w.model),
            "--data",
            str(w.store),
            "--out",
            str(w.tmp),
            "--no-hd95",
        ],  # fmt: skip
        "evaluate-data-missing": lambda w: [
            "evaluate",
            "--model",
            str(w.model),
            "--data",
            str(w.tmp / "none"),
        ],
    }
)


def _label_with_value(w: World, value: int) -> Path:
    from napari_medseg.io import load_labels, load_volume, save_labels

    image = load_volume(w.image)
    labels = load_labels(w.label).array.astype(np.uint8)
    labels[0, 0, 0] = value
    return save_labels(labels, image, w.tmp / "undeclared.nii.gz")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


def _assert_one_error_line(rc: int, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err


def test_there_are_enough_probes():
    assert len(PROBES) >= 60


@pytest.mark.parametrize("name", sorted(PROBES))
def test_bad_input_gives_one_error_line_and_exit_2(name, world, capsys):
    argv = PROBES[name](world)
    capsys.readouterr()
    try:
        rc, err = run_cli(argv, capsys)
    finally:
        holder = getattr(world, "_holder", None)
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
    _assert_one_error_line(rc, err)


def test_locked_store_names_the_process_holding_it(world, capsys):
    _hold_write_lock(world)
    from napari_medseg.store import locking

    locking.note_writer(world.store / ".medseg")  # as the holder would have done
    try:
        store = CaseStore.open(world.store)
        with pytest.raises(Exception) as info:
            store.comment("hippocrop_001", "me", "hello")
    finally:
        world._holder.execute("ROLLBACK")
    assert "stayed locked by another process" in str(info.value)
    assert f"process {os.getpid()}" not in str(info.value)  # our own note is not blamed on us


def test_malformed_dataset_json_does_not_stop_info(world, capsys):
    folder = world.msd([1, 2])
    rc, err = run_cli(["info", str(folder / "imagesTr" / "case_001.nii.gz")], capsys)
    assert rc == 0 and "Traceback" not in err


def _subprocess(argv: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MEDSEG_DEBUG"}
    env["PYTHONPATH"] = str(REPO)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "napari_medseg.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    "name",
    [
        "list-db-garbage",
        "import-dataset-json-list",
        "info-nifti-dim-huge",
        "export-damaged-version",
        "init-under-a-file",
    ],
)
def test_no_traceback_reaches_the_terminal(name, world):
    proc = _subprocess(PROBES[name](world))
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_locked_store_from_another_process_is_one_line_naming_it(world):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from napari_medseg.store import CaseStore; s = CaseStore.open(sys.argv[1]);\n"
            "with s._write():\n    print('holding', flush=True); time.sleep(30)",
            str(world.store),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        env_wait = {"MEDSEG_DB_WAIT_S": "0.5"}
        os.environ.update(env_wait)
        try:
            proc = _subprocess(["store", "status", str(world.store), "hippocrop_001", "--comment", "hi"])
        finally:
            os.environ.pop("MEDSEG_DB_WAIT_S")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"process {holder.pid}" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_a_bug_is_one_line_with_exit_3_and_a_traceback_file(world, capsys, monkeypatch):
    import napari_medseg.commands.store as store_cmd

    monkeypatch.delenv("MEDSEG_DEBUG")
    monkeypatch.setattr(store_cmd, "run_list", lambda args: {}["boom"])  # bound when main() builds the parser
    monkeypatch.setattr(cli, "_save_traceback", lambda err: str(world.tmp / "crash.txt"))
    rc = cli.main(["store", "list", str(world.store)])
    err = capsys.readouterr().err
    assert rc == 3 and "Traceback" not in err and err.count("\n") == 1 and "internal error: KeyError" in err


def test_unreadable_store_stays_usable_for_reading(world, capsys, monkeypatch):
    _read_only(world)
    rc = cli.main(["store", "list", str(world.store)])
    out = capsys.readouterr()
    assert rc == 0 and "hippocrop_001" in out.out
    assert out.err.count("note: you cannot write") == 1
    rc = cli.main(["store", "export", str(world.store), str(world.tmp / "exp")])
    assert rc == 0 and (world.tmp / "exp" / "labelsTr" / "hippocrop_001.nii.gz").is_file()
    with pytest.raises(sqlite3.OperationalError):  # the connection itself is read-only (mode=ro)
        CaseStore.open(world.store)._conn.execute("DELETE FROM locks")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare for a read-only mount")
def test_store_on_a_read_only_mount_lists_and_exports(world):
    mnt = world.tmp / "mnt"
    mnt.mkdir()
    CaseStore.open(world.store).close()  # closed cleanly: no -wal/-shm left, the hardest case
    script = (
        f"mount --bind -o ro {world.store} {mnt} || exit 77; "
        f"{sys.executable} -m napari_medseg.cli store list {mnt} && "
        f"{sys.executable} -m napari_medseg.cli store export {mnt} {world.tmp / 'exp'}; "
        f"{sys.executable} -m napari_medseg.cli store status {mnt} hippocrop_001 in_review"
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    if proc.returncode == 77 or "unshare failed" in proc.stderr or "Operation not permitted" in proc.stderr:
        pytest.skip("cannot make a read-only mount here")
    assert "hippocrop_001" in proc.stdout and "exported 1 approved case" in proc.stdout, proc.stderr
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: you cannot write to the case store" in proc.stderr
