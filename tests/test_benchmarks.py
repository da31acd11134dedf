"""The benchmark tables: chosen on validation, uncertainty, paired comparison with a baseline."""

import json

import numpy as np


def _result(folder, model, val, test, ranks=None, hyperparameters=None):
    name = model.replace(" (", "_").rstrip(")")
    n = 400
    split = lambda m: {"hr@10": m, "ndcg@10": m, "mrr@10": m, "coverage@10": 0.5,  # noqa: E731
                       "examples": n}
    row = {"dataset": "toy", "model": model, "exclude_seen": True,
           "metrics": {"validation": split(val), "test": split(test)}, "epochs": 3,
           "seconds_per_epoch": 1.0, "machine": "m", "command": f"run {name}",
           "config": {"hyperparameters": hyperparameters or {}}}
    if ranks is not None:
        row["ranks_file"] = f"{name}.ranks.npz"
        np.savez_compressed(folder / row["ranks_file"], validation=ranks, test=ranks)
    (folder / f"{name}.json").write_text(json.dumps(row))


def test_tables_show_the_validation_choice_with_errors_and_a_paired_difference(bench_run,
                                                                               tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    rng = np.random.default_rng(0)
    markov_ranks = rng.integers(0, 40, 400)
    better = np.where(rng.random(400) < 0.3, 0, markov_ranks)  # the same users, some fixed
    _result(folder, "markov", 0.05, 0.05, markov_ranks)
    _result(folder, "pop", 0.01, 0.02, rng.integers(0, 400, 400))
    _result(folder, "gru (wide)", 0.09, 0.04, better)  # best on validation, worse on test
    _result(folder, "gru (narrow)", 0.07, 0.08)  # best on test: must not be chosen
    # The best on validation, but gru_attention without its attention: an ablation arm.
    _result(folder, "gru_attention (no_attention)", 0.2, 0.2,
            hyperparameters={"use_attention": False})
    _result(folder, "gru_attention (whole)", 0.06, 0.06)
    (tmp_path / "README.md").write_text("intro\n<!-- results:begin -->\nold\n"
                                        "<!-- results:end -->\nrest\n")
    bench_run.render()
    readme = (tmp_path / "README.md").read_text()
    assert "gru (wide)" in readme and "gru (narrow)" not in readme
    assert "gru_attention (whole)" in readme and "no_attention" not in readme
    assert readme.startswith("intro\n") and readme.endswith("rest\n")
    from keras_seqrec.evaluation import paired_comparison

    expected = paired_comparison(better, markov_ranks)
    assert f"{expected['difference']:+.4f} ± {expected['se']:.4f}" in readme
    full = (tmp_path / "RESULTS.md").read_text()
    narrow = next(line for line in full.splitlines() if "gru (narrow)" in line)
    wide = next(line for line in full.splitlines() if "gru (wide)" in line)
    assert "| yes |" in wide.replace("| toy | yes |", "") and "| yes |" not in narrow.replace(
        "| toy | yes |", "")
    # No stored per-user values: HR gets its exact binomial error, NDCG an upper bound (*).
    se = (0.08 * 0.92 / 399) ** 0.5
    assert f"0.0800 ± {se:.4f} |" in narrow and f"0.0800 ± {se:.4f}* |" in narrow
    assert "n/a (older run)" in narrow
    assert (tmp_path / "results.png").stat().st_size > 1000


def test_committed_ablation_table_is_the_one_its_script_renders_from_the_committed_runs():
    import importlib.util
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location("bench_ablation", root / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.render()
    assert "not run yet" not in text  # every arm of the grid has its committed result
    assert (root / "ABLATION.md").read_text() == text
    # Every grid arm but the reference carries its paired difference to the reference.
    arms = {arm: line.split(" | ")[3] for _, arm, _ in module.GRID
            for line in text.splitlines() if f"| {arm} |" in line}
    assert len(arms) == len(module.GRID)
    assert [arm for arm, paired in arms.items() if "±" not in paired] == [module.GRID[0][1]]


def test_cold_start_runs_report_warm_and_cold_targets_apart_and_stay_out_of_the_readme(
        bench_run, tmp_path):
    (tmp_path / "README.md").write_text("<!-- results:begin -->\n<!-- results:end -->\n")
    bench_run.main(["--dataset", "ml-latest-small", "--models", "pop", "markov", "content",
                    "--exclude-seen", "--item-features", "--cold-items", "0.1",
                    "--tag", "cold10"])
    rows = {m: json.loads((tmp_path / "ml-latest-small" / f"{m}_exclude_seen_cold10.json")
                          .read_text()) for m in ("pop", "markov", "content")}
    for row in rows.values():
        m = row["metrics"]
        assert m["test_warm"]["examples"] + m["test_cold"]["examples"] == m["test"]["examples"]
        assert m["test_cold"]["examples"] == row["cold_items"]["test_cold_targets"] > 0
        assert row["config"]["prepare"]["cold_items"] == 0.1
    # Nothing fitted on training can recommend a new item; item features can.
    assert rows["pop"]["metrics"]["test_cold"]["hr@10"] == 0.0
    assert rows["markov"]["metrics"]["test_cold"]["hr@10"] == 0.0
    assert rows["content"]["metrics"]["test_cold"]["hr@10"] > 0.0
    results = (tmp_path / "RESULTS.md").read_text()
    section = results.split("## Cold-start split: new items", 1)[1]
    assert "content (cold10)" in section and "markov (cold10)" in section
    assert "<!-- results:begin -->" in (tmp_path / "README.md").read_text()
    assert "cold10" not in (tmp_path / "README.md").read_text()


def _bench_module(name):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_update_benchmark_tests_on_the_first_interaction_after_t2_with_all_before_as_input():
    import pandas as pd

    import keras_seqrec as ks
    from keras_seqrec.datasets import from_dataframe

    bench = _bench_module("update")
    log = from_dataframe(pd.DataFrame({
        "user": [1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 2, 3],
        "item": [7, 8, 9, 7, 9, 8, 9, 7, 8, 9, 5, 7],
        "timestamp": [1, 2, 3, 4, 1, 2, 3, 4, 9, 10, 9, 9]}))
    old, new, after = bench._split_log(log, 3, 5)
    assert len(old.frame) == 4 and len(new.frame) == 4 and len(after) == 4
    data = ks.prepare(log.__class__(pd.concat([old.frame, new.frame]), name="x"), max_len=5)
    split, unknown = bench._future_split(data, after, None)
    # User 1's first interaction after t2 is item 8 (not 9), input: all four before it;
    # user 2's is item 5, unseen before t2, so no model can rank it; user 3 is new.
    assert split.users.tolist() == [1] and unknown == 1
    assert data.vocabulary.to_ids(split.targets).tolist() == [8]
    assert data.vocabulary.to_ids(split.history[0]).tolist() == [7, 8, 9, 7]


def test_the_no_update_arm_never_sees_or_recommends_items_it_was_not_trained_on():
    import keras
    import numpy as np

    import keras_seqrec as ks
    from keras_seqrec.models import last_position_model

    bench = _bench_module("update")
    keras.utils.set_random_seed(0)
    model = ks.build_model("gru", 5, 4, embedding_dim=4, hidden_dim=4)
    old = bench.OldCatalogue(model, num_items=5, size=8)
    scores = old.score(np.array([[1, 6, 2, 7], [0, 0, 3, 4]]))
    assert scores.shape == (2, 8) and np.isneginf(scores[:, 6:]).all()
    expected = last_position_model(model).predict_on_batch(np.array([[0, 0, 1, 2],
                                                                      [0, 0, 3, 4]]))
    np.testing.assert_allclose(scores[:, :6], expected, atol=1e-6)


def test_update_table_is_current_with_its_json_files(tmp_path, monkeypatch):
    import pathlib

    bench = _bench_module("update")
    committed = pathlib.Path(bench.HERE) / "UPDATE.md"
    monkeypatch.setattr(bench, "HERE", str(tmp_path))
    assert bench.render() == committed.read_text(), (
        "benchmarks/UPDATE.md is stale: run python benchmarks/update.py --render-only")


def test_new_items_table_is_current_and_its_rules_keep_their_promises():
    import json
    import pathlib

    bench = _bench_module("new_items")
    committed = pathlib.Path(bench.HERE) / "NEW_ITEMS.md"
    assert bench.render() + "\n" == committed.read_text(), (
        "benchmarks/NEW_ITEMS.md is stale: run python benchmarks/new_items.py --render-only")
    files = sorted(pathlib.Path(bench.OUT).glob("*.json"))
    assert files
    for path in files:
        result = json.loads(path.read_text())
        rows = {row["row"]: row for row in result["named"]}
        # The warm budgets hold on validation, the split they were chosen on.
        assert rows["budget"]["validation"]["warm"][0] >= result["warm_budget"]["limit"]
        if "reference" in result:
            row = rows["id-only budget"]
            assert row["validation"]["warm"][0] >= result["reference"]["limit"]
            # A lower bar on warm validation allows a larger offset, never a smaller one.
            looser = result["reference"]["limit"] <= result["warm_budget"]["limit"]
            assert (row["offset"] >= rows["budget"]["offset"]) == looser
            # Every named row carries its paired test differences over the same users.
            for named in rows.values():
                paired = named["test_paired"]
                assert paired["cold_vs_content"]["examples"] == result["content"]["test"][
                    "cold"][2]
                assert paired["warm_vs_reference"]["examples"] == result["content"]["test"][
                    "warm"][2]


def test_holdout_shift_moves_the_split_back_by_whole_items_and_its_table_is_current():
    import pathlib

    import pandas as pd

    import keras_seqrec as ks
    from keras_seqrec.datasets import from_dataframe

    bench = _bench_module("holdout_shift")
    log = from_dataframe(pd.DataFrame({
        "user": [1] * 6 + [2] * 5,
        "item": [10, 11, 12, 13, 14, 15, 20, 21, 22, 23, 24],
        "timestamp": [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5]}))
    data = ks.prepare(log, max_len=4)
    for k in (0, 1, 2):
        moved = bench.shifted(data, k)
        raw = lambda d, split: d.vocabulary.to_ids(getattr(d, split).targets).tolist()  # noqa
        # K items back: the test target is the item K places before the last one, and the
        # history is everything before it.
        assert raw(moved, "test") == [15 - k, 24 - k]
        assert raw(moved, "validation") == [14 - k, 23 - k]
        assert moved.test.history.tolist()[0] == list(
            moved.vocabulary.lookup(list(range(10, 15 - k))))
    committed = pathlib.Path(bench.HERE) / "HOLDOUT_SHIFT.md"
    assert bench.render() + "\n" == committed.read_text(), (
        "benchmarks/HOLDOUT_SHIFT.md is stale: run python benchmarks/holdout_shift.py "
        "--render-only")
