"""The gru_attention ablation (issue 23): one table, rendered from the committed result JSONs.

Validation only: the arms are compared on validation NDCG@10 (test is never looked at to
choose). The new arms ran with one budget (16 epochs, 15 minutes each, the script
`benchmarks/ablation/gru_attention_beauty.sh`); earlier full-length runs that answer the other
questions (stack depth, regularisation, item2vec start) are listed beside them with the best
validation NDCG@10 they had reached within the same 16 epochs, read from their per-epoch curve.
Two later tables pair full-length runs of one recipe: whether the context helps once it has its
own dropout, and what the attention reads (`benchmarks/ablation/attention_reads.sh`).

    python benchmarks/ablation.py        # writes benchmarks/ABLATION.md
"""

from __future__ import annotations

import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
BUDGET = 16  # epochs every arm of the grid had

# (question, arm, result file stem): the grid's arms, then committed full runs.
REFERENCE = "gru_attention_exclude_seen_ablation16_tanh_position"
GRID = [
    ("reference", "one GRU layer, position query, tanh decoder (the model before this ablation)",
     REFERENCE),
    ("attention's contribution", "context zeroed (no attention, tanh decoder on h_t)",
     "gru_attention_exclude_seen_ablation16_no_attention"),
    ("decoder", "residual decoder h_t + W c_t, W from zero",
     "gru_attention_exclude_seen_ablation16_residual_decoder"),
    ("query", "residual decoder and learned query",
     "gru_attention_exclude_seen_ablation16_residual_decoder_learned_query"),
    ("regularisation", "residual decoder, learned query, no output dropout (state dropped once)",
     "gru_attention_exclude_seen_ablation16_residual_decoder_learned_query_output_dropout0"),
]
EARLIER = [
    ("the grid's best arm", "residual decoder, learned query, no output dropout, to early stopping",
     "gru_attention_exclude_seen_residual_learned_od0_layers1_dim128_embdrop0.5_dropout0.4_"
     "lr5e-3_plateau"),
    ("stack", "two GRU layers, residual stack (the default before this ablation)",
     "gru_attention_exclude_seen_residual_dim128_embdrop0.5_dropout0.4_lr5e-3_plateau"),
    ("stack", "one GRU layer (the grid's reference recipe, full length)",
     "gru_attention_exclude_seen_layers1_dim128_embdrop0.5_dropout0.4_lr5e-3_plateau"),
    ("stack", "two GRU layers, plain stack",
     "gru_attention_exclude_seen_dim128_dropout0.4_lr5e-3_plateau"),
    ("regularisation", "two layers residual, dropout 0.3",
     "gru_attention_exclude_seen_residual_dim128_embdrop0.5_dropout0.3_lr5e-3_plateau"),
    ("regularisation", "two layers residual, dropout 0.5",
     "gru_attention_exclude_seen_residual_dim128_embdrop0.5_dropout0.5_lr5e-3_plateau"),
    ("regularisation", "one layer, dropout 0.5 everywhere (no separate embedding dropout)",
     "gru_attention_exclude_seen_layers1_dim128_dropout0.5_lr5e-3_plateau"),
    ("item2vec start", "two layers plain, item2vec start",
     "gru_attention_exclude_seen_item2vec_dim128_dropout0.4_lr5e-3_plateau"),
    ("no attention at all", "plain gru, width 128, dropout 0.5",
     "gru_exclude_seen_dim128_lr5e-3_plateau"),
]

# Full-length arms on one recipe (one GRU layer, width 128, dropout 0.5 on the embedding and
# the states as plain gru has it, no output dropout, learned query, residual decoder), paired
# with the same model without attention: does the context help once it is regularised?
CONTEXT_REFERENCE = ("gru_attention_exclude_seen_no_attention_layers1_dim128_dropout0.5_"
                     "lr5e-3_plateau")
