"""Speed benchmarks: training throughput, serving latency, data preparation at scale.

    python benchmarks/speed.py train [--models gru gru_attention sasrec] [--epochs 2]
    python benchmarks/speed.py serve [--model gru_attention] [--jit-compile]
    python benchmarks/speed.py session [--models gru gru_attention sasrec]
    python benchmarks/speed.py data [--interactions 20000000]
    python benchmarks/speed.py quality --dataset ml-1m [--schedule cosine]
    python benchmarks/speed.py validation [--datasets ml-1m amazon-beauty]
    python benchmarks/speed.py head
    python benchmarks/speed.py render

Each writes JSON under benchmarks/results/speed/ and re-renders benchmarks/SPEED.md, which
prints PASS/FAIL against the targets of the project (on the machine the JSON names).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "speed")
SHARED = os.path.join(HERE, "..", "..", "shared", "data")


def _machine():
    import keras

    return (f"{platform.machine()} {_cpu_name()}, {os.cpu_count()} CPU cores, keras "
            f"{keras.__version__} ({keras.backend.backend()})")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def _param(text):
    """`KEY=VALUE` as the CLI reads it (VALUE as JSON when it parses)."""
    from keras_seqrec.cli import parse_param

    return parse_param(text)


def _write(name, result):
    os.makedirs(OUT, exist_ok=True)
    script = os.path.relpath(os.path.abspath(sys.argv[0]), os.path.dirname(HERE))
    result["command"] = " ".join([f"python {script}", *sys.argv[1:]])
    result["machine"] = _machine()
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


def _fit_seconds(model, data, batch_size, epochs, jit_compile=False):
    """Seconds of each of `epochs` `fit` epochs of what `fit_recommender` trains by default
    (the fused full softmax, Adam), without validation."""
    import keras

    from keras_seqrec.data.pipeline import as_fit_input
    from keras_seqrec.losses import SoftmaxCrossEntropy
    from keras_seqrec.training import training_setup

    train_model, batches, loss = training_setup(model, data, SoftmaxCrossEntropy(),
                                                batch_size=batch_size)
    train_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss,
                        jit_compile=jit_compile)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    x, steps = as_fit_input(batches)
    train_model.fit(x, epochs=epochs, steps_per_epoch=steps, callbacks=[Timer()], verbose=2,
                    shuffle=False)
    return times


def bench_train(args):
    """Seconds per epoch and target positions per second on ML-1M (SASRec's file, max_len 200)."""
    import keras

    import keras_seqrec as ks

    log = ks.datasets.read_sequences(os.path.join(args.data_dir or SHARED, "ml-1m",
                                                  "ml-1m.txt.gz"))
    data = ks.prepare(log, max_len=200)
    inputs, targets = data.training_arrays()
    positions = int((targets != 0).sum())
    device, accelerator = "cpu", None
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0].platform
        accelerator = jax.devices()[0].device_kind if device != "cpu" else None
    # Seconds per epoch: 15 on 2 CPU cores, 0.030 on one H100 with JAX.
    target = {"sasrec": 15.0 if device == "cpu" else 0.030}
    timed = {}  # model -> seconds per epoch, this run
    if args.dtype_policy:
        keras.mixed_precision.set_global_policy(args.dtype_policy)
    for name in args.models:
        keras.utils.set_random_seed(0)
        params = {k: v for k, v in args.param if k in ks.models.hyperparameters(name)}
        model = ks.build_model(name, data.num_items, data.max_len, **params)
        times = _fit_seconds(model, data, args.batch_size, args.epochs, args.jit_compile)
        # The first epoch includes tracing; report the best later one when there is one.
        epoch_s = min(times[1:]) if len(times) > 1 else times[0]
        result = {
            "benchmark": "train_ml1m",
            "model": name,
            "device": device,
            "sequences": len(inputs),
            "target_positions": positions,
            "batch_size": args.batch_size,
            "epochs_timed": len(times),
            "seconds_per_epoch": round(epoch_s, 2),
            "first_epoch_seconds": round(times[0], 2),
            "positions_per_second": round(positions / epoch_s),
            "peak_rss_gib": round(_peak_rss_gib(), 2),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        }
        if name in target:
            result["target_seconds_per_epoch"] = target[name]
            result["pass"] = epoch_s <= target[name]
        if name == "gru_attention" and "gru" in timed:
            # Issue 23: the card's model at most 1.5 times the plain GRU, same machine and run.
            result["ratio_to_gru"] = round(epoch_s / timed["gru"], 2)
            result["target_ratio_to_gru"] = 1.5
            result["pass"] = result["ratio_to_gru"] <= 1.5
        timed[name] = epoch_s
        if params:
            result["hyperparameters"] = params
        if accelerator:
            result["accelerator"] = accelerator
        if args.dtype_policy:
            result["dtype_policy"] = args.dtype_policy
        if args.jit_compile:
            result["jit_compile"] = True
        _write(f"train_ml1m_{name}_{device}" + (f"_{args.tag}" if args.tag else ""), result)


