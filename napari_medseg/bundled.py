"""Files shipped inside the package: the default model pair and the sample cases.

They live in ``napari_medseg/resources/`` (package data, so an installed wheel has them) and every
module finds them through :func:`resource_path`, which asks :mod:`importlib.resources` where the
installed package is — never a path relative to a source checkout.

Layout::

    resources/models/default/   pair.json, unetr.{json,safetensors}, bsnet.{json,safetensors}, train_log.csv
    resources/sample/           MSD Task04 hippocampus cases (CC BY-SA 4.0, SOURCE.md): dataset.json,
                                imagesTr/, labelsTr/
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """The file-system path of ``resources/<parts...>`` of the installed package (it may not exist).

    Raises:
        RuntimeError: the package is not installed as plain files (e.g. imported from a zip archive).
    """
    root = files("napari_medseg").joinpath("resources", *parts)
    if not isinstance(root, Path):
        raise RuntimeError("napari-medseg must be installed as files (not zipped) to find its bundled model")
    return root


def default_model_dir() -> Path:
    """The bundled default model pair (a folder with ``pair.json``)."""
    return resource_path("models", "default")


def sample_dir() -> Path:
    """The bundled sample cases (an MSD folder with ``dataset.json``)."""
    return resource_path("sample")
