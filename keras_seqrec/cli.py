"""The `keras-seqrec` command line: each subcommand reads like the Python quickstart."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class CliError(Exception):
    """A mistake in what the user asked for: printed as one `error: ...` line, exit status 2."""


def _load_interactions(args):
    from keras_seqrec import datasets
    from keras_seqrec.runs import read_source

    source = args.dataset
    if source not in datasets.available_datasets() and not os.path.exists(source):
        raise CliError(
            f"--dataset {source!r} is neither a known dataset "
            f"({', '.join(datasets.available_datasets())}) nor an existing file."
        )
    return read_source({"source": source, "format": getattr(args, "format", None),
                        "columns": _columns(args)}, args.data_dir)


def _process_count() -> int:
    """How many processes trained together (several only under keras.distribution, JAX)."""
    import keras

    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


_COLUMNS = ("user_col", "item_col", "time_col", "rating_col")


def _columns(args) -> dict:
    """The `--user-col`/`--item-col`/`--time-col`/`--rating-col` of a command."""
    return {k: getattr(args, k) for k in _COLUMNS}


def _split_settings(args) -> dict:
    """`prepare`'s settings from a command's flags, all but `min_rating`."""
    return dict(max_len=args.max_len, min_user_interactions=args.min_user_interactions,
                min_item_interactions=args.min_item_interactions,
                drop_duplicates=not getattr(args, "keep_duplicates", False),
                tie_break=getattr(args, "tie_break", "file"),
                seed=getattr(args, "seed", 0) or 0,
                cold_items=getattr(args, "cold_items", 0.0) or 0.0)


def _prepare_out_of_core(source: str, columns: dict, memory_limit: str,
                         min_rating: Optional[float], settings: dict):
    """`prepare_parquet` of a Parquet file or folder, its errors as one-line CLI errors."""
    from keras_seqrec.data.out_of_core import prepare_parquet

    if not os.path.exists(source):
        raise CliError(f"--out-of-core reads a Parquet file or folder; {source!r} is "
                       "neither.")
    if min_rating is not None and columns.get("rating_col") is None:
        print("note: no --rating-col, so every interaction counts (--min-rating ignored).",
              file=sys.stderr)
        min_rating = None
    settings = dict(settings)
    if settings.pop("tie_break") != "file":
        raise CliError("--out-of-core breaks ties in file order only; drop --tie-break.")
    try:
        return prepare_parquet(source, **columns, min_rating=min_rating,
                               memory_limit=memory_limit, **settings)
    except (ValueError, FileNotFoundError, ImportError) as error:
        raise CliError(str(error)) from None


def _prepare(args):
    from keras_seqrec import prepare

    settings = _split_settings(args)
    min_rating = args.min_rating
    if min_rating is not None and min_rating < 0:
        min_rating = None
    if getattr(args, "out_of_core", False):
        return None, _prepare_out_of_core(args.dataset, _columns(args), args.memory_limit,
                                          min_rating, settings)
    log = _load_interactions(args)
    if min_rating is not None and not log.has_ratings:
        print(f"note: {log.name} has no ratings, so every interaction counts "
              "(--min-rating ignored).", file=sys.stderr)
        min_rating = None
    return log, prepare(log, min_rating=min_rating, **settings)


def _item_features(args, data):
    """The `--item-features` of a command, aligned with `data`, or None."""
    source = getattr(args, "item_features", None)
    if not source:
        return None
    from keras_seqrec.data.features import load_item_features

    try:
        return load_item_features(source, data, text=getattr(args, "text_features", ()) or ())
    except (ValueError, FileNotFoundError) as error:
        raise CliError(str(error)) from None


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="ml-latest-small",
                   help="a MovieLens name (ml-latest-small is bundled) or a path to a "
                        "CSV/Parquet log or a 'user item item ...' text file")
    g.add_argument("--data-dir", default=None, help="folder with an unzipped MovieLens release")
    g.add_argument("--format", default=None, choices=("csv", "tsv", "parquet", "sequences"),
                   help="format of a --dataset file (default: read from its content)")
    g.add_argument("--keep-duplicates", action="store_true",
                   help="keep rows repeating an earlier row's user, item and timestamp "
                        "(dropped by default)")
    g.add_argument("--cold-items", type=float, default=0.0, metavar="SHARE",
                   help="cold-start protocol: this share of the items (drawn with --seed) is "
                        "new, never in training; metrics report warm and cold targets apart")
    g.add_argument("--tie-break", default="file", choices=("file", "random"),
                   help="order of a user's interactions with equal timestamps: file order, or "
                        "a random order drawn with --seed")
    g.add_argument("--max-len", type=int, default=50)
    g.add_argument("--min-rating", type=float, default=3.0,
                   help="implicit-feedback threshold where the data has ratings (-1: none)")
    g.add_argument("--min-user-interactions", type=int, default=5)
    g.add_argument("--min-item-interactions", type=int, default=5)
    g.add_argument("--out-of-core", action="store_true",
                   help="prepare a --dataset Parquet file or folder larger than memory "
                        "through DuckDB (same sequences and splits as in memory; needs "
                        "pip install 'keras-seqrec[large]')")
    g.add_argument("--memory-limit", default="3GB",
                   help="DuckDB's memory limit with --out-of-core; it spills beyond it")
    g.add_argument("--user-col", default="user")
    g.add_argument("--item-col", default="item")
    g.add_argument("--time-col", default="timestamp")
    g.add_argument("--rating-col", default=None)


def cmd_stats(args) -> int:
    log, data = _prepare(args)
    info = data.describe()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    raw, filt, split = info["raw"], info["filtered"], info["split"]
    print(f"dataset: {data.name}")
    print(f"  raw:       {raw['users']:>8,} users {raw['items']:>8,} items "
          f"{raw['interactions']:>10,} interactions")
    print(f"  filtered:  {filt['users']:>8,} users {filt['items']:>8,} items "
          f"{filt['interactions']:>10,} interactions  ({info['settings']})")
    print(f"  split:     train {split['train_interactions']:,} interactions, "
          f"validation {split['validation_examples']:,} users, "
          f"test {split['test_examples']:,} users")
    lengths = data.train.lengths
    print(f"  train sequence length: mean {lengths.mean():.1f}, median "
          f"{int(sorted(lengths)[len(lengths) // 2])}, max {lengths.max()}")
    return 0


_MODEL_FLAGS = ("embedding_dim", "hidden_dim", "num_layers", "num_heads", "attention_units",
                "dropout")


def parse_param(text: str) -> tuple[str, object]:
    """`"KEY=VALUE"` -> `(key, value)`, VALUE read as JSON when it parses (0.5, true, [1, 2]).

    Example:

    >>> parse_param("dropout=0.5"), parse_param("residual=true"), parse_param("cell=gru")
    (('dropout', 0.5), ('residual', True), ('cell', 'gru'))
    """
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY a hyperparameter name, e.g. dropout=0.5; got {text!r}"
        )
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _cell(metrics: dict, key: str) -> str:
    """A metric with its standard error over users when there is one: "value +- se"."""
    se = metrics.get(f"{key}_se")
    return f"{metrics[key]:.4f}" + ("" if se is None else f" +- {se:.4f}")


def _metrics_table(rows: list[tuple[str, str, dict]], cutoffs=(10,)) -> str:
    """Rows of (model, split, metrics) as an aligned text table (HR, NDCG and MRR with their
    standard errors over users)."""
    names = ("HR", "NDCG", "MRR", "Cov")
    header = ["model", "split"] + [f"{m}@{k}" for k in cutoffs for m in names]
    lines = [header]
    for name, split, metrics in rows:
        lines.append([name, split] + [_cell(metrics, f"{m}@{k}") for k in cutoffs
                                      for m in ("hr", "ndcg", "mrr", "coverage")])
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in lines)


def _evaluate_all(models: dict, data, exclude_seen: bool, cutoffs=(10,)):
    from keras_seqrec.evaluation import evaluate_recommender

    rows, results = [], {}
    parts = [(s, "all") for s in ("validation", "test")]
    if len(data.cold_items):  # the cold-start protocol: warm and cold targets apart
        parts += [("test", "warm"), ("test", "cold")]
    for split, targets in parts:
        label = split if targets == "all" else f"{split} ({targets})"
        for name, model in models.items():
            metrics = evaluate_recommender(model, data, split, cutoffs=cutoffs,
                                           exclude_seen=exclude_seen, standard_errors=True,
                                           targets=targets)
            rows.append((name, label, metrics))
            results.setdefault(name, {})[label.replace(" (", "_").rstrip(")")] = metrics
    return rows, results


def _baselines(data, features) -> dict:
    """pop and markov, and with item features the content baseline."""
    from keras_seqrec.baselines import BASELINES, FEATURE_BASELINES

    models = {name: cls(data) for name, cls in BASELINES.items()}
    if features is not None:
        models.update({name: cls(data, features) for name, cls in FEATURE_BASELINES.items()})
    return models


def _check_train_args(args) -> None:
    """Every training argument, checked before anything is loaded."""
    from keras_seqrec.training import check_training_arguments

    for flag, value, low in (("--max-len", args.max_len, 2),
                             ("--min-user-interactions", args.min_user_interactions, 1),
                             ("--min-item-interactions", args.min_item_interactions, 1)):
        if value < low:
            raise CliError(f"{flag} must be >= {low}; got {value}.")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0; got {args.seed}.")
    if args.time_limit is not None and not args.time_limit > 0:
        raise CliError(f"--time-limit must be a positive number of minutes; got "
                       f"{args.time_limit:g}.")
    if args.distribution is not None:
        from keras_seqrec import distribution

        try:
            if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") != "1":
                distribution.initialize()  # one of several processes: join them first
            distribution.get(args.distribution)
        except ValueError as error:
            raise CliError(f"--distribution: {error}") from None
    try:
        check_training_arguments(
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            early_stopping_patience=args.patience, validation_metric=args.validation_metric,
            num_negatives=args.num_negatives, plateau_patience=args.plateau_patience,
            weight_decay=args.weight_decay, adam_beta_2=args.adam_beta_2,
            new_item_share=args.new_item_share,
        )
    except ValueError as error:  # name the flag rather than the Python argument
        message = str(error)
        for arg, flag in (("early_stopping_patience", "patience"), ("num_negatives", None),
                          ("learning_rate", None), ("batch_size", None), ("epochs", None),
                          ("validation_metric", None), ("plateau_patience", None),
                          ("weight_decay", None), ("adam_beta_2", "adam-beta2"),
                          ("new_item_share", None)):
            message = message.replace(f"`{arg}`", "--" + (flag or arg).replace("_", "-"))
        raise CliError(message) from None


def _claim_output(args) -> None:
    """Refuse to mix two runs in one --output folder (see the README, "When things go wrong").

    An empty or missing folder is used; with --overwrite an existing one is emptied first; a
    folder holding only the resume state of an interrupted run is resumed by fit_recommender,
    which refuses a state that a different run left.
    """
    import shutil

    out = args.output
    if os.path.exists(out) and not os.path.isdir(out):
        raise CliError(f"--output {out!r} is a file; pass a folder.")
    if not os.path.isdir(out) or not os.listdir(out):
        return
    if args.overwrite:
        shutil.rmtree(out)
        return
    contents = sorted(os.listdir(out))
    state = os.path.join(out, "checkpoints", "state.json")
    if contents == ["checkpoints"] and os.path.exists(state):
        return  # an interrupted run: resumed if it is this same run
    raise CliError(
        f"--output {out!r} already holds {'a finished run' if 'run.json' in contents else 'files'}"
        f" ({', '.join(contents[:4])}{', ...' if len(contents) > 4 else ''}); pass --overwrite "
        "to replace it, or choose another --output."
    )


def _config_defaults(path: str) -> dict:
    """`keras-seqrec train` defaults that replay the run a result JSON describes.

    Two kinds are read: the `run.json` of `keras-seqrec train` and the per-model JSON of
    `benchmarks/run.py` (`benchmarks/results/<dataset>/<model>.json`).
    """
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except OSError as error:
        raise CliError(f"--config {path!r} cannot be read: {error.strerror}.") from None
    except json.JSONDecodeError as error:
        raise CliError(f"--config {path!r} is not JSON ({error.msg}, line {error.lineno}).") \
            from None
    if not isinstance(result, dict):
        raise CliError(f"--config {path!r} holds no result object.")
    try:
        if "protocol" in result and "training" in result:
            return _run_json_defaults(result)
        if "config" in result and "dataset" in result:
            return _benchmark_json_defaults(result, path)
    except (KeyError, TypeError) as error:
        raise CliError(f"--config {path!r} lacks the setting {error} that a replay needs.") \
            from None
    raise CliError(f"--config {path!r} is neither a `keras-seqrec train` run.json nor a "
                   "benchmarks/results JSON.")


def _prepare_defaults(settings: dict) -> dict:
    out = {"max_len": settings["max_len"],
           "min_rating": -1.0 if settings.get("min_rating") is None else settings["min_rating"],
           "min_user_interactions": settings.get("min_user_interactions", 1),
           "min_item_interactions": settings.get("min_item_interactions", 1),
           "keep_duplicates": not settings.get("drop_duplicates", True),
           "tie_break": settings.get("tie_break", "file"),
           "cold_items": settings.get("cold_items", 0.0)}
    if settings.get("split", "leave_one_out") != "leave_one_out" or settings.get("session_gap"):
        raise CliError("the run used a split or sessions that `keras-seqrec train` does not "
                       "offer; replay it in Python with `prepare(...)`.")
    return out


def _loss_defaults(config) -> dict:
    """`--loss`/`--num-negatives` from a loss name or a loss's `get_config()`."""
    from keras_seqrec.losses import LOSSES

    if config is None:
        return {}
    if isinstance(config, str):
        return {"loss": config}
    names = {cls().get_config()["name"]: key for key, cls in LOSSES.items()}
    key = names.get(config.get("name"), config.get("name"))
    if key not in LOSSES:
        raise CliError(f"the run's loss {config.get('name')!r} is not one of {sorted(LOSSES)}.")
    default = LOSSES[key]().get_config()
    out = {"loss": key}
    if "num_negatives" in default and config.get("num_negatives") != default["num_negatives"]:
        out["num_negatives"] = config["num_negatives"]
    return out


