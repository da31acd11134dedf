"""Vocabulary, sequences, `prepare` and its splits, item features, and the training batches."""

from keras_seqrec.data.dataset import EvalSplit, SequenceDataset
from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.data.out_of_core import prepare_parquet
from keras_seqrec.data.prepare import prepare
from keras_seqrec.data.sequences import Sequences
from keras_seqrec.data.vocabulary import PAD, Vocabulary

__all__ = ["PAD", "EvalSplit", "ItemFeatures", "SequenceDataset", "Sequences", "Vocabulary",
           "prepare", "prepare_parquet"]
