"""The model registry: `register_model`, `build_model` and `available_models`."""

from __future__ import annotations

import difflib
import inspect
from typing import Callable

import keras

_MODELS: dict[str, Callable[..., keras.Model]] = {}


def register_model(name: str) -> Callable:
    """Decorator registering a builder `fn(num_items, max_len, **hyperparameters) -> keras.Model`.

    Example:

    >>> @register_model("my_model_for_doc")
    ... def my_model(num_items: int, max_len: int, embedding_dim: int = 8):
    ...     ...
    >>> "my_model_for_doc" in available_models()
    True
    >>> _ = _MODELS.pop("my_model_for_doc")
    """

    def decorator(fn: Callable) -> Callable:
        if name in _MODELS:
            raise ValueError(f"A model named {name!r} is already registered.")
        params = list(inspect.signature(fn).parameters)
        if params[:2] != ["num_items", "max_len"]:
            raise TypeError(
                f"Builder {fn.__name__} must take (num_items, max_len, ...); got {params}."
            )
        _MODELS[name] = fn
        return fn

    return decorator


def available_models() -> list[str]:
    """Names accepted by `build_model`, sorted."""
    return sorted(_MODELS)


def get_builder(name: str) -> Callable[..., keras.Model]:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown model {name!r}. Available models: {', '.join(available_models())}.{hint}"
        )
    return _MODELS[name]


def hyperparameters(name: str) -> dict:
    """The hyperparameters of a model and their defaults (`inspect.Parameter.empty` if none)."""
    params = inspect.signature(get_builder(name)).parameters
    return {k: p.default for k, p in params.items() if k not in ("num_items", "max_len")}


def build_model(name: str, num_items: int, max_len: int, **hyperparams) -> keras.Model:
    """Build a registered model by name.

    Args:
        name: one of `available_models()`.
        num_items: catalogue size without padding (`data.num_items`).
        max_len: input sequence length (`data.max_len`).
        **hyperparams: the builder's keyword arguments (see `hyperparameters(name)`).

    Returns:
        A functional `keras.Model` mapping left-padded item indices `(batch, length)` to logits
        `(batch, min(length, max_len), num_items + 1)` (column 0, padding, is masked to -1e9).
        Inputs longer than `max_len` are cut to their most recent `max_len` items; shorter
        ones (trimmed padding) give the same scores for the real positions, cheaper.

    Example:

    >>> model = build_model("gru_attention", num_items=100, max_len=20)
    >>> model.output_shape
    (None, None, 101)
    """
    builder = get_builder(name)
    valid = hyperparameters(name)
    unknown = [k for k in hyperparams if k not in valid]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, valid, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"Unknown hyperparameter(s) for model {name!r}: {', '.join(hints)}. "
            f"Valid ones: {', '.join(valid)}."
        )
    if not isinstance(num_items, int) or num_items < 1:
        raise ValueError(f"`num_items` must be a positive int; got {num_items!r}.")
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"`max_len` must be a positive int; got {max_len!r}.")
    return builder(num_items, max_len, **hyperparams)
