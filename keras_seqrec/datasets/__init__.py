"""Loaders: the MovieLens family (ml-latest-small bundled), generic logs and sequence files."""

from keras_seqrec.datasets.interactions import (
    FORMATS,
    Interactions,
    detect_format,
    from_dataframe,
    normalize_ids,
    read_interactions,
    read_log,
    read_sequences,
)
from keras_seqrec.datasets.movielens import available_datasets, bundled_path, load

__all__ = [
    "FORMATS",
    "Interactions",
    "available_datasets",
    "bundled_path",
    "detect_format",
    "from_dataframe",
    "normalize_ids",
    "read_interactions",
    "load",
    "read_log",
    "read_sequences",
]
