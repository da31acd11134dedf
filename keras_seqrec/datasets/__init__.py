"""Loaders: the MovieLens family (ml-latest-small bundled), generic logs and sequence files."""

from keras_seqrec.datasets.interactions import (
    Interactions,
    from_dataframe,
    read_log,
    read_sequences,
)
from keras_seqrec.datasets.movielens import available_datasets, bundled_path, load

__all__ = [
    "Interactions",
    "available_datasets",
    "bundled_path",
    "from_dataframe",
    "load",
    "read_log",
    "read_sequences",
]
