#!/usr/bin/env bash
# Issue 23: what gru_attention's attention reads (GRU states or input item vectors) and who asks
# (a learned query or each position's state). Full-length runs, chosen on validation; the
# states/learned-query arm of each recipe is already committed (Beauty: `residual_learned_od0_
# cd0.5_...`; MovieLens: `item2vec`). `python benchmarks/ablation.py` renders the table.
# About 90 minutes on 2 cores: the Beauty arms take 10-15 each, ML-1M 25, the others 2-3.
set -euo pipefail
cd "$(dirname "$0")/../.."
beauty=(--dataset amazon-beauty --models gru_attention --exclude-seen --epochs 80 --patience 8
        --learning-rate 5e-3 --batch-size 128 --lr-plateau 2 --verbose 2 --no-render
        --param embedding_dim=128 --param hidden_dim=128 --param attention_units=128
        --param dropout=0.5 --param num_layers=1 --param decoder=residual
        --param output_dropout=0 --param context_dropout=0.5)
run() { python -W ignore benchmarks/run.py "$@"; }
run "${beauty[@]}" --time-limit 20 --param attend_to=items --param query=position \
    --tag items_position_residual_od0_cd0.5_layers1_dim128_dropout0.5_lr5e-3_plateau
run "${beauty[@]}" --time-limit 30 --param attend_to=items --param query=position --seed 1 \
    --tag items_position_residual_od0_cd0.5_layers1_dim128_dropout0.5_lr5e-3_plateau_seed1
run "${beauty[@]}" --time-limit 22 --param attend_to=items --param query=position --item-features \
    --tag features_items_position_residual_od0_cd0.5_layers1_dim128_dropout0.5_lr5e-3_plateau
run "${beauty[@]}" --time-limit 20 --param attend_to=items --param query=learned \
    --tag items_learned_residual_od0_cd0.5_layers1_dim128_dropout0.5_lr5e-3_plateau
run "${beauty[@]}" --time-limit 25 --param embedding_dim=256 --param hidden_dim=256 \
    --param attend_to=states --param query=learned --tag dim256_residual_learned_od0_cd0.5_layers1_dropout0.5_lr5e-3_plateau
for dataset in ml-latest-small ml-100k; do
    run --dataset "$dataset" --exclude-seen --models gru_attention --item2vec --no-render \
        --param attend_to=items --tag item2vec_items
    run --dataset "$dataset" --exclude-seen --models gru_attention --item2vec --no-render \
        --param attend_to=items --param query=position --tag item2vec_items_position
done
run --dataset ml-1m --models gru_attention --exclude-seen --epochs 200 --patience 8 \
    --learning-rate 5e-3 --batch-size 128 --lr-plateau 2 --time-limit 35 --verbose 2 --no-render \
    --param attend_to=items --tag items_lr5e-3_plateau
python benchmarks/run.py --render-only
python benchmarks/ablation.py
