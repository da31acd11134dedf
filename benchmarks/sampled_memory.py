"""Peak memory of sampled-softmax training on a synthetic 1,000,000-item catalogue.

    python benchmarks/sampled_memory.py [--model sasrec] [--steps 30]

Trains with `SampledSoftmax` (shared popularity-sampled negatives, log-Q correction) at
batch 256, max_len 50 on a long-tailed (Zipf) synthetic log, and records peak RSS next to the
memory a full-softmax step would need for its logits alone. Writes
benchmarks/results/speed/sampled_softmax_1m.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sasrec")
    p.add_argument("--num-items", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--num-negatives", type=int, default=1024)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args(argv)

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
    result = {
        "benchmark": "sampled_softmax_1m",
        "model": args.model,
        "num_items": items,
        "batch_size": args.batch_size,
        "max_len": length,
        "num_negatives": args.num_negatives,
        "steps": args.steps,
        "final_loss": round(history.history["loss"][-1], 4),
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(peak, 2),
        "target_peak_rss_gib": 4.0,
        "pass": peak < 4.0,
        "full_softmax_logits_alone_gib": round(full_logits_gib, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, keras "
                   f"{keras.__version__} ({keras.backend.backend()})",
        "command": "python benchmarks/sampled_memory.py",
    }
    os.makedirs(os.path.join(HERE, "results", "speed"), exist_ok=True)
    with open(os.path.join(HERE, "results", "speed", "sampled_softmax_1m.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    print("PASS" if result["pass"] else "FAIL", f"peak RSS {peak:.2f} GiB (target < 4 GiB)")


if __name__ == "__main__":
    main()
