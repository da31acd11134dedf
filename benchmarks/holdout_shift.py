"""Which held-out item is hard: the leave-one-out split moved back by K items per user.

    python benchmarks/holdout_shift.py                  # ml-latest-small, K = 0, 1, 2 (~10 min)

On ml-latest-small the neural models score far higher on validation than on test (the README
main job: 0.1021 vs 0.0620) while `markov` does not (0.0504 vs 0.0495). This script asks
whether that is the protocol (validation sits next to the training horizon and picks the
epoch) or the items themselves (each user's very last rating): it drops each user's last K
interactions of the prepared dataset and splits again by leave-one-out, so with K = 1 the
test target is the item that was the validation target at K = 0. The same model, training
settings and seed (the README main job: `gru_attention` from item2vec, attending to the
items) and the `markov` baseline are run at each K; NDCG@10 with seen items excluded, ± SE
over users, and the test difference to `markov` paired over the same users.

Writes benchmarks/results/holdout_shift/<dataset>.json and benchmarks/HOLDOUT_SHIFT.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "holdout_shift")
TRAINING = dict(epochs=40, batch_size=64, learning_rate=5e-3, early_stopping_patience=8)
HYPERPARAMETERS = {"attend_to": "items"}


def shifted(data, k: int):
    """`data`'s users' whole sequences without their last `k` items, split again."""
    import pandas as pd

    import keras_seqrec as ks
    from keras_seqrec.datasets import from_dataframe

    ids = np.asarray(data.vocabulary.ids)
    rows = []
    for user, history, target in zip(data.test.users, data.test.history.tolist(),
                                     data.test.targets):
        items = (list(history) + [int(target)])[:len(history) + 1 - k]
        rows += [(user, ids[i - 1], t) for t, i in enumerate(items)]
    log = from_dataframe(pd.DataFrame(rows, columns=["user", "item", "timestamp"]),
                         name=f"{data.name}-shift{k}")
    return ks.prepare(log, max_len=data.max_len)


def run(dataset: str, shifts) -> dict:
    sys.path.insert(0, HERE)
    from run import DATASETS, load  # noqa: E402  (the benchmark's own preparation)

    import keras_seqrec as ks
    from keras_seqrec.baselines import BASELINES
    from keras_seqrec.evaluation import evaluate_recommender, paired_comparison, per_user_values
    from keras_seqrec.training import build_and_fit

    base = ks.prepare(load(dataset, None), **DATASETS[dataset])
    out = {"dataset": dataset, "training": TRAINING, "hyperparameters": HYPERPARAMETERS,
           "item2vec": True, "shifts": [],
           "command": "python benchmarks/holdout_shift.py " + " ".join(sys.argv[1:])}
    differences = []  # per user and K: test NDCG@10 of gru_attention minus markov's
    for k in shifts:
        data = shifted(base, k)
        model, history = build_and_fit("gru_attention", data, HYPERPARAMETERS, item2vec=True,
                                       exclude_seen=True, verbose=0, **TRAINING)
        row = {"k": k, "users": len(data.test), "best_epoch": history.best_epoch + 1}
        ranks = {}
        for name, scorer in (("markov", BASELINES["markov"](data)), ("gru_attention", model)):
            row[name], ranks[name] = {}, {}
            for split in ("validation", "test"):
                metrics, ranks[name][split] = evaluate_recommender(
                    scorer, data, split, cutoffs=(10,), exclude_seen=True,
                    standard_errors=True, return_ranks=True)
                row[name][split] = [metrics["ndcg@10"], metrics["ndcg@10_se"]]
        for split in ("validation", "test"):
            row[f"{split}_vs_markov"] = paired_comparison(ranks["gru_attention"][split],
                                                          ranks["markov"][split])
        if not np.array_equal(data.test.users, base.test.users):
            raise RuntimeError("a shift lost or reordered users; the pooled pairing needs them")
        differences.append(per_user_values(ranks["gru_attention"]["test"], "ndcg@10")
                           - per_user_values(ranks["markov"]["test"], "ndcg@10"))
        print(f"K={k}: gru_attention val {row['gru_attention']['validation'][0]:.4f} test "
              f"{row['gru_attention']['test'][0]:.4f}; markov val "
              f"{row['markov']['validation'][0]:.4f} test {row['markov']['test'][0]:.4f}",
              flush=True)
        out["shifts"].append(row)
    # Every user's difference averaged over the held-out positions, then over users: one
    # paired estimate from len(shifts) test items per user instead of one.
    per_user = np.mean(differences, axis=0)
    out["pooled_test_vs_markov"] = {
        "difference": float(per_user.mean()),
        "se": float(per_user.std(ddof=1) / np.sqrt(len(per_user))),
        "users": int(len(per_user)), "shifts": list(shifts)}
    return out


def render() -> str:
    from keras_seqrec.evaluation import comparison_cell

    lines = ["# Which held-out item is hard", "",
             "Generated by `python benchmarks/holdout_shift.py` (see its docstring). Each "
             "user's last K interactions are dropped before the leave-one-out split, so at "
             "K = 1 the test target is K = 0's validation target. `gru_attention`: the README "
             "main job's settings (item2vec, attending to the items, 40 epochs, patience 8, "
             "best epoch on validation). NDCG@10, seen items excluded, ± SE over users; "
             "\"vs markov\": paired over the same users.", ""]
    for path in sorted(glob.glob(os.path.join(OUT, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        lines += [f"## {r['dataset']}", "",
                  "| K | users | markov val | markov test | gru_attention val | "
                  "gru_attention test | test vs markov | val minus test (gru_attention) |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in r["shifts"]:
            cell = lambda v: f"{v[0]:.4f} ± {v[1]:.4f}"  # noqa: E731
            gap = row["gru_attention"]["validation"][0] - row["gru_attention"]["test"][0]
            lines.append(
                f"| {row['k']} | {row['users']} | {cell(row['markov']['validation'])} | "
                f"{cell(row['markov']['test'])} | {cell(row['gru_attention']['validation'])} "
                f"| {cell(row['gru_attention']['test'])} | "
                f"{comparison_cell(row['test_vs_markov'])} | {gap:+.4f} |")
        pooled = r.get("pooled_test_vs_markov")
        if pooled:
            lines += ["", f"Pooled over K = {', '.join(map(str, pooled['shifts']))} (each "
                      "user's test difference averaged over the held-out positions, then "
                      f"paired over the {pooled['users']} users): gru_attention minus markov "
                      f"{pooled['difference']:+.4f} ± {pooled['se']:.4f}."]
        lines += ["", "    " + r["command"], ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-latest-small",
                   choices=("ml-latest-small", "ml-100k"))
    p.add_argument("--shifts", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--render-only", action="store_true")
    args = p.parse_args(argv)
    if not args.render_only:
        result = run(args.dataset, args.shifts)
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, f"{args.dataset}.json"), "w") as f:
            json.dump(result, f, indent=1)
    text = render()
    with open(os.path.join(HERE, "HOLDOUT_SHIFT.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
