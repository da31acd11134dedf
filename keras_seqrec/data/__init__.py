"""Vocabulary, sequences, splits and tf.data pipelines."""

from keras_seqrec.data.dataset import EvalSplit, SequenceDataset, prepare
from keras_seqrec.data.sequences import Sequences
from keras_seqrec.data.vocabulary import PAD, Vocabulary

__all__ = ["PAD", "EvalSplit", "SequenceDataset", "Sequences", "Vocabulary", "prepare"]
