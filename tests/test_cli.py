"""The keras-seqrec command line, end to end on small settings."""

import json
import os

import keras
import numpy as np
import pytest

from keras_seqrec import cli
from keras_seqrec.export import Recommender


def test_stats_prints_split_sizes(capsys):
    assert cli.main(["stats", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["raw"] == {"name": "ml-latest-small", "users": 610, "items": 9724,
                           "interactions": 100836, "first_timestamp": 828124615,
                           "last_timestamp": 1537799250}
    assert info["split"]["test_examples"] == info["filtered"]["users"]


def test_unknown_dataset_is_a_clear_error(capsys):
    assert cli.main(["stats", "--dataset", "ml-2m"]) == 2
    assert "neither a known dataset" in one_error_line(capsys)


def one_error_line(capsys) -> str:
    """The single `error: ...` line a failing command must print (and nothing else)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


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

    assert cli.main(["evaluate", "--run-dir", str(run), "-k", "10"]) == 0  # as it trained
    table = capsys.readouterr().out
    assert "seen items excluded" in table
    gru_test = [line for line in table.splitlines() if line.startswith("gru ")][-1]
    gru = record["metrics"]["gru"]["test"]
    assert f"{gru['ndcg@10']:.4f} +- {gru['ndcg@10_se']:.4f}" in gru_test  # with its uncertainty
    assert 0.0 < gru["ndcg@10_se"] < 0.05
    assert cli.main(["evaluate", "--run-dir", str(run), "-k", "10", "--no-exclude-seen"]) == 0
    table = capsys.readouterr().out
    assert "seen items excluded" not in table
    kept = [line for line in table.splitlines() if line.startswith("gru ")][-1]
    assert kept != gru_test  # a different protocol, different figures
    # It evaluates on the run's own data and split: data flags are refused, not ignored.
    with pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate", "--run-dir", str(run), "--dataset", "ml-100k"])
    assert exit_.value.code == 2 and "unrecognized arguments: --dataset" in capsys.readouterr().err

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
        "--param", "embedding_dropout=0.3", "--lr-schedule", "plateau", "--plateau-patience", "3",
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
    assert record["training"]["learning_rate_schedule"] == "plateau"
    assert record["training"]["plateau_patience"] == 3
    capsys.readouterr()
    assert cli.main(["train", "--num-negatives", "4", "--epochs", "1", "--output",
                     str(tmp_path / "x")]) == 2
    assert "sampled losses only" in one_error_line(capsys)
    assert cli.main(["train", "--plateau-patience", "0", "--output", str(tmp_path / "y")]) == 2
    assert "--plateau-patience must be an integer >= 1" in one_error_line(capsys)


def test_train_param_errors_name_the_bad_hyperparameter(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["train", "--param", "dropout"])
    assert caught.value.code == 2  # argparse: not KEY=VALUE
    capsys.readouterr()
    assert cli.main(["train", "--dropout", "0.2", "--param", "dropout=0.3", "--epochs", "1",
                     "--min-item-interactions", "20", "--output", str(tmp_path / "run")]) == 2
    assert "dropout is given twice" in one_error_line(capsys)
    assert cli.main(["train", "--model", "gru", "--param", "hiden_dim=8", "--epochs", "1",
                     "--min-item-interactions", "20", "--output", str(tmp_path / "run")]) == 2
    assert "'hiden_dim' (did you mean 'hidden_dim'?)" in one_error_line(capsys)


SMALL = ["--min-item-interactions", "20", "--max-len", "20", "--verbose", "0"]
TINY_GRU = ["--model", "gru", "--embedding-dim", "8", "--hidden-dim", "8"]


def bad_inputs(tmp_path):
    import gzip

    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("user,item,timestamp\n")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "time.csv").write_text("user,item,timestamp\n1,10,5\n1,11,x\n")
    (tmp_path / "lines.csv").write_text("1 2 3\n")
    (tmp_path / "folder").mkdir()
    with gzip.open(tmp_path / "bad.CSV.GZ", "wt") as f:
        f.write("user,item,timestamp\n1,10,5\n1,11,soon\n")
    return {"empty.csv": "is empty", "header.csv": "but no interactions",
            "binary.csv": "binary file", "time.csv": "row 1 holds 'x'",
            "lines.csv": "--format", "folder": "is a directory",
            "bad.CSV.GZ": "row 1 holds 'soon'"}


def test_bad_input_files_are_one_line_errors_with_exit_status_2(tmp_path, capsys):
    for name, message in bad_inputs(tmp_path).items():
        assert cli.main(["stats", "--dataset", str(tmp_path / name)]) == 2, name
        assert message in one_error_line(capsys), name


def test_a_comma_log_with_another_extension_is_read_as_csv(tmp_path, capsys):
    rows = "".join(f"{u},{i},{u * 10 + i}\n" for u in range(8) for i in range(6))
    (tmp_path / "log.dat").write_text("user,item,timestamp\n" + rows)
    args = ["stats", "--dataset", str(tmp_path / "log.dat"), "--json",
            "--min-user-interactions", "1", "--min-item-interactions", "1", "--min-rating", "-1"]
    assert cli.main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["raw"]["items"] == 6 and info["raw"]["users"] == 8
    # Forced to the sequence format, each line is one token: a user with no items.
    assert cli.main(args + ["--format", "sequences"]) == 2
    assert "line 1 has a user id but no items" in one_error_line(capsys)


@pytest.mark.parametrize("flags,message", [
    (["--learning-rate", "-1"], "--learning-rate must be a finite number > 0"),
    (["--epochs", "0"], "--epochs must be an integer >= 1"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["--patience", "0"], "--patience must be an integer >= 1"),
    (["--loss", "bpr_max", "--num-negatives", "0"], "--num-negatives must be"),
    (["--time-limit", "0"], "--time-limit must be a positive"),
    (["--max-len", "1"], "--max-len must be >= 2"),
    (["--validation-metric", "auc"], "--validation-metric must look like"),
])
def test_training_arguments_are_checked_before_anything_loads(tmp_path, capsys, monkeypatch,
                                                               flags, message):
    def never(*args, **kwargs):
        raise AssertionError("the data was loaded before the arguments were checked")

    monkeypatch.setattr(cli, "_prepare", never)
    assert cli.main(["train", "--output", str(tmp_path / "run")] + flags) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_too_many_negatives_for_the_catalogue_is_refused(tmp_path, capsys):
    assert cli.main(["train", "--loss", "sampled_softmax", "--num-negatives", "100000",
                     "--output", str(tmp_path / "run")] + SMALL) == 2
    assert "smaller than the catalogue" in one_error_line(capsys)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    run = root / "run"
    assert cli.main(["train", "--epochs", "1", "--output", str(run)] + TINY_GRU + SMALL) == 0
    export_dir = root / "saved" / "gru"
    assert cli.main(["export", "--run-dir", str(run), "--export-dir", str(export_dir),
                     "--top-k", "5"]) == 0
    return run, export_dir


def test_a_finished_run_folder_is_never_mixed_with_another_run(finished_run, tmp_path, capsys):
    run, _ = finished_run
    capsys.readouterr()
    assert cli.main(["train", "--epochs", "1", "--output", str(run)] + TINY_GRU + SMALL) == 2
    assert "--overwrite" in one_error_line(capsys)
    # --overwrite replaces the run whole: a stale file of the earlier run does not survive.
    other = tmp_path / "other"
    other.mkdir()
    (other / "titles.json").write_text('{"1": "Stale title from another dataset"}')
    assert cli.main(["train", "--epochs", "1", "--output", str(other)] + TINY_GRU + SMALL) == 2
    capsys.readouterr()
    assert cli.main(["train", "--epochs", "1", "--output", str(other), "--overwrite"]
                    + TINY_GRU + SMALL) == 0
    titles = json.loads((other / "titles.json").read_text())
    assert titles["1"] == "Toy Story (1995)"


def test_export_hint_and_recommend_arguments(finished_run, tmp_path, capsys):
    run, export_dir = finished_run
    assert cli.main(["export", "--run-dir", str(run), "--export-dir", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert f'-v "{tmp_path / "e"}:/models/gru"' in out and "$PWD" not in out
    assert "xla" not in out
    assert cli.main(["export", "--run-dir", str(run), "--export-dir", str(tmp_path / "x"),
                     "--jit-compile"]) == 0
    assert "tensorflow/serving --xla_cpu_compilation_enabled=true" in capsys.readouterr().out
    assert Recommender(tmp_path / "x").model_card["serving"]["jit_compile"] is True
    for k in ("0", "-2", "6"):
        assert cli.main(["recommend", "--model-dir", str(export_dir), "--history", "1,50",
                         "-k", k]) == 2
        assert "-k must be" in one_error_line(capsys)
    histories = tmp_path / "histories.txt"
    histories.write_text('["1", "50"]\n1\t50\n')
    assert cli.main(["recommend", "--model-dir", str(export_dir), "--history-file",
                     str(histories), "-k", "3"]) == 0
    blocks = capsys.readouterr().out.split("history: ")[1:]
    assert len(blocks) == 2 and blocks[0] == blocks[1]  # the same history, two spellings


def test_load_run_gives_back_the_model_and_the_data_it_was_evaluated_on(finished_run,
                                                                          tmp_path):
    import shutil

    import keras_seqrec as ks

    run = ks.load_run(str(finished_run[0]))
    assert run.name == "gru" and run.titles["1"] == "Toy Story (1995)"
    assert run.data.vocabulary == run.vocabulary and len(run.item_counts) == run.vocabulary.size
    # The same data and split: the run's own stored test metrics come out again.
    stored = run.info["metrics"]["gru"]["test"]
    again = ks.evaluate_recommender(run.model, run.data, "test", cutoffs=(10,),
                                    exclude_seen=run.info["protocol"]["exclude_seen"])
    assert again["ndcg@10"] == pytest.approx(stored["ndcg@10"], abs=1e-6)
    assert again["examples"] == stored["examples"]
    # A vocabulary that no longer matches the data is refused, not silently used.
    moved = tmp_path / "run"
    shutil.copytree(finished_run[0], moved)
    vocabulary = json.loads((moved / "vocabulary.json").read_text())
    vocabulary["ids"] = vocabulary["ids"][:-1]  # an item fewer
    (moved / "vocabulary.json").write_text(json.dumps(vocabulary))
    with pytest.raises(ValueError, match="no longer matches the model's vocabulary"):
        ks.load_run(str(moved)).data
    with pytest.raises(FileNotFoundError, match="holds no run.json"):
        ks.load_run(str(tmp_path))
    (moved / "model.keras").unlink()
    with pytest.raises(FileNotFoundError, match="lacks model.keras"):
        ks.load_run(str(moved))


def test_a_run_reads_its_data_back_from_any_working_directory(tmp_path, monkeypatch):
    import pandas as pd

    import keras_seqrec as ks

    rng = np.random.default_rng(0)
    pd.DataFrame([(u, int(i), t) for u in range(40) for t, i in
                  enumerate(rng.integers(1, 30, 10))],
                 columns=["user", "item", "timestamp"]).to_csv(tmp_path / "log.csv", index=False)
    monkeypatch.chdir(tmp_path)  # trained from a relative path ...
    assert cli.main(["train", "--dataset", "log.csv", "--epochs", "1", "--output", "run",
                     "--min-item-interactions", "1", "--max-len", "10", "--verbose", "0"]
                    + TINY_GRU[2:]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["dataset"]["source"] == \
        str(tmp_path / "log.csv")
    elsewhere = tmp_path / "notebooks"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # ... read back from another folder
    assert len(ks.load_run("../run").data.test) == 40


def test_no_traceback_for_a_run_folder_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["export", "--run-dir", str(tmp_path)]) == 2
    assert "holds no run.json" in one_error_line(capsys)


KILLED_TRAIN = """
import sys
from keras_seqrec import cli, training
from keras_seqrec.testing import SigkillAt

plain = training.fit_recommender


def killing(*args, **kwargs):  # a kill -9 in epoch 2 of 3
    kwargs["callbacks"] = [*kwargs.get("callbacks", ()), SigkillAt(epoch=1, batch=3)]
    return plain(*args, **kwargs)


if sys.argv[1] == "kill":
    training.fit_recommender = killing
sys.exit(cli.main(sys.argv[2:]))
"""


def test_kill_9_then_the_same_command_resumes_to_the_same_result(tmp_path, capsys):
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(KILLED_TRAIN)
    command = ["train", "--model", "gru_attention", "--epochs", "3", "--embedding-dim", "8",
               "--hidden-dim", "8", "--attention-units", "4", "--exclude-seen"] + SMALL

    def start(mode, out):
        return subprocess.Popen([sys.executable, str(script), mode, *command, "--output",
                                 str(tmp_path / out)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    whole, killed = start("plain", "whole"), start("kill", "killed")
    errors = [p.communicate(timeout=300)[1] for p in (whole, killed)]
    assert whole.returncode == 0, errors[0][-2000:]
    assert killed.returncode == -9, errors[1][-2000:]
    assert os.listdir(tmp_path / "killed") == ["checkpoints"]
    # A different command into the killed run's folder is refused, and the state survives.
    capsys.readouterr()
    other = command[:]
    other[other.index("--hidden-dim") + 1] = "16"
    assert cli.main(other + ["--output", str(tmp_path / "killed")]) == 2
    assert "different architecture" in one_error_line(capsys)
    resumed = start("plain", "killed")
    error = resumed.communicate(timeout=300)[1]
    assert resumed.returncode == 0, error[-2000:]
    a = json.loads((tmp_path / "whole" / "run.json").read_text())
    b = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert b["training"]["epochs_run"] == 3
    assert a["metrics"] == b["metrics"]
    assert not (tmp_path / "killed" / "checkpoints").exists()


REPLAY_SMALL = ["--model", "gru", "--embedding-dim", "8", "--hidden-dim", "8", "--max-len", "20",
         "--min-item-interactions", "20", "--verbose", "0"]


def _run_json(folder):
    with open(folder / "run.json") as f:
        return json.load(f)


def test_config_replays_a_train_run_exactly_and_flags_beside_it_win(tmp_path, capsys):
    # Settings away from every default, so a replay that dropped one would not match.
    first = tmp_path / "first"
    assert cli.main(["train", *REPLAY_SMALL, "--epochs", "2", "--batch-size", "32",
                     "--learning-rate", "3e-3", "--weight-decay", "1e-3", "--adam-beta2", "0.98",
                     "--lr-schedule", "plateau", "--plateau-patience", "1", "--patience", "3",
                     "--seed", "5", "--exclude-seen", "--output", str(first)]) == 0
    record = _run_json(first)
    assert record["training"]["weight_decay"] == 1e-3 and record["training"]["adam_beta_2"] == 0.98
    replay = tmp_path / "replay"
    assert cli.main(["train", "--config", str(first / "run.json"), "--output", str(replay)]) == 0
    again = _run_json(replay)
    assert again["metrics"] == record["metrics"]  # every metric, to the last digit
    for key in ("model", "hyperparameters", "protocol"):
        assert again[key] == record[key]
    assert {k: v for k, v in again["training"].items() if "seconds" not in k} == {
        k: v for k, v in record["training"].items() if "seconds" not in k}
    shorter = tmp_path / "shorter"
    assert cli.main(["train", "--config", str(first / "run.json"), "--epochs", "1",
                     "--output", str(shorter)]) == 0
    assert _run_json(shorter)["training"]["epochs_run"] == 1
    capsys.readouterr()


def test_config_replays_a_benchmark_result(bench_run, tmp_path, monkeypatch, capsys):
    import keras_seqrec as ks

    bench = bench_run
    monkeypatch.setitem(bench.DATASETS, "ml-latest-small",
                        dict(bench.DATASETS["ml-latest-small"], max_len=20,
                             min_item_interactions=20))
    data = ks.prepare(bench.load("ml-latest-small", None), **bench.DATASETS["ml-latest-small"])
    training = dict(epochs=2, batch_size=64, learning_rate=5e-3, early_stopping_patience=8,
                    adam_beta_2=0.98, learning_rate_schedule="plateau", plateau_patience=1)
    result = bench.run_one("ml-latest-small", "gru", data, True, 3, "test", training,
                           {"embedding_dim": 8, "hidden_dim": 8})
    path = tmp_path / "ml-latest-small" / "gru_exclude_seen.json"
    assert path.exists()
    out = tmp_path / "replay"
    assert cli.main(["train", "--config", str(path), "--verbose", "0",
                     "--output", str(out)]) == 0
    replayed = _run_json(out)["metrics"]["gru"]
    for split in ("validation", "test"):
        for key in ("hr@10", "ndcg@10", "mrr@10"):
            assert replayed[split][key] == pytest.approx(result["metrics"][split][key],
                                                         abs=1e-12), (split, key)
    capsys.readouterr()


def test_config_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    assert cli.main(["train", "--config", str(missing)]) == 2
    assert "cannot be read" in one_error_line(capsys)
    baseline = tmp_path / "pop.json"
    baseline.write_text(json.dumps({"dataset": "ml-1m", "model": "pop", "exclude_seen": False,
                                    "config": {"prepare": {"max_len": 200}, "training": None}}))
    assert cli.main(["train", "--config", str(baseline)]) == 2
    assert "no training to replay" in one_error_line(capsys)
    beauty = tmp_path / "sasrec.json"
    beauty.write_text(json.dumps({
        "dataset": "amazon-beauty", "model": "sasrec", "exclude_seen": False,
        "config": {"prepare": {"max_len": 50}, "hyperparameters": {}, "seed": 0,
                   "training": {"epochs": 1, "batch_size": 64, "learning_rate": 1e-3,
                                "early_stopping_patience": 2}}}))
    assert cli.main(["train", "--config", str(beauty), "--output", str(tmp_path / "o")]) == 2
    assert "pass --dataset with the path" in one_error_line(capsys)
    assert cli.main(["train", "--weight-decay", "-1", "--output", str(tmp_path / "w")]) == 2
    assert "--weight-decay must be" in one_error_line(capsys)


def test_train_and_evaluate_with_item_features_on_the_cold_start_split(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--epochs", "1", "--output", str(run), "--item-features",
                     "movielens", "--cold-items", "0.1", "--exclude-seen",
                     "--new-item-share", "0.3"] + TINY_GRU + SMALL) == 0
    out = capsys.readouterr().out
    table = out.split("Full-ranking", 1)[1]
    for label in ("test (warm)", "test (cold)"):
        assert any(label in line and line.startswith(name) for line in table.splitlines()
                   for name in ("pop", "markov", "content", "gru")), label
    saved = _run_json(run)
    assert saved["item_features"]["source"] == "movielens"
    assert saved["item_features"]["genres"]["kind"] == "tokens"
    assert saved["dataset"]["settings"]["cold_items"] == 0.1
    assert saved["training"]["new_item_share"] == 0.3
    assert cli._config_defaults(str(run / "run.json"))["new_item_share"] == 0.3  # replayed
    # Nothing trained can know a new item: pop and markov never hit a cold target.
    assert saved["metrics"]["pop"]["test_cold"]["hr@10"] == 0.0
    assert saved["metrics"]["markov"]["test_cold"]["hr@10"] == 0.0
    assert saved["metrics"]["content"]["test_cold"]["examples"] > 0
    model = keras.saving.load_model(run / "model.keras")
    assert type(model.get_layer("item_embedding")).__name__ == "FeatureItemEmbedding"
    assert cli.main(["evaluate", "--run-dir", str(run), "-k", "10", "--exclude-seen"]) == 0
    assert "test (cold)" in capsys.readouterr().out
    assert cli.main(["train", "--epochs", "1", "--output", str(tmp_path / "x"),
                     "--item-features", str(tmp_path / "none.csv")] + TINY_GRU + SMALL) == 2
    assert "neither 'movielens' nor an existing file" in capsys.readouterr().err
    assert cli.main(["train", "--epochs", "1", "--output", str(tmp_path / "y"),
                     "--item-features", "movielens", "--new-item-share", "0.3"]
                    + TINY_GRU + SMALL) == 2
    assert "it needs --cold-items and --item-features" in one_error_line(capsys)
    assert cli.main(["train", "--output", str(tmp_path / "z"), "--new-item-share", "1"]) == 2
    assert "--new-item-share must be in (0, 1)" in one_error_line(capsys)


def test_export_new_items_serves_them_from_a_feature_aware_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--epochs", "1", "--output", str(run), "--item-features",
                     "movielens"] + TINY_GRU + SMALL) == 0
    new = tmp_path / "new.csv"
    new.write_text("item,genres,title\n999001,Comedy|Drama,A New Film (2027)\n")
    export_dir = tmp_path / "served"
    assert cli.main(["export", "--run-dir", str(run), "--export-dir", str(export_dir)]) == 0
    assert cli.main(["export", "--run-dir", str(run), "--export-dir", str(export_dir),
                     "--new-items", str(new)]) == 0
    out = capsys.readouterr().out
    assert "Added 1 new items" in out
    # Calibrated as fit_recommender does on a cold split: on the run's users' histories.
    assert "calibrated on 607 users' histories to draw 0.10% of the probability" in out
    import tensorflow as tf

    versions = {v: json.loads((export_dir / v / "assets.extra" / "vocabulary.json").read_text())
                for v in ("1", "2")}
    assert versions["2"]["ids"] == versions["1"]["ids"] + [999001]  # no index moves
    from keras_seqrec.data.features import ItemFeatures

    carried = ItemFeatures.load(export_dir / "2" / "assets.extra" / "item_features.npz")
    assert carried.item_tokens("genres", len(versions["2"]["ids"])) == ["comedy", "drama"]
    scores = tf.saved_model.load(str(export_dir / "2")).signatures["score_all"](
        history=tf.constant([["1"]]))["scores"].numpy()
    assert scores.shape[1] == len(versions["2"]["ids"]) and np.isfinite(scores[0, -1])
    assert cli.main(["export", "--run-dir", str(run), "--export-dir", str(export_dir),
                     "--new-items", str(new)]) == 0  # still new: the run never changes
    plain = tmp_path / "plain"
    assert cli.main(["train", "--epochs", "1", "--output", str(plain)] + TINY_GRU + SMALL) == 0
    assert cli.main(["export", "--run-dir", str(plain), "--new-items", str(new)]) == 2
    assert "needs a run trained with --item-features" in capsys.readouterr().err