def bench_distribution(args):
    """Seconds per epoch of data-parallel training over 1, 2 and 4 devices (JAX): on a CPU
    these are virtual devices sharing the same cores, so this measures the overhead of the
    distribution itself, not a speed-up."""
    import subprocess

    script = f"""
import json, os, sys, time
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import keras, jax
import keras_seqrec as ks
from speed import _fit_seconds
data = ks.prepare(ks.datasets.load("ml-latest-small"), max_len=50, min_rating=3,
                  min_user_interactions=5, min_item_interactions=5)
count = len(jax.devices())
with (ks.distribution.data_parallel().scope() if count > 1 else __import__("contextlib").nullcontext()):
    keras.utils.set_random_seed(0)
    model = ks.build_model({args.model!r}, data.num_items, data.max_len)
    times = _fit_seconds(model, data, {args.batch_size}, {args.epochs})
print(json.dumps({{"devices": count, "platform": jax.devices()[0].platform,
                  "seconds_per_epoch": round(min(times[1:]), 2),
                  "first_epoch_seconds": round(times[0], 2)}}))
"""
    rows = []
    for count in args.devices:
        env = dict(os.environ, KERAS_BACKEND="jax",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={count}")
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        rows[-1]["relative_to_one_device"] = round(
            rows[-1]["seconds_per_epoch"] / rows[0]["seconds_per_epoch"], 2)
    _write(f"distribution_{rows[0]['platform']}_{args.model}", {
        "benchmark": "distribution",
        "model": args.model,
        "dataset": "ml-latest-small",
        "batch_size": args.batch_size,
        "backend": "jax",
        "layout": "data parallel (keras.distribution.DataParallel)",
        "runs": rows,
        "note": "virtual CPU devices share the same cores: the overhead of distributing, "
                "not a speed-up" if rows[0]["platform"] == "cpu" else "",
    })


def _latencies_ms(call, requests):
    """Milliseconds of `requests` calls of `call()` after 50 warm-up calls."""
    for _ in range(50):
        call()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _percentiles(times):
    import numpy as np

    p50, p99 = np.percentile(times, [50, 99])
    return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3)}


def bench_serve(args):
    """Latency of one request (history of 50, top-10) and throughput at batch 256."""
    import numpy as np
    import tensorflow as tf

    import keras_seqrec as ks
    from keras_seqrec.export import export_saved_model

    log = ks.datasets.load("ml-latest-small")
    data = ks.prepare(log, max_len=50, min_rating=3, min_user_interactions=5,
                      min_item_interactions=5)
    model = ks.build_model(args.model, data.num_items, data.max_len)
    root = tempfile.mkdtemp()
    path = export_saved_model(model, data.vocabulary, root, top_k=10,
                              item_counts=data.item_counts(), jit_compile=args.jit_compile)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    rng = np.random.default_rng(0)
    ids = np.array([str(i) for i in data.vocabulary.ids])
    single = tf.constant(rng.choice(ids, size=(1, 50)))
    batch = tf.constant(rng.choice(ids, size=(256, 50)))
    for _ in range(50):
        serve(history=batch)
    latency = _percentiles(
        _latencies_ms(lambda: serve(history=single)["item_ids"].numpy(), args.requests))
    start = time.perf_counter()
    rounds = 40
    for _ in range(rounds):
        serve(history=batch)["item_ids"].numpy()
    throughput = rounds * 256 / (time.perf_counter() - start)
    _write(f"serve_{args.model}_cpu" + ("_xla" if args.jit_compile else ""), {
        "benchmark": "serving",
        "model": args.model,
        "jit_compile": args.jit_compile,
        "num_items": data.num_items,
        "history_length": 50,
        "top_k": 10,
        "requests": args.requests,
        **latency,
        "target_p99_ms": 5.0,
        "batch_256_recommendations_per_second": round(throughput),
        "target_recommendations_per_second": 5000,
        "pass": bool(latency["p99_ms"] <= 5.0 and throughput >= 5000),
        "threads": "TensorFlow defaults (inter/intra op = all cores)",
    })


