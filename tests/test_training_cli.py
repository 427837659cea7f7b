"""``napari-medseg train``: one epoch writes a loadable pair, its card and a CSV log."""

from __future__ import annotations

import csv
import json

from napari_medseg.cli import main
from napari_medseg.models.pair import ModelPair
from napari_medseg.training.export import export_pair

TINY = json.dumps(
    {
        "patch": [32, 48, 32],
        "unetr": {"hidden_size": 32, "mlp_dim": 64, "num_heads": 2, "feature_size": 4},
        "bsnet": {"filters": [4, 8, 16], "deep_supervision": 1},
    }
)


def test_train_one_epoch_writes_a_loadable_pair_and_a_csv_log(hippo_dir, tmp_path):
    out = tmp_path / "model"
    argv = ["train", "--data", str(hippo_dir), "--out", str(out), "--epochs", "1", "--limit-cases", "4"]
    argv += ["--val-cases", "2", "--batch-size", "2", "--device", "cpu", "--config", TINY, "--no-progress"]
    argv += ["--noise-fraction", "0.5"]
    assert main(argv) == 0
    pair = ModelPair.load(out)
    assert set(pair.nets) == {"unetr", "bsnet"}
    assert pair.patch_size == (32, 48, 32)
    training = pair.card["training"]
    assert training["device"] == "cpu" and training["precision"] == "fp32"  # tests run float32 (conftest)
    assert len(training["split"]["train"]) == 4 and len(training["split"]["val"]) == 2
    assert len(training["noise"]["cases"]) == 2
    assert "dice_pair_mean" in pair.card["metrics"]["val_dice"]
    from napari_medseg.models.domain import card_domain

    domain = card_domain(pair.card)  # what the model may be used on, from its 4 training images
    assert domain["modality"] == "MR" and domain["n_cases"] == 4 and domain["labels"]["1"]
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert len(rows) == 1
    assert {"loss_unetr", "loss_bsnet", "dice_unetr_anterior", "dice_pair_posterior", "lc_changed"} <= set(
        rows[0]
    )
    assert (out / "checkpoint" / "trainer_state.json").exists()

    bundled = export_pair(out, tmp_path / "fp16", notes={"summary": "trained on CPU, 1 epoch"})
    small = ModelPair.load(bundled)
    assert small.cards["unetr"]["weights"]["dtype"] == "float16"
    assert small.card["training"]["summary"] == "trained on CPU, 1 epoch"
    assert small.card["training"]["split"] == training["split"]
    assert (bundled / "unetr.safetensors").stat().st_size < (out / "unetr.safetensors").stat().st_size


def test_training_one_network_plainly_writes_only_that_network(hippo_dir, tmp_path):
    out = tmp_path / "bsnet"
    argv = ["train", "--data", str(hippo_dir), "--out", str(out), "--epochs", "1", "--limit-cases", "2"]
    argv += ["--val-cases", "1", "--batch-size", "2", "--nets", "bsnet", "--config", TINY, "--no-progress"]
    assert main(argv) == 0
    assert ModelPair.load(out, nets=("bsnet",)).card["nets"] == ["bsnet"]


def test_trusted_labels_are_never_put_under_correction_but_noisy_ones_are(hippo_dir, tmp_path):
    def run(out, *extra):
        argv = ["train", "--data", str(hippo_dir), "--out", str(out), "--epochs", "1", "--limit-cases", "4"]
        argv += [
            "--val-cases",
            "1",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--config",
            TINY,
            "--no-progress",
        ]
        assert main([*argv, *extra]) == 0
        row = next(csv.DictReader((out / "train_log.csv").open()))
        return ModelPair.load(out).card["training"], int(row["lc_voxels"])

    card, band = run(tmp_path / "trusted", "--trust-labels")
    assert card["approved_train_cases"] == 4 and band == 0  # expert labels: nothing may be corrected
    card, band = run(tmp_path / "noisy", "--trust-labels", "--noise-fraction", "0.5")
    assert card["approved_train_cases"] == 2 and len(card["noise"]["cases"]) == 2 and band > 0
    card, band = run(tmp_path / "default")
    assert card["approved_train_cases"] == 0 and band > 0  # MSD labels carry no approval by default


def test_init_from_starts_from_a_models_weights_and_keeps_its_architecture(hippo_dir, tmp_path, capsys):
    import torch

    base = ["--data", str(hippo_dir), "--epochs", "1", "--limit-cases", "2", "--val-cases", "1"]
    base += ["--batch-size", "2", "--device", "cpu", "--nets", "bsnet", "--no-progress"]
    start_dir, tuned_dir = tmp_path / "start", tmp_path / "tuned"
    assert main(["train", *base, "--out", str(start_dir), "--config", TINY, "--model-id", "tiny-start"]) == 0
    # learning rate 0: the networks must come out exactly as they went in; no --config: the
    # architecture and patch come from the start model
    argv = ["train", *base, "--out", str(tuned_dir), "--init-from", str(start_dir), "--lr", "0"]
    assert main([*argv, "--config", '{"translate": 4}']) == 0
    start = ModelPair.load(start_dir, nets=("bsnet",))
    tuned = ModelPair.load(tuned_dir, nets=("bsnet",))
    assert tuned.patch_size == start.patch_size == (32, 48, 32)
    assert tuned.card["parent_model"] == "tiny-start"
    assert tuned.card["training"]["config"]["translate"] == 4
    for (name, a), (_, b) in zip(
        start.nets["bsnet"].named_parameters(), tuned.nets["bsnet"].named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name
    # one clear line for what cannot work
    capsys.readouterr()
    assert main([*argv, "--config", '{"patch": [48, 64, 48]}']) != 0
    assert main([*argv, "--resume", str(start_dir / "checkpoint")]) != 0
    assert main(["train", *base, "--out", str(tmp_path / "x"), "--init-from", str(tmp_path / "nowhere")]) != 0
    err = capsys.readouterr().err
    assert "cannot change patch" in err and "exclude each other" in err and "Traceback" not in err
