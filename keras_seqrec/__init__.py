"""keras-seqrec: a Keras 3 model zoo for sequential (next-item) recommendation."""

import os as _os

# TensorFlow's INFO lines after start-up obey this; the lines it prints while loading do not, so
# the backend is imported inside `quiet_native_startup`, which drops only those (see _startup.py).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_seqrec._startup import import_keras as _import_keras  # noqa: E402

_keras = _import_keras()

if int(_keras.__version__.split(".")[0]) < 3:  # pragma: no cover
    raise ImportError(
        f"keras-seqrec needs Keras 3; found Keras {_keras.__version__}. "
        "Run `pip install -U 'keras>=3'`."
    )

from keras_seqrec import (  # noqa: E402
    baselines,
    catalogue,
    datasets,
    distribution,
    evaluation,
    export,
    item2vec,
    layers,
    losses,
    models,
    runs,
    training,
    update,
)
from keras_seqrec.data import (  # noqa: E402
    EvalSplit,
    SequenceDataset,
    Sequences,
    Vocabulary,
    prepare,
    prepare_parquet,
)
from keras_seqrec.evaluation import evaluate_recommender  # noqa: E402
from keras_seqrec.export import Recommender, export_saved_model  # noqa: E402
from keras_seqrec.models import available_models, build_model  # noqa: E402
from keras_seqrec.runs import Run, load_run  # noqa: E402
from keras_seqrec.training import fit_recommender  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "EvalSplit",
    "Recommender",
    "Run",
    "SequenceDataset",
    "Sequences",
    "Vocabulary",
    "__version__",
    "available_models",
    "baselines",
    "build_model",
    "catalogue",
    "datasets",
    "distribution",
    "evaluate_recommender",
    "evaluation",
    "export",
    "export_saved_model",
    "fit_recommender",
    "item2vec",
    "layers",
    "load_run",
    "losses",
    "models",
    "prepare",
    "prepare_parquet",
    "runs",
    "training",
    "update",
]
