"""Shared fixtures: where the real data lives, and small real crops of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: ``../shared/data`` beside the checkout (CI clones the repo with ``shared/`` beside it).
SHARED_DATA = Path(os.environ.get("MEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
HIPPO = SHARED_DATA / "msd-hippocampus"
TOTALSEG = SHARED_DATA / "totalseg-examples"
RESOURCES = REPO / "resources"


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
def hippo_cases(hippo_dir: Path) -> list[tuple[Path, Path]]:
    """(image, label) paths of the first 8 hippocampus cases, sorted by name."""
    images = sorted((hippo_dir / "imagesTr").glob("hippocampus_*.nii.gz"))[:8]
    return [(p, hippo_dir / "labelsTr" / p.name) for p in images]
