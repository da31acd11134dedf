"""New items on a cold-start split: how much of the ranking to give them, and what it costs.

    keras-seqrec train --config benchmarks/results/amazon-beauty/sasrec_exclude_seen_cold10_features_iddrop0.5_lr_plateau.json \\
        --dataset ../shared/data/amazon-beauty/Beauty.txt \\
        --item-features ../shared/data/amazon-beauty/Beauty_item2attributes.json --output RUN
    python benchmarks/new_items.py --run-dir RUN --name amazon-beauty_sasrec \\
        --reference benchmarks/results/amazon-beauty/sasrec_exclude_seen_cold10_lr_plateau.json

A feature-aware model trained on a cold-start split (`prepare(..., cold_items=0.1)`) scores
its new items from their features. One number decides how they compete with the trained
items: an offset added to all new items' scores (their output bias, which never trained;
`keras_seqrec.catalogue.calibrate_new_items` sets it from a share of the probability). This
script scores the run's validation and test users once and sweeps that offset, reporting for
each: the share of the probability the new items then draw over the validation histories,
the share of top-10 slots they take, and NDCG@10 (± SE) on warm and cold targets of both
splits, with the content baseline beside them. The named rows:

- `untrained`: offset 0, the bias an id-dropped item trains with (what the model learnt);
- `share`: the default rule, new items draw their share of the catalogue;
- `budget`: the largest offset whose cost to *warm* validation targets is at most one
  standard error of this model's own warm validation NDCG@10;
- `id-only budget` (with `--reference`, an id-only run's result JSON on the same split): the
  largest offset whose warm validation NDCG@10 stays within one standard error of the
  id-only model's, i.e. the cold-start target's warm condition checked on validation.
None of them reads an interaction of a new item. Named rows also carry paired test
differences over the same users: cold targets against the content baseline, warm targets
against the reference.

Also a temperature check: new items' scores divided by T < 1 (sharper) at the same warm cost.
Writes benchmarks/results/new_items/<name>.json and benchmarks/NEW_ITEMS.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "new_items")
OFFSETS = [round(float(c), 2) for c in np.arange(-1.0, 2.01, 0.25)]
TEMPERATURES = (1.0, 0.9, 0.8, 0.7)


def _scores(model, split, max_len):
    from keras_seqrec.models.common import last_position_model

    scorer, inputs = last_position_model(model), split.inputs(max_len)
    return np.concatenate([np.asarray(scorer.predict_on_batch(inputs[i:i + 1024]))
                           for i in range(0, len(inputs), 1024)]).astype(np.float32)


class _Split:
    """One split's scores at offset 0, re-ranked for any offset and temperature."""

    def __init__(self, scores, split, new, content_scores):
        from keras_seqrec.evaluation import mask_seen, target_ranks

        self.scores, self.split, self.new = scores, split, new
        # Seen items masked once: -inf stays -inf under any offset and temperature.
        self.masked = mask_seen(scores.copy(), split.history)
        self.cold = new[split.targets]
        self.content_ranks = target_ranks(mask_seen(content_scores, split.history),
                                          split.targets)
        self.content = self._ndcg(self.content_ranks)

    def _ndcg(self, ranks):
        from keras_seqrec.evaluation import per_user_values

        values = per_user_values(ranks, "ndcg@10")
        return {part: (float(values[m].mean()), float(values[m].std(ddof=1) / np.sqrt(m.sum())),
                       int(m.sum()))
                for part, m in (("warm", ~self.cold), ("cold", self.cold))}

    def _shifted(self, offset, temperature):
        masked = self.masked.copy()
        masked[:, self.new] = masked[:, self.new] / temperature + offset
        return masked

    def ranks(self, offset, temperature=1.0):
        from keras_seqrec.evaluation import target_ranks

        return target_ranks(self._shifted(offset, temperature), self.split.targets)

    def at(self, offset, temperature=1.0, top10_share=True):
        from keras_seqrec.evaluation import target_ranks, top_k_items

        masked = self._shifted(offset, temperature)
        result = self._ndcg(target_ranks(masked, self.split.targets))
        if top10_share:
            result["top10_share"] = float(self.new[top_k_items(masked, 10)].mean())
        return result

    def paired(self, offset, temperature=1.0, reference_ranks=None):
        """Test-style paired differences at this offset: cold targets vs the content baseline,
        warm targets vs `reference_ranks` (an id-only run's, same users in the same order)."""
        from keras_seqrec.evaluation import paired_comparison

        mine = self.ranks(offset, temperature)
        out = {"cold_vs_content": paired_comparison(mine[self.cold],
                                                    self.content_ranks[self.cold])}
        if reference_ranks is not None:
            out["warm_vs_reference"] = paired_comparison(mine[~self.cold],
                                                         reference_ranks[~self.cold])
        return out


