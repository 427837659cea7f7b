"""The panels' warm-up: napari's lazy imports of the first open are paid off the GUI thread."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("napari")

from napari_medseg.widgets import _warmup  # noqa: E402

# A fresh interpreter (this one has imported everything already): the modules napari imports when the
# layers the review opens with (as widgets._layers adds them) are added to a headless viewer model.
_PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from napari.components import ViewerModel
    from napari_medseg.io.napari_view import UNITS
    from napari_medseg.widgets._layers import MARKER_STYLE
    if sys.argv[1] == "warm":
        from napari_medseg.widgets import _warmup
        _warmup.start().join()
    viewer = ViewerModel()
    before = set(sys.modules)
    viewer.add_image(np.zeros((3, 5, 5), np.int16), contrast_limits=(-160.0, 240.0), scale=(2.0, 0.7, 0.7),
                     units=UNITS)
    viewer.add_labels(np.zeros((3, 5, 5), np.uint8), scale=(2.0, 0.7, 0.7), units=UNITS)
    viewer.add_points(np.zeros((2, 3)), features={"letter": ["A", "P"]}, **MARKER_STYLE)
    print(json.dumps(sorted(set(sys.modules) - before)))
    """
)


def _first_layer_imports(mode: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_after_the_warm_up_the_first_layers_import_nothing() -> None:
    cold = _first_layer_imports("cold")
    warm = _first_layer_imports("warm")
    assert warm == [], f"left to the first open: {warm} (without the warm-up: {len(cold)} modules)"


def test_the_warm_up_starts_once_per_process() -> None:
    first = _warmup.start()
    assert _warmup.start() is first
    first.join(timeout=120)
    assert not first.is_alive()


def test_a_failing_warm_up_stays_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("napari changed")

    monkeypatch.setattr(_warmup, "_build_layers", broken)
    _warmup._run()  # no exception: the first open just pays the imports itself