def bench_session(args):
    """One-event session updates against full-history requests, and the explain signature.

    ML-1M-sized catalogue (ml-1m's items when the file is there, else ml-latest-small's),
    max_len 200, untrained weights (latency does not depend on them), single requests on the
    CPU cores there are: `session_step` after 10 and after 200 events, `serving_default` on
    the same histories, and `explain` on a 50-item history."""
    import numpy as np
    import tensorflow as tf

    import keras_seqrec as ks
    from keras_seqrec.export import export_saved_model

    from run import DATASETS, load  # the accuracy benchmark's files and preparation

    dataset = "ml-1m" if os.path.exists(os.path.join(SHARED, "ml-1m")) else "ml-latest-small"
    data = ks.prepare(load(dataset, None), **DATASETS[dataset])
    ids = np.array([str(i) for i in data.vocabulary.ids])
    rng = np.random.default_rng(0)
    for name in args.models:
        model = ks.build_model(name, data.num_items, 200)
        path = export_saved_model(model, data.vocabulary, tempfile.mkdtemp(), top_k=10,
                                  item_counts=data.item_counts())
        loaded = tf.saved_model.load(path)
        serve, explain = loaded.signatures["serving_default"], loaded.signatures["explain"]
        result = {"benchmark": "session", "model": name, "dataset": dataset,
                  "num_items": data.num_items, "max_len": 200, "top_k": 10,
                  "requests": args.requests,
                  "explanation": "attention" if name == "gru_attention" else "leave_one_out"}
        history = rng.choice(ids, size=(1, 200))
        for length in (10, 200):
            full = tf.constant(history[:, :length])
            result[f"full_history_{length}"] = _percentiles(
                _latencies_ms(lambda: serve(history=full)["item_ids"].numpy(), args.requests))
            if "session_step" not in loaded.signatures:
                continue
            started = loaded.signatures["session_start"](history=full)
            step = loaded.signatures["session_step"]
            event = tf.constant([history[0, -1]])
            result[f"session_step_after_{length}"] = _percentiles(_latencies_ms(
                lambda: step(state=started["state"], seen=started["seen"],
                             item_id=event)["item_ids"].numpy(), args.requests))
        fifty = tf.constant(history[:, :50])
        result["explain_50"] = _percentiles(
            _latencies_ms(lambda: explain(history=fifty)["weights"].numpy(), args.requests))
        if "session_step_after_10" in result:
            short, long = result["session_step_after_10"], result["session_step_after_200"]
            result["target_p99_ms"] = 2.0
            result["pass"] = bool(max(short["p99_ms"], long["p99_ms"]) <= 2.0)
        _write(f"session_{name}_cpu", result)


