"""Shared fixtures: where the real data lives, and small real crops of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napari_medseg.bundled import resource_path

REPO = Path(__file__).resolve().parent.parent
#: ``../shared/data`` beside the checkout (CI clones the repo with ``shared/`` beside it).
SHARED_DATA = Path(os.environ.get("MEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
HIPPO = SHARED_DATA / "msd-hippocampus"
TOTALSEG = SHARED_DATA / "totalseg-examples"
STS_DICOM = SHARED_DATA / "ibsi-sts-ct" / "dicom" / "STS_001"
RESOURCES = resource_path()  # the bundled model and sample cases (package data)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set MEDSEG_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def hippo_dir() -> Path:
    return _need(HIPPO)


@pytest.fixture(scope="session")
def totalseg_dir() -> Path:
    return _need(TOTALSEG)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - tests._orthanc.Orthanc
    """A real Orthanc PACS (DICOMweb at ``.dicomweb_url``, basic auth ``.auth``) holding the IBSI STS_001
    study (59-slice CT series + RTSTRUCT); started once, stopped after the session."""
    from _orthanc import Orthanc, missing_reason

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    study = _need(STS_DICOM)
    server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    try:
        server.upload_folder(study)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def hippo_cases(hippo_dir: Path) -> list[tuple[Path, Path]]:
    """(image, label) paths of the first 8 hippocampus cases, sorted by name."""
    images = sorted((hippo_dir / "imagesTr").glob("hippocampus_*.nii.gz"))[:8]
    return [(p, hippo_dir / "labelsTr" / p.name) for p in images]


#: Tiny network configs for fast CPU tests (random weights; not for accuracy).
TINY_UNETR = {"img_size": [32, 32, 32], "feature_size": 4, "hidden_size": 24, "mlp_dim": 48, "num_heads": 2}
TINY_BSNET = {"filters": [4, 8, 16]}


def tiny_bsnet_trainer(hippo_dir: Path, out: Path, n_train: int, batch_size: int, epochs: int):  # noqa: ANN201
    """A CoCorrectingTrainer of a tiny BS-Net alone on the first ``n_train`` hippocampus cases (+1 to
    validate), patch 32x48x32: real training steps in a second."""
    from napari_medseg.training.cocorrecting import CoCorrectingTrainer, TrainConfig
    from napari_medseg.training.data import cases_from_msd, load_cases

    recs = cases_from_msd(hippo_dir)[: n_train + 1]
    cfg = TrainConfig(
        patch=(32, 48, 32),
        nets="bsnet",
        bsnet={"filters": [4, 8, 16], "deep_supervision": 1},
        batch_size=batch_size,
        epochs=epochs,
        progress=False,
    )
    return CoCorrectingTrainer(
        load_cases(recs[:n_train], cfg.patch), load_cases(recs[n_train:], cfg.patch), cfg, out
    )


def make_tiny_pair_dir(folder: Path, model_id: str = "tiny-pair", seed: int = 0) -> Path:
    """Save a random-init UNETR + BS-Net pair with tiny configs to ``folder``; return it."""
    import torch

    from napari_medseg.models.factory import build_network
    from napari_medseg.models.pair import ModelPair

    torch.manual_seed(seed)
    nets = {"unetr": build_network("unetr", TINY_UNETR), "bsnet": build_network("bsnet", TINY_BSNET)}
    pair = ModelPair.from_nets(nets, model_id=model_id, patch_size=(32, 32, 32))
    return pair.save(folder)


def store_with_tiny_model(folder: Path, cases, n_approved: int, model_id: str) -> Path:
    """A hippocampus case store in ``folder/store`` holding ``cases`` (the first ``n_approved`` approved)
    whose registry's current model is a fresh tiny pair called ``model_id``."""
    from napari_medseg.registry import ModelRegistry
    from napari_medseg.store import CaseStore

    root = folder / "store"
    store = CaseStore.init(root, name="hippo", labels={0: "background", 1: "anterior", 2: "posterior"})
    for i, (image, label) in enumerate(cases):
        store.import_case(image, label, approved=i < n_approved)
    store.close()
    registry = ModelRegistry(root)
    registry.register(make_tiny_pair_dir(folder / "tiny", model_id=model_id), {})
    registry.promote(model_id)
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny random pair (session-wide, read-only by convention)."""
    return make_tiny_pair_dir(tmp_path_factory.mktemp("tiny-model") / "tiny-pair")


@pytest.fixture()
def one_torch_thread():
    """One intra-op torch thread (the cores may be shared; avoids oversubscription stalls)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def real_batch(cases, n: int, size: tuple[int, int, int]):  # noqa: ANN201 - (Tensor, Tensor)
    """Centre crops (zero-padded where needed) of ``n`` real cases: x (n,1,*size) float, y (n,*size) int64."""
    import nibabel as nib
    import numpy as np
    import torch

    from napari_medseg.models.preprocessing import normalize_intensity
    from napari_medseg.training.data import center_crop_or_pad

    xs, ys = [], []
    for image_path, label_path in cases[:n]:
        img = normalize_intensity(np.asarray(nib.load(image_path).dataobj))
        lab = np.rint(np.asarray(nib.load(label_path).dataobj)).astype(np.int64)
        xs.append(center_crop_or_pad(img, size))
        ys.append(center_crop_or_pad(lab, size, 0))
    return torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys))


@pytest.fixture(autouse=True)
def _float32_on_every_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test computes in float32 on the CPU, whatever the CPU: its bf16 support (AMX, AVX512-BF16)
    must not change results between machines. tests/test_precision.py tests the bf16 path itself."""
    from napari_medseg.inference.device import CPU_BF16_ENV

    monkeypatch.setenv(CPU_BF16_ENV, "0")


@pytest.fixture(autouse=True)
def _no_blocking_dialogs(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may hang on a real modal question (e.g. the close guard while a viewer fixture is torn
    down with unsaved edits): unsaved edits are discarded and yes/no questions answered no, unless
    the test patches the question itself."""
    from napari_medseg.widgets import _dialogs

    monkeypatch.setattr(_dialogs, "ask_unsaved", lambda case_id: "discard")
    monkeypatch.setattr(_dialogs, "ask_save_as_new", lambda message: False)
    monkeypatch.setattr(_dialogs, "ask_break_lock", lambda message: False)
