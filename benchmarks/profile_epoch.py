"""Where one training epoch goes: ML-1M SASRec (max_len 200, batch 128, full softmax) on CPU.

    python benchmarks/profile_epoch.py                           # TensorFlow's own choice
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/profile_epoch.py   # Eigen's CPU kernels
    TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/profile_epoch.py   # oneDNN's CPU kernels

(TensorFlow uses oneDNN by itself on CPUs with AVX512-VNNI, such as the Xeon of the current
figures, and Eigen on the others, such as the AMD EPYC of the earlier ones.)

Two training paths, each timed over every batch of one epoch (after a warm-up pass that
traces each batch shape), alternating so that both see the same machine: "logits", the model's
catalogue logits and `SoftmaxCrossEntropy` (how every epoch was trained before), and "fused",
what `fit_recommender` trains now (`full_softmax_training_model`). For each: the encoder
forward (up to the hidden states), the whole forward, forward + loss, forward + loss +
backward, and the whole step with Adam's update; each part is the difference of two of those.
Then one real `fit` epoch of each (the sum should be close to it), the input pipeline alone
and one validation pass. Writes one JSON per path,
`benchmarks/results/speed/profile_ml1m_sasrec_<path>_onednn<setting>.json`;
`python benchmarks/speed.py render` puts them in SPEED.md. TensorFlow backend only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from speed import SHARED, _peak_rss_gib, _write  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sasrec")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_seqrec as ks
    from keras_seqrec.data.pipeline import as_fit_input
    from keras_seqrec.evaluation import evaluate_recommender
    from keras_seqrec.losses import SoftmaxCrossEntropy
    from keras_seqrec.models.common import SEQUENCE_OUTPUT
    from keras_seqrec.training import training_setup

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("error: the profile uses tf.GradientTape; run it on TensorFlow.")
    log = ks.datasets.read_sequences(os.path.join(args.data_dir or SHARED, "ml-1m",
                                                  "ml-1m.txt.gz"))
    data = ks.prepare(log, max_len=200)
    keras.utils.set_random_seed(0)
    model = ks.build_model(args.model, data.num_items, data.max_len)
    encoder = keras.Model(model.inputs, model.get_layer(SEQUENCE_OUTPUT).output)
    variables = model.trainable_variables
    # "fused": what fit_recommender trains (the loss computed without the logits); "logits":
    # the model's logits and SoftmaxCrossEntropy, as before the fused path existed.
    fused_model, fused_batches, fused_loss = training_setup(
        model, data, SoftmaxCrossEntropy(), batch_size=args.batch_size)
    paths = {
        "logits": (model, SoftmaxCrossEntropy(positions_per_batch=fused_loss.positions_per_batch),
                   [(x["item_ids"], y) for x, y in (fused_batches[i]
                                                    for i in range(len(fused_batches)))]),
        "fused": (fused_model, fused_loss,
                  [fused_batches[i] for i in range(len(fused_batches))]),
    }

    def functions(train_model, loss):
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(variables)

        def encode(x, y):
            return tf.reduce_sum(encoder(x["item_ids"] if isinstance(x, dict) else x,
                                         training=True))

        def forward(x, y):
            return tf.reduce_sum(train_model(x, training=True))

        def forward_loss(x, y):
            return loss(y, train_model(x, training=True))

        def backward(x, y):
            with tf.GradientTape() as tape:
                value = loss(y, train_model(x, training=True))
            return tape.gradient(value, variables)

        def step(x, y):
            optimizer.apply(backward(x, y), variables)
            return tf.constant(0.0)

        return [tf.function(f, reduce_retracing=True)
                for f in (encode, forward, forward_loss, backward, step)]

    def timed(fn, batches):
        def run():
            out = None
            for x, y in batches:
                out = fn(x, y)
            tf.nest.map_structure(lambda t: t.numpy(), out)
        run()  # trace every shape
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    weights = model.get_weights()
    fns = {name: functions(m, loss) for name, (m, loss, _) in paths.items()}
    cumulative = {name: [] for name in paths}
    for i in range(5):  # the two paths alternate, so both see the same machine
        for name in paths:
            cumulative[name].append(timed(fns[name][i], paths[name][2]))
            model.set_weights(weights)

    start = time.perf_counter()
    dataset, steps = as_fit_input(fused_batches)
    for _ in zip(range(steps), dataset):
        pass
    pipeline = time.perf_counter() - start
    fit_seconds = {}
    for name, (train_model, loss, batches) in paths.items():
        batches = fused_batches if name == "fused" else fused_batches.batches
        train_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        times = []
        for _ in range(2):  # the first epoch traces
            dataset, steps = as_fit_input(batches)
            start = time.perf_counter()
            train_model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0,
                            shuffle=False)
            times.append(time.perf_counter() - start)
        fit_seconds[name] = times[-1]
        model.set_weights(weights)
    # What fit_recommender's validation runs after each epoch (seen items excluded as the
    # ML-1M results train; no coverage lists).
    kwargs = dict(cutoffs=[10], exclude_seen=True, coverage=False)
    evaluate_recommender(model, data, "validation", **kwargs)  # trace
    start = time.perf_counter()
    evaluate_recommender(model, data, "validation", **kwargs)
    validation = time.perf_counter() - start

    positions = int(sum((y != 0).sum() for _, y in paths["fused"][2]))
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")
    for name in paths:
        c = cumulative[name]
        parts = {
            "input_pipeline": pipeline,
            "encoder_forward": c[0],
            "output_logits_forward": c[1] - c[0],
            "loss_forward": c[2] - c[1],
            "backward": c[3] - c[2],
            "optimizer": c[4] - c[3],
        }
        label = f"{name}_onednn{onednn}"
        _write(f"profile_ml1m_{args.model}_{label}", {
            "environment": "" if onednn == "default" else f"TF_ENABLE_ONEDNN_OPTS={onednn}",
            "benchmark": "profile",
            "label": label,
            "path": name,
            "model": args.model,
            "batch_size": args.batch_size,
            "steps": len(fused_batches),
            "target_positions": positions,
            "padded_positions": int(sum(y.size for _, y in paths["fused"][2])),
            "seconds": {k: round(v, 2) for k, v in parts.items()},
            "sum_of_parts_seconds": round(sum(parts.values()), 2),
            "fit_epoch_seconds": round(fit_seconds[name], 2),
            "validation_seconds": round(validation, 2),
            "validation_share_of_epoch": round(validation / fit_seconds[name], 3),
            "peak_rss_gib": round(_peak_rss_gib(), 2),
            "onednn": onednn,
            "numpy": np.__version__,
        })


if __name__ == "__main__":
    main()
