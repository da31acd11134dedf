"""keras-seqrec: a Keras 3 model zoo for sequential (next-item) recommendation."""

import os as _os

# Quiet TensorFlow C++ start-up chatter unless the user asked for it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras as _keras  # noqa: E402

if int(_keras.__version__.split(".")[0]) < 3:  # pragma: no cover
    raise ImportError(
        f"keras-seqrec needs Keras 3; found Keras {_keras.__version__}. "
        "Run `pip install -U 'keras>=3'`."
    )

from keras_seqrec import datasets, evaluation, item2vec, layers, losses, models, training  # noqa: E402,E501
from keras_seqrec.data import (  # noqa: E402
    EvalSplit,
    SequenceDataset,
    Sequences,
    Vocabulary,
    prepare,
)
from keras_seqrec.models import available_models, build_model  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "EvalSplit",
    "SequenceDataset",
    "Sequences",
    "Vocabulary",
    "__version__",
    "available_models",
    "build_model",
    "datasets",
    "item2vec",
    "layers",
    "models",
    "prepare",
]