def _row(label, offset, validation, test, scores, new, temperature=1.0, reference=None):
    """One offset's report; with `reference` (the id-only run's ranks, or {} for none) also
    the paired test differences (named rows only: they are the ones a rule picks)."""
    from keras_seqrec.catalogue import new_item_mass

    scaled = scores.copy()
    scaled[:, new] /= temperature
    row = {"row": label, "offset": float(offset), "temperature": temperature,
           "probability_share": new_item_mass(scaled, new, offset),
           "validation": validation.at(offset, temperature),
           "test": test.at(offset, temperature)}
    if reference is not None:
        row["test_paired"] = test.paired(offset, temperature, reference.get("test"))
    return row


def _reference(path, data):
    """An id-only run's result JSON (benchmarks/run.py) on this run's split, and its ranks."""
    with open(path) as f:
        result = json.load(f)
    if "validation_warm" not in result.get("metrics", {}) or not result.get("ranks_file"):
        raise SystemExit(f"--reference {path} is not a cold-start result of benchmarks/run.py "
                         "with stored ranks (run it with --cold-items).")
    with np.load(os.path.join(os.path.dirname(path), result["ranks_file"])) as f:
        ranks = {k: f[k] for k in f.files}
    # Same users in the same order with the same cold targets: the same split.
    if len(ranks["test"]) != len(data.test.targets) or not np.array_equal(
            ranks["test_cold_target"].astype(bool), data.cold_mask()[data.test.targets]):
        raise SystemExit(f"--reference {path} has other test users or targets than this run.")
    warm = result["metrics"]["validation_warm"]
    return {"file": os.path.relpath(path, HERE), "model": result["model"],
            "validation_warm": (warm["ndcg@10"], warm["ndcg@10_se"]),
            "test_warm": (result["metrics"]["test_warm"]["ndcg@10"],
                          result["metrics"]["test_warm"]["ndcg@10_se"]),
            "ranks": ranks}


def _budget_offset(validation, temperature, limit):
    """The largest offset (bisection) whose warm validation NDCG@10 is at least `limit`."""
    low, high = -12.0, 3.0
    for _ in range(14):
        middle = (low + high) / 2
        warm = validation.at(middle, temperature, top10_share=False)["warm"][0]
        low, high = (middle, high) if warm >= limit else (low, middle)
    return low


def run(run_dir: str, name: str, reference: str | None = None) -> dict:
    from keras_seqrec.baselines import ContentBaseline  # first: it quiets TF's start-up
    from keras_seqrec.catalogue import new_item_share_offset
    from keras_seqrec.runs import load_run

    loaded = load_run(run_dir)
    info, data, model = loaded.info, loaded.data, loaded.model
    if not len(data.cold_items):
        raise SystemExit(f"{run_dir} was not trained on a cold-start split (--cold-items).")
    ref = _reference(reference, data) if reference else None
    layer = model.get_layer("item_embedding")
    bias = layer.output_bias.numpy()
    bias[data.cold_items] = 0.0  # offsets below are relative to the untrained bias
    layer.output_bias.assign(bias)
    features = loaded.features
    content = ContentBaseline(data, features)
    new = data.cold_mask()
    splits = {}
    for which in ("validation", "test"):
        split = getattr(data, which)
        splits[which] = _Split(_scores(model, split, data.max_len), split, new,
                               content.score(split.inputs(data.max_len)))
    validation, test = splits["validation"], splits["test"]
    scores = validation.scores
    rows = [_row(f"offset {c:+.2f}", c, validation, test, scores, new) for c in OFFSETS]
    share = len(data.cold_items) / data.num_items
    base = validation.at(0.0)["warm"]
    limit = base[0] - base[1]
    paired = ref["ranks"] if ref else {}
    named = [_row("untrained", 0.0, validation, test, scores, new, reference=paired),
             _row("share", new_item_share_offset(scores, new, share), validation, test,
                  scores, new, reference=paired),
             _row("budget", _budget_offset(validation, 1.0, limit), validation, test,
                  scores, new, reference=paired)]
    if ref:
        ref_limit = ref["validation_warm"][0] - ref["validation_warm"][1]
        named.append(_row("id-only budget", _budget_offset(validation, 1.0, ref_limit),
                          validation, test, scores, new, reference=paired))
    sharper = [_row(f"budget, T={t}", _budget_offset(validation, t, limit), validation, test,
                    scores, new, t) for t in TEMPERATURES[1:]]
    out = {"name": name, "run_dir": os.path.abspath(run_dir), "model": info["model"],
           "cold_items": data.describe()["cold_items"], "catalogue_share": share,
           "warm_budget": {"validation_warm_ndcg@10": base[0], "se": base[1], "limit": limit},
           "content": {"validation": validation.content, "test": test.content},
           "named": named, "sweep": rows, "temperature": sharper,
           "command": "python benchmarks/new_items.py " + " ".join(sys.argv[1:])}
    if ref:
        out["reference"] = {k: v for k, v in ref.items() if k != "ranks"}
        out["reference"]["limit"] = ref_limit
    return out