CONTEXT = [
    ("context zeroed (the recipe is then plain gru)", CONTEXT_REFERENCE),
    ("attention, no dropout on the context",
     "gru_attention_exclude_seen_residual_learned_od0_layers1_dim128_dropout0.5_lr5e-3_plateau"),
    ("attention, context dropout 0.5 (the new default: `dropout`)",
     "gru_attention_exclude_seen_residual_learned_od0_cd0.5_layers1_dim128_dropout0.5_"
     "lr5e-3_plateau"),
    ("attention, context dropout 0.5, item features (brand, categories)",
     "gru_attention_exclude_seen_features_residual_learned_od0_cd0.5_layers1_dim128_"
     "dropout0.5_lr5e-3_plateau"),
]

# What the attention reads (its keys and values): the GRU states (Bahdanau's and NARM's form)
# or the input item vectors, with a learned query or each position's state as the query.
# Per dataset one recipe, paired with its states/learned-query arm over the same validation
# users: Beauty the recipe above, the MovieLens sets `gru_attention`'s defaults from item2vec
# (the README's main job).
BEAUTY_RECIPE = "residual_learned_od0_cd0.5_layers1_dim128_dropout0.5_lr5e-3_plateau"
READS = [
    ("amazon-beauty", "gru_attention_exclude_seen_" + BEAUTY_RECIPE, [
        ("states, learned query (the default before)", "gru_attention_exclude_seen_"
         + BEAUTY_RECIPE),
        ("items, learned query (the new default)", "gru_attention_exclude_seen_items_learned_"
         "residual_od0_cd0.5_layers1_dim128_dropout0.5_lr5e-3_plateau"),
        ("items, position query (the Amazon configuration)", "gru_attention_exclude_seen_"
         "items_position_residual_od0_cd0.5_layers1_dim128_dropout0.5_lr5e-3_plateau"),
        ("the same, seed 1", "gru_attention_exclude_seen_items_position_residual_od0_cd0.5_"
         "layers1_dim128_dropout0.5_lr5e-3_plateau_seed1"),
        ("the same with brand and categories (`--item-features`)",
         "gru_attention_exclude_seen_features_items_position_residual_od0_cd0.5_layers1_dim128_"
         "dropout0.5_lr5e-3_plateau"),
        ("states, learned query, width 256", "gru_attention_exclude_seen_dim256_residual_"
         "learned_od0_cd0.5_layers1_dropout0.5_lr5e-3_plateau"),
    ]),
] + [
    (dataset, "gru_attention_exclude_seen_item2vec", [
        ("states, learned query (the default before)", "gru_attention_exclude_seen_item2vec"),
        ("items, learned query (the new default)", "gru_attention_exclude_seen_item2vec_items"),
        ("items, position query", "gru_attention_exclude_seen_item2vec_items_position"),
    ])
    for dataset in ("ml-latest-small", "ml-100k")
] + [
    ("ml-1m", "gru_attention_exclude_seen_lr5e-3_plateau", [
        ("states, learned query (the default before)",
         "gru_attention_exclude_seen_lr5e-3_plateau"),
        ("items, learned query (the new default)",
         "gru_attention_exclude_seen_items_lr5e-3_plateau"),
    ]),
]

# A small grid around the MovieLens configuration (the defaults from item2vec, attending to the
# items), paired with it: `benchmarks/ablation/movielens_grid.sh`.
MOVIELENS_GRID = [
    (dataset, "gru_attention_exclude_seen_item2vec_items", [
        ("the defaults (two layers, width 64, dropout 0.2)",
         "gru_attention_exclude_seen_item2vec_items"),
        ("dropout 0.35", "gru_attention_exclude_seen_item2vec_items_dropout0.35"),
        ("dropout 0.5", "gru_attention_exclude_seen_item2vec_items_dropout0.5"),
        ("one GRU layer", "gru_attention_exclude_seen_item2vec_items_layers1"),
        ("width 128", "gru_attention_exclude_seen_item2vec_items_dim128"),
    ])
    for dataset in ("ml-latest-small", "ml-100k")
]


