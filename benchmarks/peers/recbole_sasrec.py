"""RecBole 1.2.1's SASRec and ours on Amazon Beauty, same settings, one after the other.

    python benchmarks/peers/recbole_sasrec.py [--epochs 2] [--our-max-epochs 12]

Builds RecBole in its own virtual environment (`benchmarks/peers/.venv-recbole`, git-ignored;
never a dependency of keras-seqrec and never run by CI; PyPI must be reachable the first time),
writes Beauty.txt as a RecBole atomic `.inter` file (a user's position in its sequence is the
timestamp), trains RecBole's SASRec for `--epochs` epochs and then ours with the same settings:
max_len 50, hidden 64, 2 blocks, full softmax cross-entropy, batch 256, Adam 1e-3, leave-one-out,
validation NDCG@10 over the whole catalogue. Ours then keeps training until it reaches RecBole's
best validation NDCG@10 (at most `--our-max-epochs`), which gives the time-to-quality
comparison: RecBole trains on every prefix of every sequence (about 8 times our optimizer steps
per epoch), so seconds per epoch alone flatter us. Writes
`benchmarks/results/speed/peer_recbole_sasrec_beauty.json`. Run it on an otherwise idle machine.

Last run (2026-12-06, `results/speed/peer_recbole_sasrec_beauty.json`, an Intel Xeon with 2
cores): RecBole 194.6 and 195.0 s of training per epoch, validation NDCG@10 .0148 then .0256;
ours 10.62 s per epoch (18.3x per epoch), and RecBole's .0256 after 7 epochs and 83 s against
RecBole's 398 s. On the AMD EPYC of 2026-12-01 (`results/speed/earlier/`): 363.6 / 355.6 s
against 57.3 s (6.3x). Both ran RecBole on the torch 2.12.1 that its requirements install over
the pinned wheel. An earlier run failed reloading RecBole's checkpoint under torch's
`weights_only` default, hence `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` below.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(ROOT, "..", "shared", "data")
VENV = os.path.join(HERE, ".venv-recbole")
# A recipe known to work: torch from the CPU wheel, RecBole's pins for its old dependencies.
# Two steps: torch itself asks for a newer setuptools than RecBole's ray import can use.
TORCH = ["torch==2.13.0"]
REQUIREMENTS = ["recbole==1.2.1", "numpy<2", "pandas<2.2", "scipy<1.13", "ray<2.10",
                "setuptools<70", "thop", "tabulate", "colorlog", "colorama", "texttable",
                "psutil"]
WHEELS = "/opt/wheels"  # where this machine keeps the CPU torch wheel; PyPI otherwise

RECBOLE_RUN = r"""
import json, sys, time
import recbole, torch
from recbole.quick_start import run_recbole
config = json.loads(sys.argv[1])
start = time.perf_counter()
result = run_recbole(model="SASRec", dataset="beauty", config_dict=config)
print("RESULT", json.dumps({"best_valid_score": float(result["best_valid_score"]),
                            "seconds": time.perf_counter() - start,
                            "versions": {"recbole": recbole.__version__,
                                         "torch": torch.__version__,
                                         "torch_threads": torch.get_num_threads()}}))
