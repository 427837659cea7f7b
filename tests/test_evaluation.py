"""Evaluation: per-class Dice/HD95 on planted predictions, reports, and the evaluate command."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest

from napari_medseg.evaluation.metrics import case_metrics
from napari_medseg.evaluation.report import EvaluationReport


def boxes() -> np.ndarray:
    lab = np.zeros((20, 20, 20), dtype=np.uint8)
    lab[4:14, 4:14, 4:9] = 1  # 500 voxels
    lab[4:14, 4:14, 9:14] = 2  # 500 voxels
    return lab


def test_planted_predictions_give_the_known_dice():
    truth = boxes()
    pred = truth.copy()
    pred[4:14, 4:14, 13] = 0  # class 2 loses one slice: 400 of 500 voxels
    pred[4:9, 4:14, 4:9] = 0  # class 1 loses half: 250 of 500
    m = case_metrics(pred, truth, [1, 2], hd95=False)
    assert m["dice_1"] == pytest.approx(2 * 250 / (250 + 500))
    assert m["dice_2"] == pytest.approx(2 * 400 / (400 + 500))
    assert m["dice_mean"] == pytest.approx((m["dice_1"] + m["dice_2"]) / 2)
    assert m["volerr_1"] == pytest.approx(-50.0) and m["volerr_2"] == pytest.approx(-20.0)  # under-segmented
    grown = truth.copy()
    grown[14, 4:14, 4:9] = 1  # 50 extra voxels of class 1 (10 %)
    assert case_metrics(grown, truth, [1], hd95=False)["volerr_1"] == pytest.approx(10.0)


def test_hd95_uses_the_voxel_spacing():
    truth = boxes()
    pred = np.zeros_like(truth)
    pred[5:15, 4:14, 4:9] = 1  # class 1 shifted by one voxel along i
    pred[4:14, 4:14, 9:14] = 2
    m1 = case_metrics(pred, truth, [1, 2], spacing=(1.0, 1.0, 1.0))
    m3 = case_metrics(pred, truth, [1, 2], spacing=(3.0, 1.0, 1.0))
    assert m1["hd95_1"] == pytest.approx(1.0)
    assert m3["hd95_1"] == pytest.approx(3.0)
    assert m1["hd95_2"] == pytest.approx(0.0)


def test_missing_class_gives_zero_dice_and_nan_hd95_and_absent_class_counts_as_perfect():
    truth = boxes()
    pred = truth.copy()
    pred[pred == 2] = 0
    m = case_metrics(pred, truth, [1, 2, 3])
    assert m["dice_2"] == 0.0 and math.isnan(m["hd95_2"])
    assert m["dice_3"] == 1.0  # absent from both
    assert m["volerr_2"] == pytest.approx(-100.0) and math.isnan(m["volerr_3"])  # no truth: no % of it
    assert m["hd95_mean"] == pytest.approx(0.0)  # NaNs skipped


def test_report_summary_table_and_csv(tmp_path):
    report = EvaluationReport()
    report.add("a", {"dice_1": 0.8, "hd95_1": 2.0})
    report.add("b", {"dice_1": 0.6, "hd95_1": math.nan})
    mean, sd, n = report.summary()["dice_1"]
    assert (mean, n) == (pytest.approx(0.7), 2) and sd == pytest.approx(0.1)
    assert report.summary()["hd95_1"] == (2.0, 0.0, 1)
    table = report.format_table()
    assert "0.700 ± 0.100" in table and table.splitlines()[0].split() == ["case", "dice_1", "hd95_1"]
    rows = list(csv.reader(open(report.to_csv(tmp_path / "r.csv"))))
    assert rows[0] == ["case", "dice_1", "hd95_1"] and rows[2][2] == "" and rows[3][0] == "mean"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch

    from napari_medseg.models.factory import build_network
    from napari_medseg.models.pair import ModelPair

    torch.manual_seed(0)
    nets = {
        "unetr": build_network(
            "unetr",
            {"img_size": (48, 64, 48), "feature_size": 4, "hidden_size": 32, "mlp_dim": 64, "num_heads": 2},
        ),
        "bsnet": build_network("bsnet", {"filters": (4, 8, 16)}),
    }
    pair = ModelPair.from_nets(
        nets, "tiny-test", training={"split": {"train": [], "val": ["hippocampus_003"]}}
    )
    return pair.save(tmp_path_factory.mktemp("model"))


def test_evaluate_command_scores_the_recorded_validation_cases(tmp_path, tiny_model_dir, hippo_cases, capsys):
    from napari_medseg.cli import main

    data = tmp_path / "msd"
    for sub in ("imagesTr", "labelsTr"):
        (data / sub).mkdir(parents=True)
    for image, label in hippo_cases[:2]:
        shutil.copy(image, data / "imagesTr" / image.name)
        shutil.copy(label, data / "labelsTr" / label.name)
    out = tmp_path / "eval.csv"
    rc = main(
        [
            "evaluate",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(data),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "validation cases recorded" in printed and "mean ± sd (n=1)" in printed
    rows = list(csv.DictReader(open(out)))
    assert [r["case"] for r in rows[:-2]] == ["hippocampus_003"]
    assert 0.0 <= float(rows[0]["dice_anterior"]) <= 1.0  # class names from the model card
    assert 0.0 <= float(rows[0]["uncertainty_band_mean"]) <= 1.0  # the map's own 0..1 scale

    rc = main(
        ["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--split", "all", "--no-hd95"]
    )
    assert rc == 0 and "mean ± sd (n=2)" in capsys.readouterr().out
    rc = main(
        [
            "evaluate",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(data),
            "--split",
            "all",
            "--no-hd95",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(report["cases"]) == 2 and "dice_posterior" in report["summary"]
    assert report["precision"] == "fp32"  # the networks' precision is reported (tests run float32)
    assert json.loads((tiny_model_dir / "pair.json").read_text())["training"]["split"]["val"] == [
        "hippocampus_003"
    ]
