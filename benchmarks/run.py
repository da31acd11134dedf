"""Accuracy benchmark: every zoo model and the baselines, full-ranking leave-one-out.

Writes one JSON per (dataset, model) under benchmarks/results/ and renders benchmarks/RESULTS.md
and the README's results table from all JSON files there (never typed by hand).

    python benchmarks/run.py --dataset ml-latest-small              # every model
    python benchmarks/run.py --dataset ml-latest-small --models gru  # some
    python benchmarks/run.py --render-only                           # tables from the JSONs
"""

from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import platform
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared", "data")

# Preparation per dataset: MovieLens keeps ratings >= 3 and 5-cores; benchmark files as given.
DATASETS = {
    "ml-latest-small": dict(min_rating=3.0, min_user_interactions=5, min_item_interactions=5,
                            max_len=50),
    "ml-100k": dict(min_rating=3.0, min_user_interactions=5, min_item_interactions=5,
                    max_len=50),
    "amazon-beauty": dict(max_len=50),
    "ml-1m": dict(max_len=200),
}
VERBOSE = 0
PREPARE_EXTRA = {}  # settings beyond DATASETS given on the command line (e.g. --tie-break)
COMMIT = None  # the code the runs used: read when the script starts
TRAINING = dict(epochs=40, batch_size=64, learning_rate=5e-3, early_stopping_patience=8)


def load(name, data_dir):
    from keras_seqrec import datasets

    if name == "amazon-beauty":
        return datasets.read_sequences(os.path.join(data_dir or SHARED, "amazon-beauty",
                                                    "Beauty.txt"))
    if name == "ml-1m":  # SASRec's preprocessed file, the standard sequential benchmark
        return datasets.read_sequences(os.path.join(data_dir or SHARED, "ml-1m",
                                                    "ml-1m.txt.gz"))
    if name == "ml-latest-small":
        return datasets.load(name, data_dir=data_dir)
    return datasets.load(name, data_dir=os.path.join(data_dir or SHARED, name), download=False)


def item_features(name, data, data_dir):
    """The dataset's own item features: MovieLens genres and title words (ML-1M through
    SASRec's id map to `movies.dat`), Amazon Beauty's brand and categories
    (`Beauty_item2attributes.json`)."""
    from keras_seqrec.data import features
    from keras_seqrec.datasets import movielens

    folder = os.path.join(data_dir or SHARED, name)
    if name == "amazon-beauty":
        return features.read_item2attributes(
            os.path.join(folder, "Beauty_item2attributes.json"), data.vocabulary)
    if name == "ml-1m":
        movies = movielens.read_movies_dat(os.path.join(folder, "movies.dat"))
        id_map = features.read_id_map(os.path.join(folder, "sas_to_original_items.txt"))
        return features.movielens_features(movies, data.vocabulary, id_map=id_map)
    return features.movielens_features(data.items, data.vocabulary)


def _commit():
    """The checked-out commit (with '-dirty' when the tree has changes), or None."""
    import subprocess

    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _param(text: str):
    """`--param KEY=VALUE`, parsed as the CLI does; imported on use so that `--render-only`
    (and start-up) does not load Keras."""
    from keras_seqrec.cli import parse_param

    return parse_param(text)