"""


def _venv_python() -> str:
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        extra = ["--find-links", WHEELS] if os.path.isdir(WHEELS) else []
        for requirements in (TORCH, REQUIREMENTS):
            subprocess.run([python, "-m", "pip", "install", "-q", *extra, *requirements],
                           check=True)
    return python


def _write_inter(path: str, folder: str) -> int:
    os.makedirs(folder, exist_ok=True)
    rows = 0
    with open(path) as src, open(os.path.join(folder, "beauty.inter"), "w") as out:
        out.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in src:
            user, *items = line.split()
            for position, item in enumerate(items):
                out.write(f"{user}\t{item}\t{position}\n")
                rows += 1
    return rows


def run_recbole(epochs: int, data_dir: str) -> dict:
    python = _venv_python()
    work = tempfile.mkdtemp(prefix="recbole-")
    rows = _write_inter(os.path.join(data_dir, "amazon-beauty", "Beauty.txt"),
                        os.path.join(work, "beauty"))
    config = {
        "data_path": work, "checkpoint_dir": os.path.join(work, "saved"),
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50, "hidden_size": 64, "inner_size": 256, "n_layers": 2,
        "n_heads": 2, "loss_type": "CE", "train_neg_sample_args": None,
        "train_batch_size": 256, "eval_batch_size": 256, "learning_rate": 1e-3,
        "epochs": epochs, "stopping_step": epochs, "eval_step": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                      "group_by": "user"},
        "metrics": ["NDCG", "Hit"], "topk": [10], "valid_metric": "NDCG@10",
        "device": "cpu", "use_gpu": False, "show_progress": False, "seed": 0,
        "worker": 0, "reproducibility": True,
    }
    # RecBole reloads its own best checkpoint with torch.load, which torch >= 2.6 refuses
    # (weights_only) for the objects RecBole pickles; the file is the one it just wrote.
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    proc = subprocess.run([python, "-c", RECBOLE_RUN, json.dumps(config)],
                          capture_output=True, text=True, cwd=work, env=env)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"error: RecBole failed:\n{log[-3000:]}")
    train = [float(t) for t in re.findall(r"training \[time: ([\d.]+)s", log)]
    evaluate = [float(t) for t in re.findall(r"evaluating \[time: ([\d.]+)s", log)]
    scores = [float(s) for s in re.findall(r"valid_score: ([\d.]+)", log)]
    result = json.loads(log.split("RESULT", 1)[1].strip().splitlines()[0])
    return {"training_seconds_per_epoch": train, "evaluation_seconds_per_epoch": evaluate,
            "validation_ndcg@10_per_epoch": scores, "interactions": rows,
            "best_validation_ndcg@10": result["best_valid_score"],
            "total_seconds": round(result["seconds"], 1), "versions": result["versions"],
            "settings": {k: v for k, v in config.items()
                         if k not in ("data_path", "checkpoint_dir")}}


def run_ours(epochs: int, max_epochs: int, goal: float, data_dir: str) -> dict:
    import keras

    import keras_seqrec as ks

    log = ks.datasets.read_sequences(os.path.join(data_dir, "amazon-beauty", "Beauty.txt"))
    data = ks.prepare(log, max_len=50)
    keras.utils.set_random_seed(0)
    model = ks.build_model("sasrec", data.num_items, data.max_len, embedding_dim=64,
                           num_layers=2)
    wall, scores = [], []

    class Clock(keras.callbacks.Callback):  # runs after validation: wall time includes it
        def on_epoch_end(self, epoch, logs=None):
            wall.append(time.perf_counter() - start)
            scores.append(float(logs["val_ndcg@10"]))
            if epoch + 1 >= epochs and scores[-1] >= goal:
                self.model.stop_training = True

    start = time.perf_counter()
    history = ks.fit_recommender(model, data, epochs=max_epochs, batch_size=256,
                                 learning_rate=1e-3, early_stopping_patience=max_epochs,
                                 callbacks=[Clock()], verbose=2)
    reached = next((i for i, s in enumerate(scores) if s >= goal), None)
    return {
        "seconds_per_epoch": round(history.seconds_per_epoch, 2),
        "validation_ndcg@10_per_epoch": [round(s, 5) for s in scores],
        "wall_seconds_after_each_epoch": [round(w, 1) for w in wall],
        "epochs_to_recbole_best": None if reached is None else reached + 1,
        "seconds_to_recbole_best": None if reached is None else round(wall[reached], 1),
        "settings": {"max_len": 50, "embedding_dim": 64, "num_layers": 2, "num_heads": 1,
                     "loss": "softmax", "batch_size": 256, "learning_rate": 1e-3},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--our-max-epochs", type=int, default=12)
    p.add_argument("--data-dir", default=SHARED)
    args = p.parse_args(argv)
    if not os.path.exists(os.path.join(args.data_dir, "amazon-beauty", "Beauty.txt")):
        raise SystemExit(f"error: no amazon-beauty/Beauty.txt under {args.data_dir}")
    recbole = run_recbole(args.epochs, args.data_dir)
    recbole_epoch = (sum(recbole["training_seconds_per_epoch"])
                     + sum(recbole["evaluation_seconds_per_epoch"])) / args.epochs
    recbole_wall = recbole_epoch * args.epochs
    ours = run_ours(args.epochs, args.our_max_epochs, recbole["best_validation_ndcg@10"],
                    args.data_dir)
    ratio = sum(recbole["training_seconds_per_epoch"]) / args.epochs / ours["seconds_per_epoch"]
    sys.path.insert(0, os.path.dirname(HERE))
    from speed import _write

    _write("peer_recbole_sasrec_beauty", {
        "benchmark": "peer",
        "peer": "RecBole 1.2.1 SASRec",
        "dataset": "amazon-beauty",
        "epochs": args.epochs,
        "recbole": recbole,
        "ours": ours,
        "training_speed_ratio": round(ratio, 2),
        "target_speed_ratio": 10.0,
        "recbole_wall_seconds": round(recbole_wall, 1),
        "ours_faster_to_recbole_best": (ours["seconds_to_recbole_best"] is not None
                                        and ours["seconds_to_recbole_best"] < recbole_wall),
        "pass": bool(ratio >= 10.0 and ours["seconds_to_recbole_best"] is not None
                     and ours["seconds_to_recbole_best"] < recbole_wall),
    })


if __name__ == "__main__":
    main()
