"""The keras-seqrec command line, end to end on small settings."""

import json
import os

import keras
import pytest

from keras_seqrec import cli


def test_stats_prints_split_sizes(capsys):
    assert cli.main(["stats", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["raw"] == {"name": "ml-latest-small", "users": 610, "items": 9724,
                           "interactions": 100836, "first_timestamp": 828124615,
                           "last_timestamp": 1537799250}
    assert info["split"]["test_examples"] == info["filtered"]["users"]


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(SystemExit, match="neither a known dataset"):
        cli.main(["stats", "--dataset", "ml-2m"])


def test_train_evaluate_export_recommend(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main([
        "train", "--model", "gru", "--epochs", "1", "--embedding-dim", "8", "--hidden-dim", "8",
        "--min-item-interactions", "20", "--max-len", "20", "--output", str(run),
        "--verbose", "0", "--exclude-seen",
    ]) == 0
    out = capsys.readouterr().out
    for row in ("pop", "markov", "gru"):
        assert any(line.startswith(row) and "test" in line for line in out.splitlines())
    for name in ("model.keras", "vocabulary.json", "run.json", "item_counts.npy",
                 "titles.json"):
        assert (run / name).exists()
    with open(run / "run.json") as f:
        record = json.load(f)
    assert record["protocol"]["exclude_seen"] is True
    assert 0.0 <= record["metrics"]["gru"]["test"]["ndcg@10"] <= 1.0

    assert cli.main(["evaluate", "--run-dir", str(run), "-k", "10", "--exclude-seen"]) == 0
    table = capsys.readouterr().out
    gru_test = [line for line in table.splitlines() if line.startswith("gru ")][-1]
    assert f"{record['metrics']['gru']['test']['ndcg@10']:.4f}" in gru_test

    export_dir = tmp_path / "saved" / "gru"
    assert cli.main(["export", "--run-dir", str(run), "--export-dir", str(export_dir)]) == 0
    assert os.path.isdir(export_dir / "1")
    capsys.readouterr()
    assert cli.main(["recommend", "--model-dir", str(export_dir), "--history", "1,50,33",
                     "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("history: Toy Story (1995)")
    assert len(lines) == 4


def test_train_with_a_sampled_loss(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main([
        "train", "--model", "gru4rec", "--epochs", "5", "--hidden-dim", "8",
        "--min-item-interactions", "20", "--max-len", "20", "--output", str(run),
        "--verbose", "0", "--loss", "bpr_max", "--num-negatives", "16", "--time-limit", "1e-6",
        "--param", "embedding_dropout=0.3",
    ]) == 0
    model = keras.saving.load_model(run / "model.keras", compile=False)
    assert model.get_layer("embedding_dropout").rate == 0.3
    with open(run / "run.json") as f:
        record = json.load(f)
    # The time limit passes during the first epoch: one epoch of five runs, and is kept.
    assert record["training"]["stopped_by"] == "time_limit"
    assert record["training"]["epochs_run"] == 1
    assert record["training"]["loss"]["name"] == "bpr_max"
    assert record["training"]["loss"]["num_negatives"] == 16
    with pytest.raises(SystemExit, match="sampled losses only"):
        cli.main(["train", "--num-negatives", "4", "--epochs", "1", "--output",
                  str(tmp_path / "x")])


def test_train_param_errors_name_the_bad_hyperparameter(tmp_path):
    with pytest.raises(SystemExit) as caught:
        cli.main(["train", "--param", "dropout"])
    assert caught.value.code == 2  # argparse: not KEY=VALUE
    with pytest.raises(SystemExit, match="dropout is given twice"):
        cli.main(["train", "--dropout", "0.2", "--param", "dropout=0.3", "--epochs", "1",
                  "--min-item-interactions", "20", "--output", str(tmp_path / "run")])
    with pytest.raises(SystemExit, match=r"'hiden_dim' \(did you mean 'hidden_dim'\?\)"):
        cli.main(["train", "--model", "gru", "--param", "hiden_dim=8", "--epochs", "1",
                  "--min-item-interactions", "20", "--output", str(tmp_path / "run")])
