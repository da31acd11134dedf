"""Accuracy benchmark: every zoo model and the baselines, full-ranking leave-one-out.

Writes one JSON per (dataset, model) under benchmarks/results/ and renders benchmarks/RESULTS.md
and the README's results table from all JSON files there (never typed by hand).

    python benchmarks/run.py --dataset ml-latest-small              # every model
    python benchmarks/run.py --dataset ml-latest-small --models gru  # some
    python benchmarks/run.py --render-only                           # tables from the JSONs
"""

from __future__ import annotations

import argparse
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
            item2vec=False):
    import keras

    import keras_seqrec as ks
    from keras_seqrec.baselines import BASELINES
    from keras_seqrec.evaluation import evaluate_recommender
    from keras_seqrec.training import build_and_fit

    start = time.perf_counter()
    history = None
    if model_name in BASELINES:
        model = BASELINES[model_name](data)
    else:
        fit_args = dict(training)
        if "loss" in fit_args:
            loss = ks.losses.get_loss(fit_args.pop("loss"))
            if "num_negatives" in fit_args:
                loss = type(loss)(**{**loss.get_config(),
                                     "num_negatives": fit_args.pop("num_negatives")})
            fit_args["loss"] = loss
        model, history = build_and_fit(model_name, data, params, item2vec=item2vec, seed=seed,
                                       verbose=VERBOSE, exclude_seen=exclude_seen, **fit_args)
    seconds = time.perf_counter() - start
    metrics, ranks = {}, {}
    for split in ("validation", "test"):
        metrics[split], ranks[split] = evaluate_recommender(
            model, data, split, cutoffs=(5, 10, 20), exclude_seen=exclude_seen,
            standard_errors=True, return_ranks=True)
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
                       if k != "item_embeddings"} if history else None,
                   "seed": seed},
        "data": data.describe()["filtered"],
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
    np.savez_compressed(os.path.join(RESULTS, dataset, result["ranks_file"]),
                        **{k: v.astype(np.int32) for k, v in ranks.items()})
    with open(os.path.join(RESULTS, dataset, f"{model_name}{suffix}.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def render():
    rows = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "*", "*.json"))):
        with open(path) as f:
            result = json.load(f)
        if "dataset" in result:  # results/speed/ holds the speed benchmarks
            rows.append(result)
    baselines_first = {"pop": 0, "markov": 1}
    rows.sort(key=lambda r: (r["dataset"], r["exclude_seen"],
                             baselines_first.get(r["model"], 2), r["model"]))
    lines = [
        "| dataset | seen excluded | model | test HR@10 | test NDCG@10 | test MRR@10 | "
        "test Cov@10 | val NDCG@10 | epochs | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    commands = []
    for r in rows:
        t, v = r["metrics"]["test"], r["metrics"]["validation"]
        lines.append(
            f"| {r['dataset']} | {'yes' if r['exclude_seen'] else 'no'} | {r['model']} | "
            f"{t['hr@10']:.4f} | {t['ndcg@10']:.4f} | {t['mrr@10']:.4f} | "
            f"{t['coverage@10']:.4f} | {v['ndcg@10']:.4f} | {r['epochs']} | "
            f"{r['seconds_per_epoch']} |"
        )
        if r["command"] not in commands:
            commands.append(r["command"])
    table = "\n".join(lines)
    ties = _tie_break_section(rows)
    machine = rows[0]["machine"] if rows else ""
    text = (
        "# Benchmark results\n\nGenerated by `python benchmarks/run.py` from "
        "`benchmarks/results/*/*.json`; do not edit by hand.\n\nProtocol: leave-one-out by "
        "time, full ranking over every item, pessimistic ties, best epoch chosen on validation "
        f"NDCG@10. Machine: {machine}.\n\n{table}\n\n{ties}Produced by:\n\n"
        + "\n".join(f"    {c}" for c in commands) + "\n"
    )
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write(text)
    readme = os.path.join(ROOT, "README.md")
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    with open(readme) as f:
        content = f.read()
    if begin in content and end in content:
        head, rest = content.split(begin, 1)
        _, tail = rest.split(end, 1)
        block = (f"{begin}\n{table}\n\nCommands: "
                 + "; ".join(f"`{c}`" for c in commands) + f"\n{end}")
        with open(readme, "w") as f:
            f.write(head + block + tail)
    print(table)


TIE_TAG = "tiebreak_random"


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
    training = dict(epochs=args.epochs, batch_size=args.batch_size,
                    learning_rate=args.learning_rate, early_stopping_patience=args.patience)
    if args.adam_beta2 is not None:
        training["adam_beta_2"] = args.adam_beta2
    if args.weight_decay is not None:
        training["weight_decay"] = args.weight_decay
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
        from keras_seqrec.baselines import BASELINES

        data = ks.prepare(load(args.dataset, args.data_dir), **DATASETS[args.dataset],
                          **PREPARE_EXTRA)
        print(data)
        command = "python benchmarks/run.py " + " ".join(
            a for a in (sys.argv[1:] if argv is None else argv) if a != "--no-render")
        for name in args.models or [*BASELINES, *ks.available_models()]:
            r = run_one(args.dataset, name, data, args.exclude_seen, args.seed, command,
                        training, params, args.tag or ("item2vec" if args.item2vec else ""),
                        args.item2vec)
            t = r["metrics"]["test"]
            print(f"{name:>15}: test HR@10 {t['hr@10']:.4f} NDCG@10 {t['ndcg@10']:.4f} "
                  f"({r['epochs']} epochs, {r['total_seconds']} s)", flush=True)
    if not args.no_render:
        render()


if __name__ == "__main__":
    main()