def _load(dataset, stem):
    path = os.path.join(RESULTS, dataset, stem + ".json")
    if not os.path.exists(path):
        return None, None
    with open(path) as f:
        row = json.load(f)
    ranks = None
    if row.get("ranks_file"):
        with np.load(os.path.join(RESULTS, dataset, row["ranks_file"])) as f:
            ranks = f["validation"]
    return row, ranks


def _paired(ranks, reference):
    from keras_seqrec.evaluation import paired_cell

    if ranks is None or reference is None:
        return "n/a"
    return paired_cell(ranks, reference)


def _command(row):
    return row.get("config", {}).get("command") or row.get("command", "")


def _paired_table(groups, commands) -> list:
    """Rows of (dataset, reference stem, [(arm, stem)]) groups, each arm paired with its
    group's reference on validation; their commands are appended to `commands`."""
    lines = ["| dataset | arm | val NDCG@10 | vs first row | test NDCG@10 | epochs (best) | "
             "s/epoch |", "|---|---|---|---|---|---|---|"]
    for dataset, reference_stem, arms in groups:
        _, reference = _load(dataset, reference_stem)
        for arm, stem in arms:
            row, ranks = _load(dataset, stem)
            if row is None:
                lines.append(f"| {dataset} | {arm} | not run yet | | | | |")
                continue
            v, t = row["metrics"]["validation"], row["metrics"]["test"]
            paired = "" if stem == reference_stem else _paired(ranks, reference)
            lines.append(f"| {dataset} | {arm} | {v['ndcg@10']:.4f} ± {v['ndcg@10_se']:.4f} | "
                         f"{paired} | {t['ndcg@10']:.4f} ± {t['ndcg@10_se']:.4f} | "
                         f"{row['epochs']} ({row['best_epoch']}) | {row['seconds_per_epoch']} |")
            commands.append(_command(row))
    return lines


