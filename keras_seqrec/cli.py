"""The `keras-seqrec` command line: each subcommand reads like the Python quickstart."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _load_interactions(args):
    from keras_seqrec import datasets

    source = args.dataset
    if source in datasets.available_datasets():
        return datasets.load(source, data_dir=args.data_dir)
    if os.path.exists(source):
        if source.endswith((".csv", ".parquet", ".pq", ".tsv")):
            return datasets.read_log(
                source, user_col=args.user_col, item_col=args.item_col,
                time_col=args.time_col, rating_col=args.rating_col,
                sep="\t" if source.endswith(".tsv") else ",",
            )
        return datasets.read_sequences(source)
    raise SystemExit(
        f"error: --dataset {source!r} is neither a known dataset "
        f"({', '.join(datasets.available_datasets())}) nor an existing file."
    )


def _prepare(args):
    from keras_seqrec import prepare

    log = _load_interactions(args)
    min_rating = args.min_rating
    if min_rating is not None and min_rating < 0:
        min_rating = None
    if min_rating is not None and not log.has_ratings:
        min_rating = None  # sequence files carry no ratings; every interaction counts
    return log, prepare(
        log,
        max_len=args.max_len,
        min_rating=min_rating,
        min_user_interactions=args.min_user_interactions,
        min_item_interactions=args.min_item_interactions,
    )


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="ml-latest-small",
                   help="a MovieLens name (ml-latest-small is bundled) or a path to a "
                        "CSV/Parquet log or a 'user item item ...' text file")
    g.add_argument("--data-dir", default=None, help="folder with an unzipped MovieLens release")
    g.add_argument("--max-len", type=int, default=50)
    g.add_argument("--min-rating", type=float, default=3.0,
                   help="implicit-feedback threshold where the data has ratings (-1: none)")
    g.add_argument("--min-user-interactions", type=int, default=5)
    g.add_argument("--min-item-interactions", type=int, default=5)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-seqrec",
        description="Sequential recommendation with Keras: prepare data, train, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("stats", help="dataset statistics and split sizes")
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=cmd_stats)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
