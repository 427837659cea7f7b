"""The wheel a new user installs: it holds the default model and the sample cases, and works without the
source tree (installed into a fresh virtual environment, run from an empty folder)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PKG = REPO / "napari_medseg"
RESOURCES = PKG / "resources"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of a copy of the package sources (the checkout gets no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(PKG, src / "napari_medseg", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
        str(src),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("napari_medseg-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_holds_the_default_model_and_the_sample_cases(wheel):
    bundled = sorted(p for p in RESOURCES.rglob("*") if p.is_file())
    assert any(p.name == "pair.json" for p in bundled) and any(p.suffix == ".gz" for p in bundled)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for path in bundled:
            name = path.relative_to(REPO).as_posix()
            assert name in names, f"{name} is missing from the wheel"
            assert _sha(zf.read(name)) == _sha(path.read_bytes()), f"{name} differs in the wheel"
        assert "napari_medseg/napari.yaml" in names and "napari_medseg/pacs/client.py" in names
        assert not any(n.startswith(("tests/", "bench/", "resources/")) for n in names)
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "Requires-Dist: dicomweb-client" in meta and "Requires-Dist: highdicom" in meta
    assert "napari-medseg = napari_medseg.cli:main" in entry and "napari.manifest" in entry


@pytest.mark.slow
def test_installed_wheel_predicts_with_its_bundled_model_without_the_source_tree(wheel, tmp_path):
    """A venv that sees the installed dependencies (``--system-site-packages``, no downloads) gets the wheel;
    from an empty folder, ``napari-medseg predict`` runs the bundled model on a bundled sample case."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    py = venv / "bin" / "python"
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEDSEG_SHARED_DATA")}
    env["OMP_NUM_THREADS"] = "1"
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import napari_medseg.bundled as b; print(b.default_model_dir()); print(b.sample_dir())",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr[-3000:]
    model_dir, sample = (Path(line) for line in where.stdout.split())
    assert model_dir.is_relative_to(venv) and (model_dir / "pair.json").is_file()
    assert not model_dir.is_relative_to(REPO)
    case = sample / "imagesTr" / "hippocampus_004.nii.gz"
    run = subprocess.run(
        [
            str(venv / "bin" / "napari-medseg"),
            "predict",
            str(case),
            "--out",
            str(work / "out"),
            "--device",
            "cpu",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert (work / "out" / "hippocampus_004_label.nii.gz").is_file()
