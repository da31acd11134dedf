#!/usr/bin/env bash
# Issue 23: a small validation grid for the MovieLens configuration of gru_attention (the
# README's main job: defaults from item2vec, attending to the items), on ml-latest-small and
# ml-100k. Each arm 2-4 minutes on 2 cores; `python benchmarks/ablation.py` renders the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
arm() {
    local tag=$1; shift
    for dataset in ml-latest-small ml-100k; do
        python -W ignore benchmarks/run.py --dataset "$dataset" --exclude-seen \
            --models gru_attention --item2vec --no-render --param attend_to=items "$@" \
            --tag "item2vec_items_$tag"
    done
}
arm dropout0.35 --param dropout=0.35
arm dropout0.5 --param dropout=0.5
arm layers1 --param num_layers=1
arm dim128 --param embedding_dim=128 --param hidden_dim=128 --param attention_units=128