def _schedule_defaults(training: dict) -> dict:
    out = {}
    schedule = training.get("learning_rate_schedule")
    if training.get("lr_plateau_patience") is not None:  # older benchmark JSONs
        schedule, out["plateau_patience"] = "plateau", training["lr_plateau_patience"]
    if schedule:
        out["lr_schedule"] = schedule
    if training.get("plateau_patience") is not None:
        out["plateau_patience"] = training["plateau_patience"]
    return out


def _run_json_defaults(run: dict) -> dict:
    data, training = run["dataset"], run["training"]
    out = {"dataset": data["source"], "data_dir": data.get("data_dir"),
           "format": data.get("format"), **_prepare_defaults(data["settings"]),
           **data.get("columns", {}),
           "model": run["model"], "config_params": dict(run["hyperparameters"]),
           "item2vec": bool(run.get("item2vec_init")),
           "item_features": (run.get("item_features") or {}).get("source"),
           "text_features": (run.get("item_features") or {}).get("text", []),
           "batch_size": training["batch_size"], "learning_rate": training["learning_rate"],
           "validation_metric": training["validation_metric"], "seed": training["seed"],
           "exclude_seen": bool(run["protocol"]["exclude_seen"]),
           **_schedule_defaults(training), **_loss_defaults(training.get("loss"))}
    for key, dest in (("epochs", "epochs"), ("early_stopping_patience", "patience"),
                      ("weight_decay", "weight_decay"), ("adam_beta_2", "adam_beta_2"),
                      ("new_item_share", "new_item_share")):
        if key in training:  # runs written before these were recorded keep the defaults
            out[dest] = training[key]
    if training.get("time_limit_minutes"):
        out["time_limit"] = training["time_limit_minutes"]
    return out