def _synthetic_log(path, n, chunk=10_000_000):
    """Write `n` synthetic long-tailed interactions to Parquet, `chunk` rows at a time (never
    whole in memory); an existing file with `n` rows is reused."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if os.path.exists(path) and pq.ParquetFile(path).metadata.num_rows == n:
        return
    rng = np.random.default_rng(0)
    num_users, num_items = n // 100, 200_000
    # Zipf-like items (a few blockbusters, a long tail) and users with skewed activity.
    items = np.cumsum(1.0 / np.arange(1, num_items + 1) ** 0.9)
    users = np.cumsum(rng.pareto(1.5, num_users) + 1)
    schema = pa.schema([("user", pa.int64()), ("item", pa.int64()), ("timestamp", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            writer.write_table(pa.table({
                "user": np.searchsorted(users, rng.random(size) * users[-1]).astype(np.int64),
                "item": np.searchsorted(items, rng.random(size) * items[-1]).astype(np.int64),
                "timestamp": rng.integers(1_500_000_000, 1_700_000_000, size=size),
            }, schema=schema), row_group_size=1_000_000)


def bench_data(args):
    """Read (Parquet), 5-core filter and leave-one-out split a synthetic long-tailed log: in
    memory (`prepare`) or out of core (`prepare_parquet`, DuckDB)."""
    import keras_seqrec as ks
    from keras_seqrec.data.out_of_core import prepare_parquet

    n = args.interactions
    folder = args.cache or tempfile.mkdtemp()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"synthetic_{n}.parquet")
    made = time.perf_counter()
    _synthetic_log(path, n)
    made = time.perf_counter() - made
    base = _peak_rss_gib()
    settings = dict(max_len=50, min_user_interactions=5, min_item_interactions=5)
    start = time.perf_counter()
    if args.out_of_core:
        data = prepare_parquet(path, memory_limit=args.memory_limit, **settings)
    else:
        log = ks.datasets.read_log(path)
        loaded = time.perf_counter()
        data = ks.prepare(log, **settings)
    done = time.perf_counter()
    seconds = done - start
    peak = _peak_rss_gib()
    target_seconds, target_rss = (600, 8.0) if args.out_of_core else (60, 6.0)
    millions = f"{n / 1e6:g}m"
    _write(f"data_out_of_core_{millions}" if args.out_of_core else f"data_{millions}", {
        "benchmark": "data",
        "path": "out of core (prepare_parquet, DuckDB)" if args.out_of_core
                else "in memory (read_log + prepare)",
        **({"duckdb_memory_limit": args.memory_limit} if args.out_of_core else {}),
        "interactions": n,
        "parquet_gib": round(os.path.getsize(path) / 2 ** 30, 2),
        "generation_seconds": round(made, 1),
        "after_filtering": data.describe()["filtered"],
        "split": data.describe()["split"],
        **({} if args.out_of_core else {"load_seconds": round(loaded - start, 1),
                                          "prepare_seconds": round(done - loaded, 1)}),
        "total_seconds": round(seconds, 1),
        "target_seconds": target_seconds,
        "peak_rss_gib": round(peak, 2),
        "peak_rss_before_loading_gib": round(base, 2),
        "target_peak_rss_gib": target_rss,
        "pass": bool(seconds <= target_seconds and peak <= target_rss),
    })
    if not args.cache:
        os.remove(path)


# Time to quality: SASRec on 2 CPU cores, wall clock including validation. Settings are those
# of the committed accuracy results (benchmarks/results/<dataset>/sasrec_exclude_seen*.json).
QUALITY = {
    "ml-1m": dict(minutes=20.0, test_ndcg10=0.180, dropout=0.2),
    "amazon-beauty": dict(minutes=8.0, test_ndcg10=0.055, dropout=0.5),
}


def bench_quality(args):
    """SASRec trained within the target's wall-clock budget, then tested (seen items excluded).

    The budget covers preparing the data, every epoch with its validation, restoring the best
    epoch and the test evaluation; the best epoch is chosen on validation only. "cosine"
    anneals the learning rate over the budget itself (budgeted training: the schedule ends
    when the time does, not after a number of epochs fixed in advance)."""
    import keras

    import keras_seqrec as ks
    from keras_seqrec.evaluation import evaluate_recommender
    from keras_seqrec.training import build_and_fit

    from run import DATASETS, load  # the accuracy benchmark's files and preparation

    spec = QUALITY[args.dataset]
    seconds = spec["minutes"] * 60
    start = time.perf_counter()
    data = ks.prepare(load(args.dataset, args.data_dir), **DATASETS[args.dataset])

    class EpochEnds(keras.callbacks.Callback):  # wall clock since the start, per epoch
        ends = []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(round(time.perf_counter() - start, 1))

    # What a user gets from `keras-seqrec train --lr-schedule ... --time-limit ...`: no epoch
    # starts that would end after the limit; `reserve` seconds are left for the test below.
    loss = ("softmax" if args.num_negatives is None
            else ks.losses.get_loss("sampled_softmax", num_negatives=args.num_negatives))
    model, history = build_and_fit(
        "sasrec", data, {"dropout": spec["dropout"]}, seed=0,
        epochs=1000, batch_size=args.batch_size, learning_rate=args.learning_rate, loss=loss,
        learning_rate_schedule=args.schedule, plateau_patience=args.plateau,
        early_stopping_patience=1000, exclude_seen=True, callbacks=[EpochEnds()], verbose=2,
        time_limit=seconds - (time.perf_counter() - start) - args.reserve)
    test = evaluate_recommender(model, data, "test", cutoffs=(10,), exclude_seen=True,
                                standard_errors=True)
    wall = time.perf_counter() - start
    ndcg = test["ndcg@10"]
    sampled = "" if args.num_negatives is None else f"_sampled{args.num_negatives}"
    _write(f"quality_{args.dataset}_sasrec_{args.schedule}_lr{args.learning_rate:g}{sampled}", {
        "benchmark": "time_to_quality",
        "dataset": args.dataset,
        "model": "sasrec",
        "schedule": args.schedule,
        **({"plateau_patience": args.plateau} if args.schedule == "plateau" else {}),
        "learning_rate": args.learning_rate,
        "loss": ("full softmax" if args.num_negatives is None
                 else f"sampled softmax, {args.num_negatives} negatives"),
        "batch_size": args.batch_size,
        "dropout": spec["dropout"],
        "max_len": data.max_len,
        "epochs": len(history.history["loss"]),
        "best_epoch": history.best_epoch + 1,
        "validation_ndcg@10_per_epoch": [round(v, 5) for v in history.history["val_ndcg@10"]],
        "seconds_at_epoch_end": EpochEnds.ends,
        "stopped_by": history.stopped_by,
        "seconds_per_epoch": round(history.seconds_per_epoch, 2),
        "wall_seconds": round(wall, 1),
        "target_minutes": spec["minutes"],
        "test_ndcg@10": round(ndcg, 5),
        "test_ndcg@10_se": round(test["ndcg@10_se"], 5),
        "test_hr@10": round(test["hr@10"], 5),
        "target_test_ndcg@10": spec["test_ndcg10"],
        "pass": bool(ndcg >= spec["test_ndcg10"] and wall <= seconds),
    })


_PARTS = {
    "input_pipeline": "input pipeline (batches from NumPy)",
    "encoder_forward": "encoder forward (to hidden states)",
    "output_logits_forward": "output head forward (catalogue logits; fused: + cross-entropy)",
    "loss_forward": "loss forward",
    "backward": "backward (all gradients)",
    "optimizer": "optimizer (Adam update)",
}


def bench_head(args):
    """The fused full-softmax loss alone (`softmax_cross_entropy_rows`), forward and backward,
    on 8,192 rows against ML-1M's 3,417 items (width 64): float32 products in blocks of 512
    rows (the default) against bfloat16 products and other block sizes, with each variant's
    largest gradient error relative to the default. TensorFlow backend (GradientTape)."""
    import numpy as np
    import tensorflow as tf

    from keras_seqrec.layers.item_embedding import softmax_cross_entropy_rows

    rng = np.random.default_rng(0)
    n, items, width = 8192, 3417, 64
    hidden = tf.Variable(rng.normal(0, 0.5, (n, width)).astype("float32"))
    kernel = tf.Variable(rng.normal(0, 0.5, (items + 1, width)).astype("float32"))
    bias = tf.Variable(rng.normal(0, 1, items + 1).astype("float32"))
    targets = rng.integers(1, items + 1, n)
    targets[rng.random(n) < 0.1] = 0  # some padded targets, as in real batches
    targets = tf.constant(targets, tf.int32)

    def step_for(**kwargs):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(softmax_cross_entropy_rows(hidden, kernel, bias, targets,
                                                                **kwargs))
            return loss, [tf.convert_to_tensor(g)
                          for g in tape.gradient(loss, [hidden, kernel, bias])]
        return step

    variants = [("float32, blocks of 512 (default)", {})]
    variants += [("bfloat16 products, blocks of 512", {"matmul_dtype": "bfloat16"})]
    variants += [(f"float32, blocks of {c}", {"chunk_size": c}) for c in (128, 256, 1024)]
    _, reference = step_for()()
    rows = []
    for rnd in range(args.rounds):  # alternating rounds: every variant sees the same machine
        for i, (label, kwargs) in enumerate(variants):
            step = step_for(**kwargs)
            _, grads = step()
            start = time.perf_counter()
            for _ in range(5):
                loss, _ = step()
            float(loss)
            ms = (time.perf_counter() - start) / 5 * 1000
            error = max(float(tf.reduce_max(tf.abs(g - r)) / tf.reduce_max(tf.abs(r)))
                        for g, r in zip(grads, reference))
            if rnd == 0:
                rows.append({"variant": label, **kwargs, "ms": [], "gradient_error": error})
            rows[i]["ms"].append(round(ms, 1))
    for row in rows:
        row["best_ms"] = min(row["ms"])
    _write("head_fused_softmax_cpu", {
        "benchmark": "head",
        "rows": n,
        "num_items": items,
        "width": width,
        "variants": rows,
    })


def bench_validation(args):
    """One validation pass against one SASRec training epoch (issue 20: <= 10% of it).

    The pass is what `fit_recommender` runs after every epoch (full ranking, seen items
    excluded as the benchmarks train, batches of 256 sorted by history length, HR/NDCG/MRR
    without coverage's top-K lists), timed with
    the ranks computed on the device and, for comparison, with the scores ranked by NumPy on
    the host (`KerasScorer(rank_on_device=False)`, the path before); both give equal ranks.
    The epoch is the second of two `fit` epochs (the first traces)."""
    import keras
    import numpy as np

    import keras_seqrec as ks
    from keras_seqrec.evaluation import KerasScorer, evaluate_recommender

    from run import DATASETS, load

    for name in args.datasets:
        data = ks.prepare(load(name, args.data_dir), **DATASETS[name])
        keras.utils.set_random_seed(0)
        model = ks.build_model("sasrec", data.num_items, data.max_len,
                               dropout=QUALITY[name]["dropout"])
        times = _fit_seconds(model, data, args.batch_size, epochs=2)
        passes, ranks = {}, {}
        for path in ("device", "host"):
            scorer = KerasScorer(model, rank_on_device=path == "device")
            seconds = []
            for _ in range(args.repeats + 1):  # the first pass traces
                start = time.perf_counter()
                _, ranks[path] = evaluate_recommender(scorer, data, "validation", cutoffs=(10,),
                                                      exclude_seen=True, return_ranks=True,
                                                      coverage=False)
                seconds.append(time.perf_counter() - start)
            passes[path] = float(np.median(seconds[1:]))
        share = passes["device"] / times[1]
        _write(f"validation_{name}_sasrec", {
            "benchmark": "validation",
            "dataset": name,
            "model": "sasrec",
            "validation_examples": len(data.validation),
            "num_items": data.num_items,
            "epoch_seconds": round(times[1], 2),
            "validation_seconds_device": round(passes["device"], 2),
            "validation_seconds_host": round(passes["host"], 2),
            "equal_ranks": bool(np.array_equal(ranks["device"], ranks["host"])),
            "share_of_epoch": round(share, 4),
            "target_share": 0.10,
            "pass": share <= 0.10,
        })


def _quality_note(rows):
    """Per dataset: the time-to-quality runs side by side and the one validation prefers."""
    runs = [r for r in rows if r["benchmark"] == "time_to_quality"]
    lines = []
    for dataset in sorted({r["dataset"] for r in runs}):
        mine = sorted((r for r in runs if r["dataset"] == dataset),
                      key=lambda r: -max(r["validation_ndcg@10_per_epoch"]))
        parts = []
        for r in mine:
            epochs = r["seconds_at_epoch_end"]
            per_epoch = (epochs[-1] - epochs[0]) / max(len(epochs) - 1, 1)
            parts.append(
                f"{r['loss']}, {r['schedule']}, lr {r['learning_rate']:g}: best validation "
                f"{max(r['validation_ndcg@10_per_epoch']):.4f} in {r['epochs']} epochs of "
                f"{per_epoch:.0f} s with validation ({r['seconds_per_epoch']:.0f} s training), "
                f"test {r['test_ndcg@10']:.4f} +- {r['test_ndcg@10_se']:.4f}")
        lines += ["", f"Time to quality on {dataset} (budget {mine[0]['target_minutes']:g} min; "
                  f"ordered by best validation NDCG@10, the first is the one validation "
                  f"chooses): " + "; ".join(parts) + "."]
    return lines


def _profile_table(profiles):
    """One column per profile (before / after): seconds of each part of one epoch."""
    if not profiles:
        return []
    kernels = {"0": "oneDNN off", "1": "oneDNN on", "default": "TensorFlow's kernels"}
    profiles = sorted(profiles, key=lambda r: (r["onednn"], r["path"] == "fused"))
    head = " | ".join(f"{r['path']}, {kernels.get(r['onednn'], r['onednn'])} (s)"
                      for r in profiles)
    lines = ["", f"Where one epoch goes: {profiles[0]['model']}, ML-1M, max_len 200, batch "
             f"{profiles[0]['batch_size']}, full softmax, "
             f"{profiles[0]['target_positions']:,} target positions "
             "(`benchmarks/profile_epoch.py`; parts are differences of cumulative timings; "
             "\"logits\" is how every epoch was trained before, \"fused\" what "
             "`fit_recommender` trains now; the two alternate within one process):",
             "", f"| part | {head} |", "|---|" + "---|" * len(profiles)]
    for key, name in _PARTS.items():
        lines.append(f"| {name} | " + " | ".join(
            str(r["seconds"].get(key, "-")) for r in profiles) + " |")
    for key, name in (("sum_of_parts_seconds", "**sum of the parts**"),
                      ("fit_epoch_seconds", "**one `fit` epoch, measured**"),
                      ("validation_seconds", "validation pass (6,040 users, full ranking, "
                                             "seen excluded)")):
        lines.append(f"| {name} | " + " | ".join(str(r[key]) for r in profiles) + " |")
    lines.append("| validation / epoch | " + " | ".join(
        f"{r['validation_share_of_epoch']:.0%}" for r in profiles) + " |")
    lines += ["", "Each part is the difference of two timed passes over the epoch, so a small "
              "part can come out negative when the machine's noise exceeds it; the sum (the "
              "whole training step) is the reliable figure, and one `fit` epoch should be "
              "close to it. An earlier run (`results/speed/earlier/`) measured three of its "
              "four `fit` epochs at 141.9 s whatever the path: tf.data's autotuning thread made "
              "destroying the input iterator at the end of each `fit` call wait 6-50 s "
              "(py-spy showed the wait in `~IteratorResource`). `as_fit_input` switches "
              "autotuning off since; a training run paid it once, a benchmark timing "
              "one-epoch `fit` calls paid it every time.",
              "", "Read the columns of one process side by side: the two paths alternate within "
              "it. Across processes and sessions this shared 2-core machine's speed varies "
              "(the same code took 38.1, 70.3 and 99.8 s per ML-1M SASRec epoch on the machines "
              "of earlier sessions, `results/speed/earlier/`), so compare only figures measured "
              "together."]
    return lines


def render(_args=None):
    rows = []
    for path in sorted(glob.glob(os.path.join(OUT, "*.json"))):
        with open(path) as f:
            rows.append(json.load(f))
    lines = ["# Speed benchmarks", "",
             "Generated by `python benchmarks/speed.py render` from "
             "`benchmarks/results/speed/*.json`; do not edit by hand. Each row names the "
             "machine it ran on; figures from earlier sessions' machines (an AMD EPYC about "
             "three times slower per epoch) are kept in `results/speed/earlier/` and not shown.",
             "",
             "| benchmark | what | measured | target | result | machine |",
             "|---|---|---|---|---|---|"]
    profiles = [r for r in rows if r["benchmark"] == "profile"]
    rows = [r for r in rows if r["benchmark"] != "profile"]
    for r in rows:
        verdict = {True: "PASS", False: "FAIL"}.get(r.get("pass"), "-")
        if r["benchmark"] == "train_ml1m":
            what = (f"{r['model']} training on {r.get('accelerator', r['device'])}, ML-1M, "
                    "max_len 200, "
                    f"batch {r['batch_size']}"
                    + "".join(f", {k}={v}" for k, v in r.get("hyperparameters", {}).items())
                    + (f", dtype policy {r['dtype_policy']}" if "dtype_policy" in r else "")
                    + (", whole step compiled with XLA" if r.get("jit_compile") else ""))
            measured = (f"{r['seconds_per_epoch']} s/epoch, "
                        f"{r['positions_per_second']:,} positions/s, process peak RSS "
                        f"{r['peak_rss_gib']} GiB")
            goal = (f"<= {r['target_seconds_per_epoch']} s/epoch"
                    if "target_seconds_per_epoch" in r else "-")
            if "ratio_to_gru" in r:
                measured += f"; {r['ratio_to_gru']}x gru's epoch in the same run"
                goal = f"<= {r['target_ratio_to_gru']}x gru's epoch"
        elif r["benchmark"] == "serving":
            what = (f"{r['model']} SavedModel, history 50, top-10"
                    + (", `jit_compile=True` (XLA)" if r.get("jit_compile") else ""))
            measured = (f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; batch 256: "
                        f"{r['batch_256_recommendations_per_second']:,} recs/s")
            goal = "p99 <= 5 ms, >= 5,000 recs/s"
        elif r["benchmark"] == "session":
            what = (f"{r['model']} SavedModel, one request, {r['num_items']:,} items, max_len "
                    f"{r['max_len']}, top-10")
            parts = []
            for key, label in (("session_step_after_10", "session_step after 10 events"),
                               ("session_step_after_200", "after 200"),
                               ("full_history_10", "serving_default history 10"),
                               ("full_history_200", "history 200")):
                if key in r:
                    parts.append(f"{label}: p50 {r[key]['p50_ms']} / p99 {r[key]['p99_ms']} ms")
            parts.append(f"explain ({r['explanation'].replace('_', '-')}) history 50: p50 "
                         f"{r['explain_50']['p50_ms']} / p99 {r['explain_50']['p99_ms']} ms")
            measured = "; ".join(parts)
            goal = ("session_step p99 <= 2 ms after 10 and 200 events"
                    if "target_p99_ms" in r else "reported (no session state: self-attention)")
        elif r["benchmark"] == "data":
            what = (f"read + 5-core + split, {r['interactions']:,} interactions, "
                    f"{r.get('path', 'in memory')}")
            measured = f"{r['total_seconds']} s, peak RSS {r['peak_rss_gib']} GiB"
            goal = f"<= {r['target_seconds']} s, <= {r['target_peak_rss_gib']:g} GiB"
        elif r["benchmark"] == "time_to_quality":
            what = (f"{r['model']} time to quality, {r['dataset']}, {r['loss']}, "
                    f"{r['schedule']} schedule, lr {r['learning_rate']:g}, wall clock incl. "
                    "validation")
            measured = (f"test NDCG@10 {r['test_ndcg@10']:.4f} +- {r['test_ndcg@10_se']:.4f} "
                        f"after {r['wall_seconds'] / 60:.1f} min ({r['epochs']} epochs)")
            goal = f">= {r['target_test_ndcg@10']} in <= {r['target_minutes']:g} min"
        elif r["benchmark"] == "peer":
            rb, us = r["recbole"], r["ours"]
            what = (f"{r['peer']} vs ours, Amazon Beauty, same settings, one invocation, "
                    f"{r['epochs']} epochs")
            rb_train = sum(rb["training_seconds_per_epoch"]) / r["epochs"]
            reach = (f"ours reached it in {us['seconds_to_recbole_best']} s"
                     if us["seconds_to_recbole_best"] is not None else "ours did not reach it")
            measured = (f"RecBole {rb_train:.1f} s/epoch training, ours "
                        f"{us['seconds_per_epoch']} s: {r['training_speed_ratio']}x; RecBole "
                        f"best val NDCG@10 {rb['best_validation_ndcg@10']:.4f} after "
                        f"{r['recbole_wall_seconds']} s, {reach}")
            goal = ">= 10x per epoch and faster to RecBole's best"
        elif r["benchmark"] == "head":
            what = (f"fused full-softmax loss, forward + backward, {r['rows']:,} rows x "
                    f"{r['num_items']:,} items, width {r['width']}")
            measured = "; ".join(
                f"{v['variant']}: {v['best_ms']} ms"
                + (f" (gradients off by {v['gradient_error']:.0e} relative)"
                   if v["gradient_error"] > 1e-5 else "") for v in r["variants"])
            goal = "reported"
        elif r["benchmark"] == "distribution":
            what = (f"{r['model']} data-parallel training, {r['backend']}, {r['dataset']}, "
                    f"batch {r['batch_size']}, devices "
                    f"{'/'.join(str(x['devices']) for x in r['runs'])}"
                    + (" (virtual CPU devices on the same cores)"
                       if r["runs"][0]["platform"] == "cpu" else ""))
            measured = ", ".join(f"{x['devices']}: {x['seconds_per_epoch']} s/epoch "
                                 f"({x['relative_to_one_device']}x)" for x in r["runs"])
            goal = "reported"
        elif r["benchmark"] == "validation":
            what = (f"{r['model']} validation pass (full ranking of {r['num_items']:,} items, "
                    f"{r['validation_examples']:,} users, seen excluded) vs one training "
                    f"epoch, {r['dataset']}")
            measured = (f"ranked on the device {r['validation_seconds_device']} s (on the host "
                        f"{r['validation_seconds_host']} s), epoch {r['epoch_seconds']} s: "
                        f"{100 * r['share_of_epoch']:.1f}%")
            goal = f"<= {100 * r['target_share']:.0f}% of an epoch"
        else:
            what = (f"{r['model']} sampled softmax ({r['num_negatives']:,} negatives), "
                    f"{r['num_items']:,} items, batch {r['batch_size']}, max_len "
                    f"{r['max_len']}")
            measured = f"training peak RSS {r['peak_rss_gib']} GiB"
            if "seconds" in r and "steps" in r:
                measured += f", {r['seconds'] / r['steps']:.1f} s/step"
            if "model_weights_gib" in r:
                measured += (f" (weights {r['model_weights_gib']} GiB, Adam's state "
                             f"{r['adam_state_gib']} GiB)")
            serving = r.get("serving")
            if serving:
                measured += (f"; export: process peak {serving['peak_rss_after_export_gib']} "
                             f"GiB, SavedModel {serving['saved_model_gib']} GiB; one request "
                             f"(history 50, top-10 of the whole catalogue): p50 "
                             f"{serving['p50_ms']} ms, p99 {serving['p99_ms']} ms")
            goal = (f"< {r['target_peak_rss_gib']} GiB" if "target_peak_rss_gib" in r
                    else "reported")
        lines.append(f"| {r['benchmark']} | {what} | {measured} | {goal} | {verdict} | "
                     f"{r['machine']} |")
    if not any(r["benchmark"] == "train_ml1m" and r.get("device") == "gpu" for r in rows):
        lines.append("| train_ml1m | sasrec training on GPU (JAX), ML-1M, max_len 200 | not "
                     "measured: no GPU was lent to the session that produced these files | "
                     "<= 30 ms/epoch | - | run `bash benchmarks/gpu_sasrec.sh` on one (its "
                     "header says how to prepare the call) |")
    lines += ["", "What limits the rows that FAIL, and what was tried against them, is in the "
              "README's Speed section."]
    lines += _quality_note(rows)
    lines += _profile_table(profiles)
    commands = {" ".join(filter(None, [r.get("environment"), r["command"].strip()]))
                for r in rows + profiles}
    lines += ["", "Commands:", ""] + [f"    {c}" for c in sorted(commands)]
    with open(os.path.join(HERE, "SPEED.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("--models", nargs="+", default=["gru", "gru_attention", "sasrec"])
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                   help="a model hyperparameter, given to each model that has it (repeatable)")
    t.add_argument("--dtype-policy", default=None,
                   help="a Keras dtype policy for the models, e.g. mixed_bfloat16")
    t.add_argument("--jit-compile", action="store_true",
                   help="compile the training step with XLA (jit_compile=True)")
    t.add_argument("--tag", default="", help="suffix of the result files' names")
    t.add_argument("--data-dir", default=None)
    t.set_defaults(func=bench_train)
    s = sub.add_parser("serve")
    s.add_argument("--model", default="gru_attention")
    s.add_argument("--requests", type=int, default=1000)
    s.add_argument("--jit-compile", action="store_true",
                   help="export with jit_compile=True (XLA) and write serve_<model>_cpu_xla")
    s.set_defaults(func=bench_serve)
    e = sub.add_parser("session")
    e.add_argument("--models", nargs="+", default=["gru", "gru_attention", "sasrec"])
    e.add_argument("--requests", type=int, default=1000)
    e.set_defaults(func=bench_session)
    d = sub.add_parser("data")
    d.add_argument("--interactions", type=int, default=20_000_000)
    d.add_argument("--out-of-core", action="store_true",
                   help="prepare through DuckDB (prepare_parquet) instead of in memory")
    d.add_argument("--memory-limit", default="3GB", help="DuckDB's memory limit (out of core)")
    d.add_argument("--cache", default=None,
                   help="folder keeping the generated Parquet log between runs")
    d.set_defaults(func=bench_data)
    g = sub.add_parser("distribution")
    g.add_argument("--model", default="sasrec")
    g.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--batch-size", type=int, default=128)
    g.set_defaults(func=bench_distribution)
    q = sub.add_parser("quality")
    q.add_argument("--dataset", default="ml-1m", choices=sorted(QUALITY))
    q.add_argument("--schedule", default="plateau", choices=("plateau", "cosine"),
                   help="halve the rate when validation stalls, or anneal it over the budget")
    q.add_argument("--learning-rate", type=float, default=2e-3)
    q.add_argument("--plateau", type=int, default=2, help="epochs before halving (plateau)")
    q.add_argument("--batch-size", type=int, default=128)
    q.add_argument("--num-negatives", type=int, default=None,
                   help="train with the sampled softmax (this many shared negatives) instead "
                        "of the full softmax")
    q.add_argument("--reserve", type=float, default=20.0,
                   help="seconds kept for restoring the best epoch and testing")
    q.add_argument("--data-dir", default=None)
    q.set_defaults(func=bench_quality)
    h = sub.add_parser("head")
    h.add_argument("--rounds", type=int, default=2)
    h.set_defaults(func=bench_head)
    v = sub.add_parser("validation")
    v.add_argument("--datasets", nargs="+", default=["ml-1m", "amazon-beauty"],
                   choices=sorted(QUALITY))
    v.add_argument("--batch-size", type=int, default=128)
    v.add_argument("--repeats", type=int, default=3, help="timed passes per path (median)")
    v.add_argument("--data-dir", default=None)
    v.set_defaults(func=bench_validation)
    r = sub.add_parser("render")
    r.set_defaults(func=render)
    args = p.parse_args(argv)
    args.func(args)
    if args.what != "render":
        render()


if __name__ == "__main__":
    main()
