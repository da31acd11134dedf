"""Peak memory of sampled-softmax training on a synthetic 1,000,000-item catalogue (or
10,000,000 with `--num-items`), and the served request's latency of that catalogue.

    python benchmarks/sampled_memory.py [--model sasrec] [--steps 30]
    python benchmarks/sampled_memory.py --num-items 10000000 --steps 10
    python benchmarks/sampled_memory.py --num-items 10000000 --serve

Trains with `SampledSoftmax` (shared popularity-sampled negatives, log-Q correction) at
batch 256, max_len 50 on a long-tailed (Zipf) synthetic log, and records peak RSS next to the
memory a full-softmax step would need for its logits alone. With `--serve` it instead builds
the same model in a fresh process, exports its SavedModel and times single requests (history
50, top-10, whole catalogue ranked), recording that process's peak RSS at each stage; the
figures join the training ones in benchmarks/results/speed/sampled_softmax_<N>m.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Run in a fresh process: export an untrained model of the same shape (latency does not
# depend on the weights' values), load the SavedModel, time single requests, report the
# process's peak RSS. Training's optimizer state is not in this process.
SERVE = """
import json, os, resource, sys, tempfile, time
import numpy as np
import tensorflow as tf
import keras_seqrec as ks
from keras_seqrec.export import export_saved_model
model_name, items, max_len, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def peak():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)
model = ks.build_model(model_name, items, max_len)
built = peak()
start = time.perf_counter()
path = export_saved_model(model, ks.Vocabulary(np.arange(1, items + 1)), tempfile.mkdtemp(),
                          top_k=10, item_counts=np.r_[0, np.ones(items, np.int64)])
exported, exported_peak = time.perf_counter() - start, peak()
del model
start = time.perf_counter()
serve = tf.saved_model.load(path).signatures["serving_default"]
loaded = time.perf_counter() - start
ids = [str(i) for i in range(1, 100001)]  # raw ids are 1..num_items; the popular head
rng = np.random.default_rng(0)
histories = [tf.constant([list(rng.choice(ids, size=50))]) for _ in range(requests + 20)]
for h in histories[:20]:
    serve(history=h)["item_ids"].numpy()
times = []
for h in histories[20:]:
    t = time.perf_counter()
    serve(history=h)["item_ids"].numpy()
    times.append((time.perf_counter() - t) * 1000)
p50, p99 = np.percentile(times, [50, 99])
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
print(json.dumps({"peak_rss_after_build_gib": built, "export_seconds": round(exported, 1),
                  "peak_rss_after_export_gib": exported_peak,
                  "saved_model_gib": round(size / 1024 ** 3, 2),
                  "load_seconds": round(loaded, 1), "p50_ms": round(float(p50), 1),
                  "p99_ms": round(float(p99), 1), "requests": requests,
                  "peak_rss_gib": peak()}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sasrec")
    p.add_argument("--num-items", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--num-negatives", type=int, default=1024)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--serve", action="store_true",
                   help="instead of training: export the model's SavedModel and time single "
                        "requests in a fresh process")
    p.add_argument("--requests", type=int, default=200)
    args = p.parse_args(argv)
    millions = f"{args.num_items / 1e6:g}m"
    out = os.path.join(HERE, "results", "speed", f"sampled_softmax_{millions}.json")
    if args.serve:
        done = subprocess.run([sys.executable, "-c", SERVE, args.model, str(args.num_items),
                               str(args.max_len), str(args.requests)],
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"The serving process failed:\n{done.stderr[-3000:]}")
        result = {}
        if os.path.exists(out):
            with open(out) as f:
                result = json.load(f)
        result["serving"] = json.loads(done.stdout.strip().splitlines()[-1])
        result["serving"]["command"] = " ".join(["python benchmarks/sampled_memory.py",
                                                 *sys.argv[1:]])
        with open(out, "w") as f:
            json.dump(result, f, indent=2)
        print(json.dumps(result["serving"], indent=2))
        return

    import keras
    import numpy as np

    import keras_seqrec as ks
    from keras_seqrec.data.pipeline import BucketedBatches, SampledBatches, as_fit_input
    from keras_seqrec.losses import SampledSoftmax
    from keras_seqrec.sampling import PopularitySampler
    from keras_seqrec.training import sampled_training_model

    rng = np.random.default_rng(0)
    n, length, items = args.batch_size * args.steps, args.max_len, args.num_items
    # Zipf-like popularity over the catalogue.
    ranks = np.arange(1, items + 1)
    popularity = 1.0 / ranks
    popularity /= popularity.sum()
    seqs = (rng.choice(items, size=(n, length + 1), p=popularity) + 1).astype(np.int32)
    counts = np.bincount(seqs.ravel(), minlength=items + 1)
    loss = SampledSoftmax(num_negatives=args.num_negatives, alpha=1.0)
    sampler = PopularitySampler(counts, alpha=loss.alpha, seed=0)
    model = ks.build_model(args.model, items, length)
    train_model = sampled_training_model(model, loss, sampler.log_q)
    train_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    batches = SampledBatches(
        BucketedBatches(seqs[:, :-1], seqs[:, 1:], batch_size=args.batch_size, max_len=length),
        sampler, loss.num_negatives,
    )
    x, steps = as_fit_input(batches)
    start = time.perf_counter()
    history = train_model.fit(x, epochs=1, steps_per_epoch=steps, verbose=2, shuffle=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    full_logits_gib = args.batch_size * length * (items + 1) * 4 / 1024 ** 3
    weights_gib = sum(int(np.prod(w.shape)) * 4 for w in model.weights) / 1024 ** 3
    result = {
        "benchmark": f"sampled_softmax_{millions}",
        "model": args.model,
        "num_items": items,
        "batch_size": args.batch_size,
        "max_len": length,
        "num_negatives": args.num_negatives,
        "steps": args.steps,
        "final_loss": round(history.history["loss"][-1], 4),
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(peak, 2),
        "model_weights_gib": round(weights_gib, 2),
        "adam_state_gib": round(2 * weights_gib, 2),
        **({"target_peak_rss_gib": 4.0, "pass": peak < 4.0} if items <= 1_000_000 else {}),
        "full_softmax_logits_alone_gib": round(full_logits_gib, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, keras "
                   f"{keras.__version__} ({keras.backend.backend()})",
        "command": " ".join(["python benchmarks/sampled_memory.py", *sys.argv[1:]]),
    }
    if os.path.exists(out):  # keep the serving figures of an earlier --serve run
        with open(out) as f:
            earlier = json.load(f)
        if "serving" in earlier:
            result["serving"] = earlier["serving"]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    if "pass" in result:
        print("PASS" if result["pass"] else "FAIL", f"peak RSS {peak:.2f} GiB (target < 4 GiB)")


if __name__ == "__main__":
    main()