def run_one(dataset, model_name, data, exclude_seen, seed, command, training, params, tag="",
            item2vec=False, features=None):
    import keras

    import keras_seqrec as ks
    from keras_seqrec.baselines import BASELINES, FEATURE_BASELINES
    from keras_seqrec.evaluation import evaluate_recommender
    from keras_seqrec.training import build_and_fit

    start = time.perf_counter()
    history = None
    if model_name in BASELINES:
        model = BASELINES[model_name](data)
    elif model_name in FEATURE_BASELINES:
        if features is None:
            raise SystemExit(f"The {model_name} baseline needs --item-features.")
        model = FEATURE_BASELINES[model_name](data, features)
    else:
        fit_args = dict(training)
        if "loss" in fit_args:
            fit_args["loss"] = ks.losses.get_loss(
                fit_args.pop("loss"), num_negatives=fit_args.pop("num_negatives", None))
        model, history = build_and_fit(model_name, data, params, item2vec=item2vec,
                                       item_features=features, seed=seed, verbose=VERBOSE,
                                       exclude_seen=exclude_seen, **fit_args)
    seconds = time.perf_counter() - start
    metrics, ranks = {}, {}
    for split in ("validation", "test"):
        metrics[split], ranks[split] = evaluate_recommender(
            model, data, split, cutoffs=(5, 10, 20), exclude_seen=exclude_seen,
            standard_errors=True, return_ranks=True)
        if len(data.cold_items):  # the cold-start protocol: warm and cold targets apart
            for targets in ("warm", "cold"):
                metrics[f"{split}_{targets}"] = evaluate_recommender(
                    model, data, split, cutoffs=(5, 10, 20), exclude_seen=exclude_seen,
                    standard_errors=True, targets=targets)
    # The same model under the other seen-items setting, for comparison with papers either way.
    alt = {
        split: evaluate_recommender(model, data, split, cutoffs=(10,),
                                    exclude_seen=not exclude_seen)
        for split in ("validation", "test")
    }
    result = {
        "dataset": dataset,
        "model": model_name + (f" ({tag})" if tag else ""),
        "exclude_seen": exclude_seen,
        "metrics": metrics,
        "metrics_with_exclude_seen_" + str(not exclude_seen).lower(): alt,
        "epochs": len(history.history["loss"]) if history else 0,
        "best_epoch": history.best_epoch + 1 if history else 0,
        "stopped_by": history.stopped_by if history else None,
        "validation_ndcg@10_per_epoch": (
            [round(v, 5) for v in history.history["val_ndcg@10"]] if history else None),
        "seconds_per_epoch": round(history.seconds_per_epoch, 2) if history else 0.0,
        "total_seconds": round(seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "config": {"prepare": dict(DATASETS[dataset], **PREPARE_EXTRA),
                   "training": dict(training, loss_weighting="per position") if history else None,
                   "hyperparameters": {k: v for k, v in params.items()} if history else None,
                   # Every builder argument, defaults included: defaults change between versions.
                   "all_hyperparameters": {
                       k: v for k, v in {**ks.models.hyperparameters(model_name), **params}.items()
                       if k not in ("item_embeddings", "item_features")} if history else None,
                   "item_features": (features.describe() if features is not None
                                     and model_name not in BASELINES else None),
                   "seed": seed},
        "data": data.describe()["filtered"],
        **({"cold_items": data.describe()["cold_items"]} if len(data.cold_items) else {}),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                   f"keras {keras.__version__} ({keras.backend.backend()})",
        "command": command,
        "commit": COMMIT,
    }
    os.makedirs(os.path.join(RESULTS, dataset), exist_ok=True)
    suffix = ("_exclude_seen" if exclude_seen else "") + (f"_{tag}" if tag else "")
    # Every user's rank, for paired comparisons between any two results (`render`).
    import numpy as np

    result["ranks_file"] = f"{model_name}{suffix}.ranks.npz"
    if len(data.cold_items):  # which examples have a cold target, for paired cold rows
        ranks.update({f"{split}_cold_target": data.cold_mask()[data.split(split).targets]
                      for split in ("validation", "test")})
    np.savez_compressed(os.path.join(RESULTS, dataset, result["ranks_file"]),
                        **{k: v.astype(np.int32) for k, v in ranks.items()})
    with open(os.path.join(RESULTS, dataset, f"{model_name}{suffix}.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


# Published full-ranking NDCG@10 of the same model on the same benchmark file (seen items
# excluded), cited in the README's prose.
PUBLISHED = {
    ("amazon-beauty", "sasrec"): "0.0531 (SASRec, sampled softmax; eSASRec paper)",
    ("amazon-beauty", "gru4rec"): "0.0137 (third-party GRU4Rec)",
    ("ml-1m", "sasrec"): "0.1821 (SASRec, full CE; Klenitskiy & Vasilev 2023)",
}
BASELINE_NAMES = ("pop", "markov")


def _load_rows():
    rows = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "*", "*.json"))):
        with open(path) as f:
            result = json.load(f)
        if "dataset" in result and "exclude_seen" in result:  # not results/speed/
            result["_dir"] = os.path.dirname(path)
            rows.append(result)
    baselines_first = {"pop": 0, "markov": 1}
    rows.sort(key=lambda r: (r["dataset"], r["exclude_seen"],
                             baselines_first.get(r["model"], 2), r["model"]))
    return rows