def _benchmark_json_defaults(result: dict, path: str) -> dict:
    from keras_seqrec import datasets

    config, name = result["config"], result["dataset"]
    training = config["training"]
    if not training:
        raise CliError(f"--config {path!r} is a baseline's result ({result['model']}): "
                       "there is no training to replay.")
    model, _, tag = result["model"].partition(" (")
    out = {"dataset": name if name in datasets.available_datasets() else None,
           "config_dataset": name, **_prepare_defaults(config["prepare"]),
           "model": model, "config_params": dict(config.get("hyperparameters") or {}),
           "item2vec": "item2vec" in tag, "seed": config.get("seed", 0),
           "exclude_seen": bool(result["exclude_seen"]),
           "epochs": training["epochs"], "batch_size": training["batch_size"],
           "learning_rate": training["learning_rate"],
           "patience": training["early_stopping_patience"],
           **_schedule_defaults(training), **_loss_defaults(training.get("loss"))}
    if training.get("num_negatives") is not None:
        out["num_negatives"] = training["num_negatives"]
    for key in ("weight_decay", "adam_beta_2", "new_item_share"):
        if training.get(key) is not None:
            out[key] = training[key]
    if training.get("time_limit"):
        out["time_limit"] = training["time_limit"] / 60
    if config.get("item_features"):  # benchmarks/run.py --item-features: the dataset's own
        if name in ("ml-latest-small", "ml-100k"):
            out["item_features"] = "movielens"
        else:
            out["config_needs_features"] = True
    return out


