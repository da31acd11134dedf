#!/usr/bin/env bash
# Issue 23 ablation of gru_attention on Amazon Beauty, validation only, one fixed budget per arm
# (16 epochs or 15 minutes, whichever comes first): every arm shares the width-128,
# embedding-dropout-0.5, dropout-0.4, lr 5e-3 plateau recipe of the committed one-layer row.
# Rows land in benchmarks/results/ as usual; `python benchmarks/ablation.py` renders the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
base=(--dataset amazon-beauty --models gru_attention --exclude-seen --epochs 16 --patience 8
      --learning-rate 5e-3 --batch-size 128 --lr-plateau 2 --time-limit 15 --verbose 2 --no-render
      --param embedding_dim=128 --param hidden_dim=128 --param attention_units=128
      --param dropout=0.4 --param embedding_dropout=0.5 --param num_layers=1)
arm() { local tag=$1; shift; python -W ignore benchmarks/run.py "${base[@]}" "$@" --tag "ablation16_$tag"; }
arm residual_decoder --param decoder=residual --param query=position
arm tanh_position --param query=position --param decoder=tanh
arm no_attention --param use_attention=false --param query=position --param decoder=tanh
arm residual_decoder_learned_query --param decoder=residual --param query=learned
arm residual_decoder_learned_query_output_dropout0 --param decoder=residual --param query=learned --param output_dropout=0