def _family(row) -> str:
    return row["model"].split(" (", 1)[0]


def _se(split: dict, metric: str):
    """`(se, exact)`: the stored standard error over users, or for a result stored before
    they were, HR's exact binomial one and for NDCG/MRR the upper bound sqrt(m(1-m)/(n-1))
    (a per-user value lies in [0, 1] and never exceeds the hit)."""
    if f"{metric}_se" in split:
        return split[f"{metric}_se"], True
    m, n = split[metric], split.get("examples")
    if not n or n < 2:
        return None, False
    return (m * (1 - m) / (n - 1)) ** 0.5, metric.startswith("hr@")


def _with_se(split: dict, metric: str) -> str:
    se, exact = _se(split, metric)
    if se is None:
        return f"{split[metric]:.4f}"
    return f"{split[metric]:.4f} ± {se:.4f}{'' if exact else '*'}"


def _ranks(row):
    name = row.get("ranks_file")
    path = os.path.join(row["_dir"], name) if name else None
    if not path or not os.path.exists(path):
        return None
    return _read_ranks(path)


@functools.lru_cache(maxsize=None)
def _read_ranks(path):
    # Cached: a baseline's ranks are compared with every row of its dataset, in two tables.
    import numpy as np

    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _choices(rows):
    """Per (dataset, seen excluded, model): the row with the best validation NDCG@10, among
    the runs on the standard preparation (not the tie-break study nor the cold-start split)
    that keep the model whole (not an ablation arm); and the best baseline of each
    preparation."""
    chosen, best_baseline = {}, {}
    for r in rows:
        key = (r["dataset"], r["exclude_seen"], _family(r))
        val = r["metrics"]["validation"]["ndcg@10"]
        if _family(r) in BASELINE_NAMES:  # one best baseline per preparation
            group = _group(r)
            if group not in best_baseline or val > best_baseline[group]["metrics"][
                    "validation"]["ndcg@10"]:
                best_baseline[group] = r
        if TIE_TAG in r["model"] or _cold_share(r) or _ablated(r):
            continue
        if key not in chosen or val > chosen[key]["metrics"]["validation"]["ndcg@10"]:
            chosen[key] = r
    return chosen, best_baseline


def _ablated(row) -> bool:
    """An ablation arm that removes what makes the model itself (gru_attention without its
    attention): listed in the full table, never the model's chosen row."""
    params = ((row.get("config") or {}).get("hyperparameters") or {})
    return str(params.get("use_attention", True)).lower() == "false"


def _cold_share(row) -> float:
    """The share of items the row's preparation made new (0 outside the cold-start split)."""
    return float(((row.get("config") or {}).get("prepare") or {}).get("cold_items", 0.0))


def _group(row):
    """Rows whose users, targets and training data are the same: dataset, seen items,
    tie-break order, cold-start share."""
    return row["dataset"], row["exclude_seen"], TIE_TAG in row["model"], _cold_share(row)


