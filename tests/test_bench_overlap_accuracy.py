"""The overlap bench's mosaics: cells keep each case's structure whole and land back where they came from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("overlap_accuracy", ROOT / "bench" / "overlap_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cell_is_cropped_around_the_label_and_padded_at_the_edges():
    ov = _bench()
    image = np.arange(10 * 4 * 6, dtype=np.float32).reshape(10, 4, 6)
    label = np.zeros(image.shape, np.int64)
    label[7:9, 1:3, 2:4] = 2  # near the end of the first axis
    img, lab = ov.fit_cell(image, label, (4, 6, 6))
    assert img.shape == lab.shape == (4, 6, 6)
    assert lab.sum() == label.sum()  # the crop kept the whole structure
    assert np.array_equal(img[:, 1:5], image[5:9])  # centred on the label (rows 7-8), padded by one each side
    # the padding repeats the edge values
    assert np.array_equal(img[:, 0], image[5:9, 0]) and np.array_equal(img[:, 5], image[5:9, 3])
    assert not lab[:, 0].any() and not lab[:, 5].any()  # padded labels are background


def test_cells_tile_and_come_back_in_order():
    ov = _bench()
    cell = (2, 3, 4)
    cells = [np.full(cell, n, np.int32) for n in range(int(np.prod(ov.GRID)))]
    volume = ov.tile(cells, cell)
    assert volume.shape == tuple(g * c for g, c in zip(ov.GRID, cell, strict=True))
    for n in range(len(cells)):
        assert np.array_equal(ov.cell_of(volume, n, cell), cells[n])
    assert volume[0, 0, -1] == ov.GRID[2] - 1  # C order: the last grid axis varies fastest


def test_whole_mode_runs_each_case_at_every_overlap(hippo_dir, tmp_path):
    """``--whole``: a real case through the product's engine at each overlap, Dice against its label."""
    import json

    ov = _bench()
    ids = tmp_path / "ids.txt"
    ids.write_text("hippocampus_001\n")
    out = tmp_path / "whole.json"
    code = ov.main(
        [
            "--whole",
            "--data",
            str(hippo_dir),
            "--case-ids",
            str(ids),
            "--overlaps",
            "0.5",
            "0.25",
            "--threads",
            "1",
        ]
        + ["--out", str(out)]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["mode"] == "whole" and set(result["summary"]) == {"0.25", "0.5"}
    for key, s in result["summary"].items():
        assert s["n"] == 1 and s["windows"] == 1  # a hippocampus case fits one window
        assert 0.8 < s["dice_mean"] <= 1.0
        assert s["minus_top_overlap_mean"] == 0.0  # one window: the overlap changes nothing
        (row,) = result["rows"][key]
        assert row[0] == "hippocampus_001" and row[3] > 0