def cmd_train(args) -> int:
    import time

    if args.dataset is None:  # a replayed benchmark run on a dataset that has no name here
        raise CliError(
            f"the replayed run was trained on {args.config_dataset!r}, which keras-seqrec "
            "cannot load by name; pass --dataset with the path of its file (benchmarks/run.py "
            "reads ../shared/data/amazon-beauty/Beauty.txt and ../shared/data/ml-1m/"
            "ml-1m.txt.gz).")
    if getattr(args, "config_needs_features", False) and not args.item_features:
        raise CliError(
            f"the replayed run used {args.config_dataset}'s item features; pass "
            "--item-features with their file (benchmarks/run.py reads "
            "../shared/data/amazon-beauty/Beauty_item2attributes.json).")
    _check_train_args(args)
    hyper = dict(args.param)
    flags = {k: getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k) is not None}
    twice = sorted(set(hyper) & set(flags))
    if twice:
        key = twice[0]
        raise CliError(f"{key} is given twice, as --{key.replace('_', '-')} and as "
                       f"--param {key}=...; keep one.")
    hyper.update(flags)
    hyper = {**args.config_params, **hyper}  # a replayed run's, unless given again here
    _claim_output(args)

    import keras

    import keras_seqrec as ks
    from keras_seqrec.training import (build_and_fit, check_training_arguments,
                                       starts_from_item2vec)

    try:
        loss = ks.losses.get_loss(args.loss, num_negatives=args.num_negatives)
    except ValueError as error:
        raise CliError(str(error).replace("`num_negatives`", "--num-negatives")) from None
    log, data = _prepare(args)
    if getattr(loss, "sampled", False):
        try:
            check_training_arguments(num_negatives=loss.num_negatives, num_items=data.num_items)
        except ValueError as error:
            raise CliError(str(error).replace("`num_negatives`", "--num-negatives")) from None
    print(data)
    features = _item_features(args, data)
    if features is not None:
        print(f"Item features from {args.item_features}: {features.describe()}")
    if args.new_item_share is not None and (features is None or not len(data.cold_items)):
        raise CliError("--new-item-share sets how much new items draw on a cold-start split: "
                       "it needs --cold-items and --item-features.")
    item2vec = starts_from_item2vec(args.model, args.item2vec)
    if item2vec:
        print("Training item2vec embeddings on the training sequences...")
    start = time.perf_counter()
    try:
        model, history = build_and_fit(
            args.model, data, hyper, item2vec=args.item2vec, item_features=features,
            seed=args.seed, distribution=args.distribution,
            epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, loss=loss,
            learning_rate_schedule=None if args.lr_schedule == "constant" else args.lr_schedule,
            plateau_patience=args.plateau_patience, weight_decay=args.weight_decay,
            adam_beta_2=args.adam_beta_2, validation_metric=args.validation_metric,
            early_stopping_patience=args.patience, exclude_seen=args.exclude_seen,
            checkpoint_dir=os.path.join(args.output, "checkpoints"),
            tensorboard_dir=args.tensorboard_dir, verbose=args.verbose,
            time_limit=args.time_limit * 60 if args.time_limit else None,
            new_item_share=args.new_item_share,
        )
    except FloatingPointError as error:  # diverged before any epoch could be kept
        raise CliError(str(error).replace("learning rate (it was",
                                          "--learning-rate (it was")) from None
    train_seconds = time.perf_counter() - start
    # Save the trained model first, so nothing is lost if evaluation fails.
    _save_artifacts(args.output, model, data, features)

    models = _baselines(data, features)
    models[args.model] = model
    rows, results = _evaluate_all(models, data, args.exclude_seen)
    print()
    print(f"Full-ranking leave-one-out metrics on {data.name} ({data.num_items:,} items"
          f"{', seen items excluded' if args.exclude_seen else ''}):")
    print(_metrics_table(rows))
    if history.stopped_by == "diverged":
        print(f"\nnote: training diverged after epoch {history.best_epoch + 1}; the metrics "
              "are those of the best earlier epoch. Lower --learning-rate.", file=sys.stderr)
    run = {
        "model": args.model,
        "hyperparameters": hyper,
        "item2vec_init": item2vec,
        "item_features": ({"source": _recorded_path(args.item_features),
                           "text": list(args.text_features),
                           **features.describe()} if features is not None else None),
        "dataset": {"source": _recorded_path(args.dataset),
                    "data_dir": _recorded_path(args.data_dir),
                    "format": args.format,
                    "columns": _columns(args),
                    **({"out_of_core": {"memory_limit": args.memory_limit}}
                       if getattr(args, "out_of_core", False) else {}),
                    **data.describe()},
        "training": {
            "epochs_run": len(history.history["loss"]), "best_epoch": history.best_epoch + 1,
            "stopped_by": history.stopped_by,
            "epochs": args.epochs, "early_stopping_patience": args.patience,
            "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "learning_rate_schedule": args.lr_schedule,
            "weight_decay": args.weight_decay, "adam_beta_2": args.adam_beta_2,
            "time_limit_minutes": args.time_limit,
            **({"new_item_share": args.new_item_share} if args.new_item_share is not None
               else {}),
            **({"plateau_patience": args.plateau_patience} if args.lr_schedule == "plateau"
               else {}),
            "validation_metric": args.validation_metric, "seed": args.seed,
            "distribution": args.distribution,
            **({"devices": len(keras.distribution.list_devices()),
                "processes": _process_count()} if args.distribution else {}),
            "loss": loss.get_config(),
            "seconds": round(train_seconds, 1),
            "seconds_per_epoch": round(history.seconds_per_epoch, 2),
        },
        "protocol": {"split": "leave_one_out", "ranking": "full", "ties": "pessimistic",
                     "exclude_seen": bool(args.exclude_seen)},
        "metrics": results,
        "versions": {"keras_seqrec": ks.__version__, "keras": keras.__version__},
    }
    _write_run_json(args.output, run)
    return 0