def _versus(row, baseline) -> str:
    """Test NDCG@10 minus the best baseline's, paired over the same users: `+d ± se`."""
    if baseline is None or row is baseline:
        return ""
    from keras_seqrec.evaluation import paired_cell

    mine, theirs = _ranks(row), _ranks(baseline)
    if mine is None or theirs is None or len(mine["test"]) != len(theirs["test"]):
        return "n/a (older run)"
    return paired_cell(mine["test"], theirs["test"])


def _se_note(table: str) -> str:
    """What ± and "vs best baseline" mean, and the marks of older runs where `table` has any."""
    older = "n/a (older run)" in table
    return ("± is the standard error over test users"
            + ("; `*` marks an upper bound, sqrt(m(1-m)/(n-1)), for NDCG/MRR of runs made "
               "before per-user values were stored" if "*" in table else "")
            + ". \"vs best baseline\" is the test NDCG@10 difference to the baseline chosen on "
            "validation, paired over the same users (mean per-user difference ± its standard "
            "error; \"noise\" when under two of them)"
            + ("; it needs both runs' per-user ranks, which runs before this column existed "
               "did not store" if older else "") + ".")


def render():
    rows = _load_rows()
    chosen, best_baseline = _choices(rows)
    chosen_ids = {id(r) for r in chosen.values()}
    lines = [
        "| dataset | seen excluded | model | chosen | test HR@10 | test NDCG@10 | test MRR@10 | "
        "test Cov@10 | val NDCG@10 | vs best baseline | epochs | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    commands = []
    for r in rows:
        t, v = r["metrics"]["test"], r["metrics"]["validation"]
        lines.append(
            f"| {r['dataset']} | {'yes' if r['exclude_seen'] else 'no'} | {r['model']} | "
            f"{'yes' if id(r) in chosen_ids else ''} | {_with_se(t, 'hr@10')} | "
            f"{_with_se(t, 'ndcg@10')} | {_with_se(t, 'mrr@10')} | {t['coverage@10']:.4f} | "
            f"{v['ndcg@10']:.4f} | "
            f"{_versus(r, best_baseline.get(_group(r)))} | "
            f"{r['epochs']} | {r['seconds_per_epoch']} |"
        )
        if r["command"] not in commands:
            commands.append(r["command"])
    table = "\n".join(lines)
    ties = _tie_break_section(rows) + _cold_start_section(rows, best_baseline)
    machine = rows[0]["machine"] if rows else ""
    text = (
        "# Benchmark results\n\nGenerated by `python benchmarks/run.py` from "
        "`benchmarks/results/*/*.json`; do not edit by hand.\n\nProtocol: leave-one-out by "
        "time, full ranking over every item, pessimistic ties, best epoch chosen on validation "
        f"NDCG@10. Machine: {machine}. \"chosen\": the row of its model with the best "
        f"validation NDCG@10 on that dataset (the README shows those). {_se_note(table)}\n\n"
        f"{table}\n\n{ties}Produced by:\n\n"
        + "\n".join(f"    {c}" for c in commands) + "\n"
    )
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write(text)
    readme_table, readme_commands = _readme_table(rows, chosen, best_baseline)
    _chart(rows, chosen)
    readme = os.path.join(ROOT, "README.md")
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    with open(readme) as f:
        content = f.read()
    if begin in content and end in content:
        head, rest = content.split(begin, 1)
        _, tail = rest.split(end, 1)
        block = (f"{begin}\n{readme_table}\n\n{_se_note(readme_table)} Every other "
                 "configuration tried, "
                 "with the same columns, is in `benchmarks/RESULTS.md`.\n\n"
                 "![Test NDCG@10 of the chosen configurations](benchmarks/results.png)\n\n"
                 "Commands of these rows: "
                 + "; ".join(f"`{c}`" for c in readme_commands) + f"\n{end}")
        with open(readme, "w") as f:
            f.write(head + block + tail)
    print(readme_table)


def _readme_table(rows, chosen, best_baseline):
    lines = [
        "| dataset | model (configuration chosen on validation) | test HR@10 | test NDCG@10 | "
        "vs best baseline | val NDCG@10 | published NDCG@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    commands = []
    for r in rows:
        key = (r["dataset"], r["exclude_seen"], _family(r))
        if chosen.get(key) is not r or not r["exclude_seen"]:
            continue
        t = r["metrics"]["test"]
        base = best_baseline.get(_group(r))
        lines.append(
            f"| {r['dataset']} | {r['model']} | {_with_se(t, 'hr@10')} | "
            f"{_with_se(t, 'ndcg@10')} | {_versus(r, base)} | "
            f"{r['metrics']['validation']['ndcg@10']:.4f} | "
            f"{PUBLISHED.get((r['dataset'], _family(r)), '')} |")
        if r["command"] not in commands:
            commands.append(r["command"])
    return "\n".join(lines), commands


def _chart(rows, chosen):
    """benchmarks/results.png: test NDCG@10 ± SE of each dataset's chosen rows."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: benchmarks/results.png not redrawn.")
        return
    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 4.2),
                             squeeze=False)
    for ax, name in zip(axes[0], datasets):
        picked = [r for r in rows if r["dataset"] == name and r["exclude_seen"]
                  and chosen.get((name, True, _family(r))) is r]
        picked.sort(key=lambda r: r["metrics"]["test"]["ndcg@10"])
        values = [r["metrics"]["test"]["ndcg@10"] for r in picked]
        errors = [_se(r["metrics"]["test"], "ndcg@10")[0] or 0.0 for r in picked]
        colors = ["#999999" if _family(r) in BASELINE_NAMES else
                  ("#d62728" if _family(r) == "gru_attention" else "#1f77b4") for r in picked]
        ax.barh([_family(r) for r in picked], values, xerr=errors, color=colors, capsize=3)
        ax.set_title(name)
        ax.set_xlabel("test NDCG@10 (± SE over users)")
    fig.suptitle("Chosen on validation; grey: baselines, red: the card's gru_attention")
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "results.png"), dpi=110)
    plt.close(fig)


TIE_TAG = "tiebreak_random"


def _paired_on(row, other, subset: str) -> str:
    """Test NDCG@10 of `row` minus `other`'s on the examples with a `subset` target."""
    if other is None or other is row:
        return ""
    from keras_seqrec.evaluation import paired_cell

    mine, theirs = _ranks(row), _ranks(other)
    if mine is None or theirs is None or "test_cold_target" not in mine:
        return "n/a"
    cold = mine["test_cold_target"].astype(bool)
    keep = cold if subset == "cold" else ~cold
    return paired_cell(mine["test"][keep], theirs["test"][keep])


def _cold_start_section(rows, best_baseline) -> str:
    """The cold-start split's rows: warm and cold test targets apart, each paired with the
    best baseline of that split on validation and, on cold targets, with `content`."""
    cold_rows = [r for r in rows if _cold_share(r) and "test_cold" in r["metrics"]]
    if not cold_rows:
        return ""
    content = {_group(r): r for r in cold_rows if _family(r) == "content"}
    lines = []
    for r in cold_rows:
        m, group = r["metrics"], _group(r)
        base = best_baseline.get(group)
        lines.append(
            f"| {r['dataset']} | {_cold_share(r):g} | {r['model']} | "
            f"{_with_se(m['test_warm'], 'ndcg@10')} ({m['test_warm']['examples']}) | "
            f"{_paired_on(r, base, 'warm')} | "
            f"{_with_se(m['test_cold'], 'ndcg@10')} ({m['test_cold']['examples']}) | "
            f"{_paired_on(r, content.get(group), 'cold')} | "
            f"{m['validation']['ndcg@10']:.4f} |")
    return (
        "## Cold-start split: new items\n\n"
        "Prepared with `cold_items=SHARE` (seed 0): that share of the items is new, every "
        "interaction with them is removed from training (models, item2vec, popularity, "
        "Markov counts) and from the training softmax, while they stay in the catalogue, in "
        "evaluation histories and as targets. Test NDCG@10 over the examples whose target is "
        "warm or cold (their number in brackets), ranked over the whole catalogue, seen items "
        "excluded; pairings over the same examples. The best baseline is the one with the "
        "highest validation NDCG@10 on this split. Feature-aware runs made at or after commit 4deceec "
        "(the Amazon Beauty row tagged `calibrated`, the ML-1M rows) give their new items "
        "their share of the probability after every epoch (`catalogue.calibrate_new_items`); "
        "`benchmarks/NEW_ITEMS.md` sweeps that share. The row tagged `share0.159` draws "
        "instead the share NEW_ITEMS.md's `id-only budget` rule chose on validation "
        "(`--new-item-share 0.159`).\n\n"
        "| dataset | cold share | model | test NDCG@10 warm | vs best baseline (warm) | "
        "test NDCG@10 cold | vs content (cold) | val NDCG@10 (all) |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n\n")


def _tie_break_section(rows) -> str:
    """How much each result moves when equal timestamps are ordered at random instead of in
    file order: every `tiebreak_random` row against the row of the same run without the tag."""
    index = {(r["dataset"], r["exclude_seen"], r["model"]): r for r in rows}
    lines = []
    for r in rows:
        if TIE_TAG not in r["model"]:
            continue
        name, tag = r["model"].split(" (", 1)
        rest = [t for t in tag.rstrip(")").split("_") if t not in TIE_TAG.split("_")]
        base = index.get((r["dataset"], r["exclude_seen"],
                          name + (f" ({'_'.join(rest)})" if rest else "")))
        if base is None:
            continue
        t, b = r["metrics"]["test"], base["metrics"]["test"]
        n = t.get("examples")
        se = (f"{(b['hr@10'] * (1 - b['hr@10']) / n) ** 0.5:.4f}" if n else "n/a")
        lines.append(
            f"| {r['dataset']} | {base['model']} | {b['hr@10']:.4f} -> {t['hr@10']:.4f} "
            f"({t['hr@10'] - b['hr@10']:+.4f}) | {se} | {b['ndcg@10']:.4f} -> "
            f"{t['ndcg@10']:.4f} ({t['ndcg@10'] - b['ndcg@10']:+.4f}) | "
            f"{base['metrics']['validation']['ndcg@10']:.4f} -> "
            f"{r['metrics']['validation']['ndcg@10']:.4f} |")
    if not lines:
        return ""
    return (
        "## Ties in time: file order against a seeded random order\n\n"
        "MovieLens stores many ratings of one user in the same second, and leave-one-out then "
        "orders them by file order (for ml-latest-small: by movieId). The rows tagged "
        f"`{TIE_TAG}` were prepared with `tie_break=\"random\"` (seed 0) and are otherwise the "
        "same runs. SE is the standard error of the file-order test HR@10 over users "
        "(binomial); a move smaller than it is noise, not a result.\n\n"
        "| dataset | model | test HR@10 file -> random | SE | test NDCG@10 file -> random | "
        "val NDCG@10 file -> random |\n|---|---|---|---|---|---|\n"
        + "\n".join(lines) + "\n\n"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-latest-small", choices=sorted(DATASETS))
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--item2vec", action="store_true",
                   help="start item embeddings from item2vec (tag 'item2vec')")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--item-features", action="store_true",
                   help="give the neural models the dataset's own item features (genres and "
                        "titles, Beauty's attributes)")
    p.add_argument("--models", nargs="+", default=None,
                   help="default: the baselines and every registered model")
    p.add_argument("--exclude-seen", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=TRAINING["epochs"])
    p.add_argument("--batch-size", type=int, default=TRAINING["batch_size"])
    p.add_argument("--learning-rate", type=float, default=TRAINING["learning_rate"])
    p.add_argument("--adam-beta2", type=float, default=None,
                   help="Adam's beta_2 (Keras default 0.999; the SASRec paper used 0.98)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="train with AdamW and this decoupled weight decay")
    p.add_argument("--new-item-share", type=float, default=None, metavar="SHARE",
                   help="with --cold-items and --item-features: the share of the probability "
                        "the new items draw after each epoch (default: their catalogue share)")
    p.add_argument("--lr-plateau", type=int, default=None, metavar="EPOCHS",
                   help="halve the learning rate after this many epochs without a better "
                        "validation NDCG@10 (at most 6 times)")
    p.add_argument("--loss", default="softmax",
                   help="a name from keras_seqrec.losses.LOSSES (default: full softmax)")
    p.add_argument("--num-negatives", type=int, default=None,
                   help="negatives per step for a sampled --loss")
    p.add_argument("--patience", type=int, default=TRAINING["early_stopping_patience"])
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="per model: start no new epoch after this many minutes")
    p.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                   help="model hyperparameter, e.g. --param dropout=0.5 (repeatable)")
    p.add_argument("--cold-items", type=float, default=0.0, metavar="SHARE",
                   help="cold-start protocol: this share of the items is new (never in training);"
                        " results report warm and cold targets apart")
    p.add_argument("--tie-break", default="file", choices=("file", "random"),
                   help="order of equal timestamps: file order, or random with --seed")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--no-render", action="store_true",
                   help="write the JSONs only (render later with --render-only)")
    p.add_argument("--verbose", type=int, default=0, help="2: one line per epoch")
    args = p.parse_args(argv)
    if args.num_negatives is not None and args.loss == "softmax":
        p.error("--num-negatives applies to a sampled --loss only.")
    global VERBOSE, COMMIT
    VERBOSE, COMMIT = args.verbose, _commit()
    if args.tie_break != "file":
        PREPARE_EXTRA.update(tie_break=args.tie_break, seed=args.seed)
    if args.cold_items:
        PREPARE_EXTRA.update(cold_items=args.cold_items, seed=args.seed)
    training = dict(epochs=args.epochs, batch_size=args.batch_size,
                    learning_rate=args.learning_rate, early_stopping_patience=args.patience)
    if args.adam_beta2 is not None:
        training["adam_beta_2"] = args.adam_beta2
    if args.weight_decay is not None:
        training["weight_decay"] = args.weight_decay
    if args.new_item_share is not None:
        training["new_item_share"] = args.new_item_share
    if args.lr_plateau is not None:
        training.update(learning_rate_schedule="plateau", plateau_patience=args.lr_plateau)
    if args.loss != "softmax":
        training["loss"] = args.loss
    if args.num_negatives is not None:
        training["num_negatives"] = args.num_negatives
    if args.time_limit:
        training["time_limit"] = args.time_limit * 60
    params = dict(args.param)
    if not args.render_only:
        import keras_seqrec as ks
        from keras_seqrec.baselines import BASELINES, FEATURE_BASELINES

        data = ks.prepare(load(args.dataset, args.data_dir), **DATASETS[args.dataset],
                          **PREPARE_EXTRA)
        print(data)
        features = item_features(args.dataset, data, args.data_dir) if args.item_features \
            else None
        command = "python benchmarks/run.py " + " ".join(
            a for a in (sys.argv[1:] if argv is None else argv) if a != "--no-render")
        everything = [*BASELINES, *(FEATURE_BASELINES if features is not None else []),
                      *ks.available_models()]
        for name in args.models or everything:
            r = run_one(args.dataset, name, data, args.exclude_seen, args.seed, command,
                        training, params, args.tag or ("item2vec" if args.item2vec else ""),
                        args.item2vec, features)
            t = r["metrics"]["test"]
            print(f"{name:>15}: test HR@10 {t['hr@10']:.4f} NDCG@10 {t['ndcg@10']:.4f} "
                  f"({r['epochs']} epochs, {r['total_seconds']} s)", flush=True)
    if not args.no_render:
        render()


if __name__ == "__main__":
    main()