def _cell(part):
    value, se, n = part
    return f"{value:.4f} ± {se:.4f}"


def render() -> str:
    lines = ["# New items on a cold-start split", "",
             "Generated by `python benchmarks/new_items.py` from "
             "`benchmarks/results/new_items/*.json`. One trained feature-aware model per "
             "file; its new items' scores are shifted by one offset (their output bias), "
             "sharpened by 1/T in the last rows. \"probability share\": the new items' mean "
             "softmax mass over the validation histories; \"top-10 share\": their share of "
             "the validation top-10 slots. `untrained`: offset 0; `share`: new items draw "
             "their share of the catalogue (the default of `fit_recommender` on a cold "
             "split); `budget`: the largest offset costing warm validation NDCG@10 at most "
             "one standard error; `id-only budget`: the largest offset keeping warm "
             "validation NDCG@10 within one standard error of the id-only model's on the "
             "same split. No rule reads an interaction of a new item. NDCG@10, seen items "
             "excluded, ± SE over users; the paired table compares the named rows over the "
             "same test users.", ""]
    for path in sorted(glob.glob(os.path.join(OUT, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        info = r["cold_items"]
        lines += [f"## {r['name']} ({r['model']}, {info['items']} new items of "
                  f"{round(info['items'] / r['catalogue_share'])}; test targets: "
                  f"{r['content']['test']['warm'][2]} warm, {r['content']['test']['cold'][2]} "
                  "cold)", "",
                  "| row | offset | probability share | top-10 share | val warm | val cold | "
                  "test warm | test cold |", "|---|---|---|---|---|---|---|---|",
                  f"| content baseline | | | | {_cell(r['content']['validation']['warm'])} | "
                  f"{_cell(r['content']['validation']['cold'])} | "
                  f"{_cell(r['content']['test']['warm'])} | "
                  f"{_cell(r['content']['test']['cold'])} |"]
        for row in r["named"] + r["temperature"] + r["sweep"]:
            name = f"**{row['row']}**" if row in r["named"] else row["row"]
            lines.append(
                f"| {name} | {row['offset']:+.2f} | {row['probability_share']:.3f} | "
                f"{row['validation']['top10_share']:.3f} | {_cell(row['validation']['warm'])} | "
                f"{_cell(row['validation']['cold'])} | {_cell(row['test']['warm'])} | "
                f"{_cell(row['test']['cold'])} |")
        lines += _paired_table(r) + ["", "    " + r["command"], ""]
    return "\n".join(lines)


def _paired_table(r) -> list[str]:
    named = [row for row in r["named"] if "test_paired" in row]
    if not named:
        return []
    ref = r.get("reference")
    lines = ["", "Paired over the same test users (difference ± its SE; \"noise\" under two):"
             + (f" the id-only reference is `{ref['file']}` (test warm "
                f"{ref['test_warm'][0]:.4f} ± {ref['test_warm'][1]:.4f}, validation warm "
                f"{ref['validation_warm'][0]:.4f} ± {ref['validation_warm'][1]:.4f}, so the "
                f"`id-only budget` keeps validation warm >= {ref['limit']:.4f})." if ref else ""),
             "", "| row | test cold minus content | test warm minus id-only |", "|---|---|---|"]
    from keras_seqrec.evaluation import comparison_cell

    for row in named:
        cells = [comparison_cell(row["test_paired"][key]) if key in row["test_paired"] else ""
                 for key in ("cold_vs_content", "warm_vs_reference")]
        lines.append(f"| {row['row']} | {cells[0]} | {cells[1]} |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", help="a keras-seqrec train output on a cold-start split")
    p.add_argument("--name", help="result file name, e.g. amazon-beauty_sasrec")
    p.add_argument("--reference", help="an id-only run's result JSON on the same cold-start "
                   "split (benchmarks/run.py --cold-items): adds the `id-only budget` rule and "
                   "paired warm differences against it")
    p.add_argument("--render-only", action="store_true")
    args = p.parse_args(argv)
    if not args.render_only:
        if not (args.run_dir and args.name):
            p.error("--run-dir and --name are needed (or --render-only)")
        result = run(args.run_dir, args.name, args.reference)
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, f"{args.name}.json"), "w") as f:
            json.dump(result, f, indent=1)
    with open(os.path.join(HERE, "NEW_ITEMS.md"), "w") as f:
        f.write(render() + "\n")
    print(render())


if __name__ == "__main__":
    main()