def _save_artifacts(output: str, model, data, features) -> None:
    """A run's model, vocabulary, popularity counts, item features and titles."""
    import numpy as np

    os.makedirs(output, exist_ok=True)
    model.save(os.path.join(output, "model.keras"))
    data.vocabulary.save(os.path.join(output, "vocabulary.json"))
    if features is not None:  # what `export --new-items` reads new items' tokens against
        features.save(os.path.join(output, "item_features.npz"))
    np.save(os.path.join(output, "item_counts.npy"), data.item_counts())
    if data.items is not None and "title" in data.items.columns:
        titles = data.items["title"].reindex(data.vocabulary.ids).dropna()
        with open(os.path.join(output, "titles.json"), "w", encoding="utf-8") as f:
            json.dump({str(k): v for k, v in titles.items()}, f)


def _recorded_path(source: Optional[str]) -> Optional[str]:
    """How run.json records a data source: an existing file or folder by its absolute path
    (so the run reads back from any working directory), anything else (a dataset name) as
    given."""
    from keras_seqrec import datasets

    if not source or source in datasets.available_datasets() or not os.path.exists(source):
        return source
    return os.path.abspath(source)


def _write_run_json(output: str, run: dict) -> None:
    tmp = os.path.join(output, ".run.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(run, f, indent=2, default=str)
    os.replace(tmp, os.path.join(output, "run.json"))  # last: marks the run finished
    print(f"\nSaved the model, its vocabulary and run.json to {output}/")


def cmd_update(args) -> int:
    """Continue a finished run on its log grown by new interactions, as a new run."""
    import copy
    import time

    from keras_seqrec.runs import read_run_info, run_log

    run = read_run_info(args.run_dir)
    if os.path.abspath(args.output) == os.path.abspath(args.run_dir):
        raise CliError("--output must be a new folder: an update never modifies the run it "
                       "starts from.")
    if args.epochs < 1:
        raise CliError(f"--epochs must be >= 1; got {args.epochs}.")
    if args.context == -1:
        args.context = None
    elif args.context < 0:
        raise CliError(f"--context must be >= 0 items, or -1; got {args.context}.")
    _claim_output(args)
    import keras_seqrec as ks
    from keras_seqrec.runs import load_run
    from keras_seqrec.update import new_items, recent_windows, update_dataset, update_model

    new_source = {"source": _recorded_path(args.dataset), "format": args.format,
                  "columns": _columns(args)}
    new_log = _load_interactions(args)
    old_log = run_log(run, args.data_dir)
    base = load_run(args.run_dir, data_dir=args.data_dir)
    trained_vocabulary = vocabulary = base.vocabulary
    features = base.features
    settings = run["dataset"]["settings"]
    if features is not None:
        # New items are scored from their features, so only items with features can join.
        if args.new_items:
            features = _features_with_new_items(features, args.new_items)
        known = features.vocabulary.lookup(new_log.frame["item"].to_numpy()) > 0
        if not known.all():
            print(f"note: {int((~known).sum()):,} new interactions are with items that have "
                  "no features (not in the run's items nor in --new-items); they are left "
                  "out.", file=sys.stderr)
            new_log = type(new_log)(new_log.frame[known], items=new_log.items,
                                    name=new_log.name)
        vocabulary = features.vocabulary
    try:
        data = update_dataset(old_log, new_log, vocabulary, **settings)
    except ValueError as error:
        raise CliError(str(error)) from None
    added = new_items(trained_vocabulary, data.vocabulary)
    print(data)
    print(f"Update: {len(new_log.frame):,} new interactions, {len(added):,} new items.")
    model = base.model
    training = run["training"]
    loss = _loss_defaults(training.get("loss"))
    learning_rate = args.learning_rate
    if learning_rate is None:  # twice the run's: the new items start far behind
        learning_rate = 2 * (training.get("learning_rate") or ks.training.DEFAULT_LEARNING_RATE)
    exclude_seen = run["protocol"].get("exclude_seen", False)
    windows = data if args.context is None else recent_windows(
        data, new_log, context=args.context, min_rating=settings.get("min_rating"))
    metric = training.get("validation_metric", "ndcg@10")
    start = time.perf_counter()
    model, history = update_model(
        model, windows, features=features, epochs=args.epochs,
        batch_size=training.get("batch_size", 128), learning_rate=learning_rate,
        loss=ks.losses.get_loss(loss.get("loss", "softmax"), loss.get("num_negatives")),
        weight_decay=training.get("weight_decay", 0.0),
        adam_beta_2=training.get("adam_beta_2", 0.999),
        validation_metric=metric,
        early_stopping_patience=args.patience, seed=training.get("seed", 0),
        keep_start_if_better=args.keep_start_if_better,
        exclude_seen=exclude_seen, verbose=args.verbose,
    )
    seconds = time.perf_counter() - start
    if not history.kept_start and history.best_score < history.start_score:
        print(f"note: the update validates below the model it started from (val {metric} "
              f"{history.best_score:.4f} against {history.start_score:.4f}); "
              "--keep-start-if-better keeps the starting weights, --context -1 trains on "
              "whole sequences.", file=sys.stderr)
    _save_artifacts(args.output, model, data, features)
    models = _baselines(data, None)
    models[run["model"]] = model
    rows, results = _evaluate_all(models, data, exclude_seen)
    print()
    print(f"Full-ranking leave-one-out metrics on the grown {data.name} ({data.num_items:,} "
          "items):")
    print(_metrics_table(rows))
    updated = copy.deepcopy(run)
    updated["dataset"].update({k: v for k, v in data.describe().items()
                               if k != "settings"})
    updated["dataset"]["updates"] = run["dataset"].get("updates", []) + [new_source]
    updated["update"] = {
        "base_run": os.path.abspath(args.run_dir), "new_interactions": len(new_log.frame),
        "new_items": len(added), "epochs_run": len(history.history["loss"]),
        "best_epoch": history.best_epoch + 1, "stopped_by": history.stopped_by,
        "kept_start": history.kept_start, "start_validation": history.start_score,
        "best_validation": float(history.best_score),
        "learning_rate": learning_rate, "context": args.context,
        "train_interactions": int(len(windows.train.values)), "seconds": round(seconds, 1),
        "new_item_start": ("features" if features is not None else
                           "mean of the trained items' rows"),
    }
    updated["metrics"] = results
    _write_run_json(args.output, updated)
    return 0


def cmd_evaluate(args) -> int:
    from keras_seqrec.runs import read_run_info

    read_run_info(args.run_dir)  # a run folder? (before the slow imports)
    for k in args.k:
        if k < 1:
            raise CliError(f"-k must be positive integers; got {k}.")
    from keras_seqrec.runs import load_run

    run = load_run(args.run_dir, data_dir=args.data_dir)
    data = run.data
    source = run.info.get("item_features") or {}
    args.item_features, args.text_features = source.get("source"), source.get("text", ())
    features = _item_features(args, data)
    models = _baselines(data, features)
    models[run.name] = run.model
    exclude_seen = args.exclude_seen
    if exclude_seen is None:  # as the run was evaluated
        exclude_seen = bool(run.info.get("protocol", {}).get("exclude_seen", False))
    rows, _ = _evaluate_all(models, data, exclude_seen, cutoffs=tuple(args.k))
    print(f"Full-ranking leave-one-out metrics on {data.name} ({data.num_items:,} items"
          f"{', seen items excluded' if exclude_seen else ''}):")
    print(_metrics_table(rows, cutoffs=tuple(args.k)))
    return 0


def cmd_export(args) -> int:
    from keras_seqrec.runs import read_run_info

    read_run_info(args.run_dir)  # a run folder? (before the slow imports)
    if args.top_k < 1:
        raise CliError(f"--top-k must be >= 1; got {args.top_k}.")
    import numpy as np

    from keras_seqrec.export import export_saved_model
    from keras_seqrec.runs import load_run

    run = load_run(args.run_dir)
    model, vocabulary, counts, features = run.model, run.vocabulary, run.item_counts, run.features
    if args.new_items:
        histories = _export_histories(run) if features is not None else None
        model, features = _with_new_items(model, features, args.new_items, histories)
        added = features.vocabulary.size - len(counts)
        vocabulary, counts = features.vocabulary, np.r_[counts, np.zeros(added, counts.dtype)]
        print(f"Added {added:,} new items, scored from their features"
              + (f"; calibrated on {len(histories):,} users' histories to draw "
                 f"{added / (vocabulary.size - 1):.2%} of the probability (their share of the "
                 "catalogue)." if histories is not None else "."))
    path = export_saved_model(
        model,
        vocabulary,
        args.export_dir or os.path.join("saved_models", run.name),
        top_k=args.top_k,
        version=args.version,
        exclude_seen=not args.keep_seen,
        item_counts=counts,
        model_card=run.info,
        titles=run.titles,
        jit_compile=args.jit_compile,
        item_features=features,
    )
    print(f"Exported {run.name} to {path}")
    print(f"Serve it: docker run -p 8501:8501 -v \"{os.path.abspath(os.path.dirname(path))}:"
          f"/models/{run.name}\" -e MODEL_NAME={run.name} tensorflow/serving"
          + (" --xla_cpu_compilation_enabled=true" if args.jit_compile else ""))
    return 0


def _export_histories(run, samples: int = 4096):
    """The whole histories (their held-out items included: what the served model reads) of
    a seeded sample of a loaded `run`'s users, to calibrate new items on at export; None, with
    a note, when the run's data cannot be read again."""
    from keras_seqrec.catalogue import calibration_histories

    try:
        data = run.data
    except (OSError, ValueError) as error:
        print(f"note: the new items keep their starting output bias (not calibrated): the "
              f"run's data could not be read again ({error}).", file=sys.stderr)
        return None
    return calibration_histories(data.test.through_targets().pad(data.max_len), samples)


def _with_new_items(model, features, source: str, histories=None):
    """`(model, features)` with the new items of a CSV added to a feature-aware run, whose
    saved `features` (None for a run trained without them) give the new items' tokens;
    calibrated on `histories` when given (`catalogue.add_items`)."""
    from keras_seqrec.catalogue import add_items

    grown = _features_with_new_items(features, source)
    try:
        return add_items(model, grown, histories=histories), grown
    except ValueError as error:
        raise CliError(f"--new-items {source!r}: {error}") from None


def _features_with_new_items(features, source: str):
    """A feature-aware run's saved `features` plus the new items of the CSV `source`."""
    import pandas as pd

    if features is None:
        raise CliError("--new-items needs a run trained with --item-features: only its "
                       "model can score items from their features.")
    if not os.path.exists(source):
        raise CliError(f"--new-items {source!r} does not exist.")
    try:
        id_type = "int64" if features.vocabulary.id_dtype == "int" else "str"
        frame = pd.read_csv(source, dtype={"item": id_type})
        return features.with_new_items(frame)
    except (ValueError, KeyError) as error:
        raise CliError(f"--new-items {source!r}: {error}") from None


def _read_histories(args) -> list[list[str]]:
    """--history values (comma-separated) and --history-file lines (a JSON list of ids, or ids
    separated by tabs), in that order."""
    histories = [h.split(",") if h else [] for h in args.history or []]
    if args.history_file:
        if args.history_file == "-":
            text = sys.stdin.read()
        else:
            if not os.path.isfile(args.history_file):
                raise CliError(f"--history-file {args.history_file!r} is not a file.")
            with open(args.history_file, encoding="utf-8") as f:
                text = f.read()
        for number, line in enumerate(text.splitlines(), 1):
            line = line.rstrip("\r\n")
            if line.lstrip().startswith("["):
                try:
                    ids = json.loads(line)
                except json.JSONDecodeError as error:
                    raise CliError(f"--history-file line {number}: not a JSON list "
                                   f"({error.msg}).") from None
                if not isinstance(ids, list):
                    raise CliError(f"--history-file line {number}: not a JSON list of ids.")
                histories.append([str(x) for x in ids])
            else:
                histories.append([x for x in line.split("\t") if x != ""])
    if not histories:
        raise CliError("give at least one history, with --history or --history-file.")
    return histories


def cmd_recommend(args) -> int:
    if args.k is not None and args.k < 1:
        raise CliError(f"-k must be >= 1; got {args.k}.")
    histories = _read_histories(args)
    from keras_seqrec.export import Recommender

    rec = Recommender(args.model_dir)
    if args.k is not None and args.k > rec.top_k:
        raise CliError(f"-k must be in 1..{rec.top_k} (this export's top_k); got {args.k}.")
    if args.card:
        print(rec.describe())
    if args.explain:
        try:
            answers = rec.explain(histories, k=args.k)
        except ValueError as e:
            raise CliError(str(e)) from None
    else:
        answers = [answer + (None,) for answer in rec.recommend(histories, k=args.k)]
    for history, (ids, scores, weights) in zip(histories, answers):
        print(f"history: {', '.join(rec.titles.get(i, i) for i in history) or '(empty)'}")
        for rank, (item, score) in enumerate(zip(ids, scores), 1):
            title = rec.titles.get(item, "")
            print(f"  {rank:>2}. {item:>8}  {score:9.4f}  {title}")
        if len(ids) < (args.k or rec.top_k):
            print(f"  (only {len(ids)} unseen items left to recommend)")
        if weights is not None and len(ids):
            _print_explanation(rec, history, ids[0], weights)
    return 0


def _print_explanation(rec, history, first, weights, shown: int = 5) -> None:
    """The history items that weigh most in the first recommendation, largest first."""
    import numpy as np

    method = rec.model_card.get("serving", {}).get("signatures", {}).get("explain", "")
    order = [i for i in np.argsort(-np.asarray(weights), kind="stable") if weights[i] != 0]
    print(f"  why {first} ({method.replace('_', '-') or 'weights'}):")
    if not order:
        print("    no known item in the history (the most popular items)")
    for i in order[:shown]:
        print(f"    {weights[i]:+8.4f}  {history[i]:>8}  {rec.titles.get(history[i], '')}")


def build_parser(train_defaults: Optional[dict] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-seqrec",
        description="Sequential recommendation with Keras: prepare data, train, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("stats", help="dataset statistics and split sizes")
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("train", help="train a model, print a metrics table, save it")
    _add_data_args(p)
    g = p.add_argument_group("model")
    g.add_argument("--model", default="gru_attention", help="a name from available_models()")
    g.add_argument("--embedding-dim", type=int)
    g.add_argument("--hidden-dim", type=int)
    g.add_argument("--num-layers", type=int)
    g.add_argument("--num-heads", type=int)
    g.add_argument("--attention-units", type=int)
    g.add_argument("--dropout", type=float)
    g.add_argument("--param", type=parse_param, action="append", default=[], metavar="KEY=VALUE",
                   help="any other hyperparameter of the model, e.g. --param embedding_dropout=0.5"
                   " (repeatable; `keras_seqrec.models.hyperparameters(name)` lists them)")
    g.add_argument("--item-features", default=None, metavar="SOURCE",
                   help="item features for the model (and the content baseline): 'movielens' "
                        "(genres and titles), an item2attributes .json, or a .csv with an item "
                        "column and one column per categorical field (values joined by '|')")
    g.add_argument("--text-features", nargs="+", default=[], metavar="COLUMN",
                   help="columns of the --item-features CSV holding free text (split into "
                        "words)")
    g.add_argument("--item2vec", action="store_true",
                   help="start the item embeddings from item2vec (models taking item_embeddings)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=40)
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--learning-rate", type=float, default=5e-3)
    g.add_argument("--lr-schedule", default="constant", choices=("constant", "plateau", "cosine"),
                   help="plateau: halve the rate when validation stalls for --plateau-patience "
                        "epochs; cosine: anneal it over the run (over --time-limit when given)")
    g.add_argument("--plateau-patience", type=int, default=2)
    g.add_argument("--weight-decay", type=float, default=0.0,
                   help="decoupled weight decay (AdamW) when above 0")
    g.add_argument("--adam-beta2", dest="adam_beta_2", type=float, default=0.999,
                   help="Adam's second-moment decay (the SASRec paper used 0.98)")
    g.add_argument("--new-item-share", type=float, default=None, metavar="SHARE",
                   help="with --cold-items and --item-features: the share of the probability "
                        "the new items draw after each epoch (default: their share of the "
                        "catalogue; benchmarks/NEW_ITEMS.md measures the trade)")
    g.add_argument("--patience", type=int, default=8, help="early-stopping patience (epochs)")
    g.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="start no epoch that would end after this many minutes (the best "
                        "epoch is kept)")
    g.add_argument("--validation-metric", default="ndcg@10")
    g.add_argument("--loss", default="softmax",
                   choices=("softmax", "sampled_softmax", "bce", "gbce", "bpr_max", "top1_max"),
                   help="full softmax (default) or a sampled loss for large catalogues")
    g.add_argument("--num-negatives", type=int, default=None,
                   help="negatives per step for the sampled losses")
    g.add_argument("--exclude-seen", action="store_true",
                   help="remove items already in the history from the rankings")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--distribution", default=None, metavar="data|model[:N]|mirrored",
                   help="train on every device JAX sees (KERAS_BACKEND=jax): 'data' "
                        "replicates the model, 'model:N' also splits the item tables over N "
                        "devices; on TensorFlow 'mirrored' replicates it with "
                        "MirroredStrategy (keras_seqrec.distribution)")
    g.add_argument("--tensorboard-dir", default=None)
    g.add_argument("--output", default=None,
                   help="run folder (default runs/<model>); it must be empty or missing, hold "
                        "an interrupted run of this same command (resumed), or --overwrite")
    g.add_argument("--overwrite", action="store_true",
                   help="empty an existing --output folder first (its earlier run is lost)")
    g.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    g.add_argument("--config", default=None, metavar="RESULT.json",
                   help="replay a run: take every data, model and training setting from a "
                        "run.json of `keras-seqrec train` or a benchmarks/results JSON; flags "
                        "given beside it override its values")
    p.set_defaults(**{"func": cmd_train, "config_params": {}, "config_dataset": None,
                      **(train_defaults or {})})

    p = sub.add_parser("evaluate", help="evaluate a trained run folder against the baselines "
                                        "on the data and split it was trained on")
    p.add_argument("--run-dir", required=True, help="folder written by `keras-seqrec train`")
    p.add_argument("--data-dir", default=None,
                   help="where the run's named dataset is, if not where it was")
    p.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=None,
                   help="never rank an item already in the history (default: as the run "
                        "was evaluated)")
    p.add_argument("-k", type=int, nargs="+", default=[5, 10, 20])
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a trained run as a TF Serving SavedModel")
    p.add_argument("--run-dir", required=True, help="folder written by `keras-seqrec train`")
    p.add_argument("--export-dir", default=None, help="default saved_models/<model>")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--new-items", default=None, metavar="FILE.csv",
                   help="add these items (an item column and the run's feature columns) to "
                        "the served catalogue, scored from their features; needs a run "
                        "trained with --item-features")
    p.add_argument("--keep-seen", action="store_true",
                   help="allow recommending items already in the history")
    p.add_argument("--jit-compile", action="store_true",
                   help="compile the model with XLA: several times faster on CPU, but TF "
                        "Serving must then run with --xla_cpu_compilation_enabled=true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("update", help="continue a finished run on new interactions, as a "
                                      "new run (new items join the catalogue)")
    p.add_argument("--run-dir", required=True, help="the finished run to start from (never "
                                                    "modified)")
    p.add_argument("--dataset", required=True,
                   help="the new interactions since that run trained: a CSV/Parquet log or "
                        "a 'user item item ...' file, with the columns of --user-col etc.")
    p.add_argument("--format", default=None, choices=("csv", "tsv", "parquet", "sequences"))
    p.add_argument("--user-col", default="user")
    p.add_argument("--item-col", default="item")
    p.add_argument("--time-col", default="timestamp")
    p.add_argument("--rating-col", default=None)
    p.add_argument("--data-dir", default=None,
                   help="where the run's own dataset is, if not where it was")
    p.add_argument("--new-items", default=None, metavar="FILE.csv",
                   help="for a run trained with --item-features: the new items' features "
                        "(an item column and the run's feature fields)")
    p.add_argument("--output", required=True, help="folder of the new run")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--epochs", type=int, default=10,
                   help="at most this many epochs (default 10)")
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience")
    p.add_argument("--keep-start-if-better", action="store_true",
                   help="when no epoch beats the starting model on validation (each user's "
                        "newest interaction), keep its weights (new items stay where they "
                        "started)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="default: twice the run's own")
    p.add_argument("--context", type=int, default=10,
                   help="train on each user's new interactions and this many items before "
                        "them (default 10; benchmarks/UPDATE.md); -1: the whole sequences")
    p.add_argument("--verbose", type=int, default=1)
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("recommend", help="recommend from an exported SavedModel")
    p.add_argument("--model-dir", required=True,
                   help="saved_models/<model>[/<version>]. A SavedModel is a program: load "
                        "only models you trust (loading a crafted one can write files)")
    p.add_argument("--history", nargs="+", default=None,
                   help="comma-separated raw item ids, oldest first; one per user")
    p.add_argument("--history-file", default=None, metavar="FILE",
                   help="one history per line, as a JSON list of ids or tab-separated ids "
                        "(for ids with commas); - reads standard input")
    p.add_argument("-k", type=int, default=None,
                   help="recommendations per history, 1..the export's top_k (default top_k)")
    p.add_argument("--card", action="store_true", help="print the model card first")
    p.add_argument("--explain", action="store_true",
                   help="also print the history items that led to the first recommendation, "
                        "with their weights (attention for gru_attention, else the score drop "
                        "when the item is left out)")
    p.set_defaults(func=cmd_recommend)
    return parser


def _raised_on_purpose(error: BaseException) -> bool:
    """Whether `error` was raised by keras-seqrec's own code (a checked mistake in the input),
    judged by the innermost frame of its traceback; anything else is a bug and keeps its
    traceback."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
    return filename.startswith(_PACKAGE_DIR + os.sep)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; a mistake in the input prints one `error: ...` line and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "config", None):
            # Parse again with the replayed run's settings as defaults: explicit flags win.
            args = build_parser(_config_defaults(args.config)).parse_args(argv)
        if getattr(args, "output", "unset") is None:
            args.output = os.path.join("runs", args.model)
        return args.func(args)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as error:
        if not _raised_on_purpose(error) or os.environ.get("KERAS_SEQREC_TRACEBACK"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
