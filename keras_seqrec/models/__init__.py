"""The model zoo. Importing a model module registers it; add a model by adding a module here."""

from keras_seqrec.models import (  # noqa: F401 (importing registers the models)
    gru4rec,
    gru_attention,
    gru_w2v,
    recurrent,
    sasrec,
)
from keras_seqrec.models.common import last_position_model, model_max_len
from keras_seqrec.models.gru_attention import attention_weights_model
from keras_seqrec.models.session import RecurrentSession
from keras_seqrec.models.registry import (
    available_models,
    build_model,
    hyperparameters,
    register_model,
)

__all__ = [
    "RecurrentSession",
    "attention_weights_model",
    "available_models",
    "build_model",
    "hyperparameters",
    "last_position_model",
    "model_max_len",
    "register_model",
]