def render(dataset="amazon-beauty") -> str:
    reference_row, reference = _load(dataset, REFERENCE)
    lines = [
        f"# gru_attention ablation on {dataset} (validation only)",
        "",
        "Generated by `python benchmarks/ablation.py` from the result JSONs; never typed by hand.",
        f"Every grid arm: width 128, attention units 128, embedding dropout 0.5, dropout 0.4, "
        f"Adam lr 5e-3 halved after 2 epochs without gain, batch 128, {BUDGET} epochs or 15 "
        "minutes, whichever came first (`benchmarks/ablation/gru_attention_beauty.sh`). "
        "\"vs reference\" is the validation NDCG@10 difference to the reference arm, paired "
        "over the same users (± its standard error; \"noise\" when under two of them). "
        f"\"at epoch {{n}}\" is each arm's validation NDCG@10 after the number of epochs every "
        "arm completed (from the per-epoch curve), to tell a better model from a cheaper one "
        "that fits more epochs into the same minutes.",
        "",
        "| question | arm | val NDCG@10 | vs reference | at epoch {n} | epochs (best) | "
        "s/epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    commands, grid = [], []
    for question, arm, stem in GRID:
        row, ranks = _load(dataset, stem)
        grid.append((question, arm, stem, row, ranks))
    n = min([len(r["validation_ndcg@10_per_epoch"]) for *_, r, _ in grid if r] or [0])
    lines = [line.replace("{n}", str(n)) for line in lines]
    for question, arm, stem, row, ranks in grid:
        if row is None:
            lines.append(f"| {question} | {arm} | not run yet | | | | |")
            continue
        v = row["metrics"]["validation"]
        paired = "" if stem == REFERENCE else _paired(ranks, reference)
        lines.append(f"| {question} | {arm} | {v['ndcg@10']:.4f} ± {v['ndcg@10_se']:.4f} | "
                     f"{paired} | {row['validation_ndcg@10_per_epoch'][n - 1]:.4f} | "
                     f"{row['epochs']} ({row['best_epoch']}) | {row['seconds_per_epoch']} |")
        commands.append(_command(row))
    lines += [
        "",
        "Full-length runs: the grid's best arm trained to early stopping, and earlier runs (other "
        "code versions, the layer's earlier form) for the questions the grid does not repeat. "
        f"\"best in {BUDGET}\" is the best validation NDCG@10 of their first "
        f"{BUDGET} epochs (from the per-epoch curve, no standard error there); \"best\" is the "
        "whole run's, restored at its best epoch.",
        "",
        f"| question | arm | best in {BUDGET} | best val NDCG@10 | epochs (best) | s/epoch |",
        "|---|---|---|---|---|---|",
    ]
    for question, arm, stem in EARLIER:
        row, _ = _load(dataset, stem)
        if row is None:
            continue
        curve = row.get("validation_ndcg@10_per_epoch") or [float("nan")]
        v = row["metrics"]["validation"]
        se = v.get("ndcg@10_se")
        best = f"{v['ndcg@10']:.4f}" + (f" ± {se:.4f}" if se is not None else "")
        lines.append(f"| {question} | {arm} | {max(curve[:BUDGET]):.4f} | {best} | "
                     f"{row['epochs']} ({row['best_epoch']}) | {row['seconds_per_epoch']} |")
        commands.append(_command(row))
    _, context_reference = _load(dataset, CONTEXT_REFERENCE)
    lines += [
        "",
        "Does the context help once regularised? Full-length runs (to early stopping) of one "
        "recipe: one GRU layer, width 128, dropout 0.5 on the embeddings and the states (plain "
        "gru's), no output dropout, learned query, residual decoder; Adam 5e-3 halved after 2 "
        "epochs without gain. The attention averages many dropped-out states, so without a "
        "dropout of its own the context is a nearly noise-free path around the states' "
        "dropout. Paired with the context-zeroed arm over the same validation users. (These ran "
        "on a faster machine than the tables above: compare s/epoch within this table only.)",
        "",
        "| arm | val NDCG@10 | vs context zeroed | epochs (best) | s/epoch |",
        "|---|---|---|---|---|",
    ]
    for arm, stem in CONTEXT:
        row, ranks = _load(dataset, stem)
        if row is None:
            lines.append(f"| {arm} | not run yet | | | |")
            continue
        v = row["metrics"]["validation"]
        paired = "" if stem == CONTEXT_REFERENCE else _paired(ranks, context_reference)
        lines.append(f"| {arm} | {v['ndcg@10']:.4f} ± {v['ndcg@10_se']:.4f} | {paired} | "
                     f"{row['epochs']} ({row['best_epoch']}) | {row['seconds_per_epoch']} |")
        commands.append(_command(row))
    lines += [
        "",
        "What does the attention read? Its keys and values are the GRU states (Bahdanau's and "
        "NARM's form) or the input item vectors (after the embedding dropout), so that the "
        "context is a weighted bag of the items seen so far beside the state's "
        "recency-ordered summary of them; the query is one learned vector or each position's "
        "state. Amazon Beauty: the recipe of the table above; ml-latest-small and ml-100k: "
        "`gru_attention`'s defaults started from item2vec (the README's main job); ML-1M: the "
        "defaults with lr 5e-3 halved on 2-epoch plateaus, batch 128. Each arm is "
        "paired with its dataset's first row over the same validation users; test NDCG@10 is "
        "shown, never used to choose. Runs on one machine, but s/epoch of runs that shared "
        "the 2 cores with other work is inflated (the Beauty items rows and width 256; "
        "`benchmarks/SPEED.md` has uncontended times).",
        "",
    ]
    lines += _paired_table(READS, commands)
    lines += [
        "",
        "A small grid around the MovieLens configuration (the README's main job: the defaults "
        "from item2vec, attending to the items), each arm paired with it over the same "
        "validation users. None of them leads on both datasets by more than noise, so the "
        "defaults stay.",
        "",
    ]
    lines += _paired_table(MOVIELENS_GRID, commands)
    lines += ["", "Commands:", ""] + [f"    {c}" for c in dict.fromkeys(commands) if c] + [""]
    return "\n".join(lines)


def main():
    text = render()
    with open(os.path.join(HERE, "ABLATION.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
