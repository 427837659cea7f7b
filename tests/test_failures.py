"""Failure inspection: error maps, worst-first ranking, CSV + PNG report on real cases."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from conftest import make_tiny_pair_dir, store_with_tiny_model

from napari_medseg.evaluation.failures import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    CaseFailure,
    FailureReport,
    error_map,
    failure_report,
    rank_worst_first,
    write_report,
)
from napari_medseg.evaluation.metrics import case_metrics


@pytest.fixture(scope="module")
def truth(hippo_cases):
    from napari_medseg.io import load_labels

    return load_labels(hippo_cases[0][1]).array.astype(np.uint8)


def test_error_map_marks_planted_false_positives_and_negatives(truth):
    pred = truth.copy()
    background = np.argwhere(truth == 0)[:7]
    anterior = np.argwhere(truth == 1)[:5]
    posterior = np.argwhere(truth == 2)[:3]
    pred[tuple(background.T)] = 2  # model adds posterior where there is nothing
    pred[tuple(anterior.T)] = 0  # model misses anterior
    pred[tuple(posterior.T)] = 1  # model calls posterior anterior
    emap = error_map(pred, truth)
    assert emap.dtype == np.uint8 and emap.shape == truth.shape
    assert (emap == FALSE_POSITIVE).sum() == 7 + 3
    assert (emap == FALSE_NEGATIVE).sum() == 5
    assert np.all(emap[tuple(anterior.T)] == FALSE_NEGATIVE)
    assert np.all(emap[tuple(background.T)] == FALSE_POSITIVE)
    assert (emap == 0).sum() == truth.size - 15


def test_cases_are_ranked_worst_dice_first_with_nan_last(truth):
    from scipy.ndimage import binary_erosion

    cases = []
    for name, iterations in (("mild", 1), ("perfect", 0), ("severe", 3)):
        pred = truth.copy()
        if iterations:
            fg = binary_erosion(truth > 0, iterations=iterations)
            pred[(truth > 0) & ~fg] = 0
        cases.append(CaseFailure(name, 1, case_metrics(pred, truth, [1, 2], hd95=False)))
    cases.append(CaseFailure("unscored", 1, {"dice_mean": math.nan}))
    ranked = [c.case_id for c in rank_worst_first(cases)]
    assert ranked == ["severe", "mild", "perfect", "unscored"]


def test_failure_report_scores_every_approved_case_and_writes_csv_and_png(tmp_path, hippo_cases):
    from napari_medseg.store import CaseStore

    root = tmp_path / "store"
    store = CaseStore.init(root, name="hippo", labels={0: "background", 1: "anterior", 2: "posterior"})
    for i, (image, label) in enumerate(hippo_cases[:3]):
        store.import_case(image, label, approved=i < 2)
    store.close()
    model = make_tiny_pair_dir(tmp_path / "tiny")
    report = failure_report(root, model, device="cpu")
    assert [c.case_id for c in report.cases] == [c.case_id for c in rank_worst_first(report.cases)]
    assert {c.case_id for c in report.cases} == {"hippocampus_001", "hippocampus_003"}  # approved only
    first = report.cases[0]
    assert first.proposal.shape == first.uncertainty.shape and "hd95_posterior" in first.metrics
    paths = write_report(report, tmp_path / "report")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["case"] for r in rows[:2]] == [c.case_id for c in report.cases]
    assert rows[-2]["case"] == "mean" and float(rows[0]["dice_mean"]) <= float(rows[1]["dice_mean"])
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_report_still_draws_a_histogram(tmp_path):
    paths = write_report(FailureReport(model_id="none"), tmp_path)
    assert paths["png"].stat().st_size > 0


def test_failures_command_prints_worst_first_table_and_writes_report(tmp_path, hippo_cases, capsys):
    from napari_medseg.commands.failures import main

    # no --model: the store's current model is used
    root = store_with_tiny_model(tmp_path, hippo_cases[:2], n_approved=2, model_id="tiny-cli")
    code = main(["--store", str(root), "--report", str(tmp_path / "out"), "--device", "cpu", "--no-hd95"])
    out = capsys.readouterr().out
    assert code == 0 and "model tiny-cli" in out
    rows = list(csv.DictReader((tmp_path / "out" / "failures.csv").open()))
    assert float(rows[0]["dice_mean"]) <= float(rows[1]["dice_mean"]) and "hd95_mean" not in rows[0]
    assert (tmp_path / "out" / "failures_hist.png").exists()
    assert main(["--store", str(tmp_path)]) == 2  # not a store: one-line error, exit code 2


def test_evaluate_with_store_writes_the_failures_report(tmp_path, hippo_cases, capsys):
    from napari_medseg.cli import main

    root = store_with_tiny_model(tmp_path, hippo_cases[:2], n_approved=2, model_id="tiny-eval")
    args = [
        "evaluate",
        "--store",
        str(root),
        "--report",
        str(tmp_path / "rep"),
        "--device",
        "cpu",
        "--no-hd95",
    ]
    assert main(args) == 0
    assert "model tiny-eval" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "rep" / "failures.csv").open()))
    cases = [r for r in rows if r["case"].startswith("hippocampus_")]
    assert len(cases) == 2 and float(cases[0]["dice_mean"]) <= float(cases[1]["dice_mean"])
    assert (
        main(["evaluate", "--data", str(root), "--report", str(tmp_path / "x")]) == 2
    )  # --report needs --store
