"""Test helpers: the battery every registered model must pass, tiny hand-checkable data, faults.

`check_model("my_model")` runs the zoo's model battery on a model of your own (see `battery`).
"""

from keras_seqrec.testing.battery import MODEL_CHECKS, check_model, sample_batch, small_builder
from keras_seqrec.testing.faults import SigkillAt
from keras_seqrec.testing.synthetic import (deterministic_log, drifting_log,
                                          synthetic_item_features)

__all__ = ["MODEL_CHECKS", "SigkillAt", "check_model", "deterministic_log", "drifting_log",
           "sample_batch", "small_builder", "synthetic_item_features"]
