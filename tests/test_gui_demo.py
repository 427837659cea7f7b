"""``napari-medseg demo``: demo store from the bundled sample, napari with the panels, overlay rendered."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from napari_medseg.commands.demo import default_demo_dir, prepare_store

#: One window covers a hippocampus volume (31-43 x 40-59 x 24-47 voxels): one pass per case.
PATCH = (48, 64, 48)
pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small random-init UNETR + BS-Net pair (real networks, untrained) saved like the default model."""
    import torch

    from napari_medseg.models.factory import build_network
    from napari_medseg.models.pair import ModelPair

    torch.manual_seed(0)
    nets = {
        "unetr": build_network(
            "unetr", {"img_size": PATCH, "feature_size": 8, "hidden_size": 48, "mlp_dim": 96, "num_heads": 2}
        ),
        "bsnet": build_network("bsnet", {"filters": (8, 16, 32, 64), "boundary_filters": (4, 8, 16)}),
    }
    out = tmp_path_factory.mktemp("model") / "tiny"
    ModelPair.from_nets(nets, model_id="tiny-random", patch_size=PATCH).save(out)
    return out


def test_demo_store_goes_to_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_demo_dir() == tmp_path / "data" / "napari-medseg" / "demo"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_demo_dir() == tmp_path / "home" / ".local" / "share" / "napari-medseg" / "demo"


def test_demo_store_is_created_once_from_the_bundled_sample(tmp_path):
    store, created = prepare_store(tmp_path / "demo")
    assert created and len(store.case_ids()) == 3
    assert all(c.n_versions == 0 and c.status == "new" for c in store.cases())  # the model proposes
    ids = store.case_ids()
    store.close()
    again, created = prepare_store(tmp_path / "demo")
    assert not created and again.case_ids() == ids
    again.close()


def test_demo_opens_the_most_uncertain_case_and_shows_the_overlay(tmp_path, tiny_model):
    from skimage.io import imread

    from napari_medseg.store import CaseStore

    png = tmp_path / "demo.png"
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}  # a real (Xvfb) display
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "napari_medseg.cli", "demo", "--store", str(tmp_path / "demo")]
    cmd += ["--model", str(tiny_model), "--user", "tester", "--screenshot", str(png), "--quit"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "screenshot:" in out.stdout

    with CaseStore.open(tmp_path / "demo") as store:
        cases = store.cases()
        assert all(c.uncertainty is not None for c in cases)
        top = max(cases, key=lambda c: c.uncertainty)
        assert f"opened {top.case_id}" in out.stdout
        proposal = store.proposal(top.case_id)
        assert proposal is not None and proposal.author == "tester"
        assert proposal.source.startswith("model:tiny-random@")
        assert all(c.lock_owner is None for c in cases)  # released on quit

    shot = imread(png)[..., :3].astype(int)
    assert shot.shape[0] >= 600 and shot.shape[1] >= 900
    r, g, b = shot[..., 0], shot[..., 1], shot[..., 2]
    warm = np.maximum(r, g)
    hot = (warm >= 150) & (warm - b >= 50)  # inferno's red-orange-yellow added on the grey MRI
    assert hot.sum() >= 20, "no uncertainty overlay colours in the demo window"
    assert np.unique(shot.reshape(-1, 3), axis=0).shape[0] > 200  # a rendered image, not a blank window
