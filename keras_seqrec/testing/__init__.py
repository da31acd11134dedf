"""Test helpers: tiny hand-checkable data and the battery every registered model must pass."""

from keras_seqrec.testing.faults import SigkillAt
from keras_seqrec.testing.synthetic import deterministic_log

__all__ = ["SigkillAt", "deterministic_log"]
