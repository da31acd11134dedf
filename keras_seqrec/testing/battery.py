"""The battery every zoo model passes, importable so that a new model is checked in one line.

A model passes when it keeps the zoo's contract: left-padded item indices in, scores over the
whole catalogue at every position out, padding never a candidate, no position seeing the
future, the same scores with trimmed padding or through `last_position_model`, an identical
`.keras` round trip, every weight training, `mixed_bfloat16`, and learning a next-item rule.

Example:

>>> from keras_seqrec.testing import check_model
>>> check_model("gru", checks=["output_shape_and_padding", "causal"])
['output_shape_and_padding', 'causal']

For a model of your own, register its builder (`keras_seqrec.models.register_model`) and pass
its name, or pass the builder itself: `check_model(my_builder)`, where
`my_builder(num_items, max_len, **hyperparameters)` returns the functional model. A failed
check raises `AssertionError` naming the check and the model.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from typing import Callable, Iterable, Optional, Union

import keras
import numpy as np
from keras import ops

NUM_ITEMS, MAX_LEN = 30, 8
Builder = Callable[..., keras.Model]


def small_builder(model: Union[str, Builder], **options) -> Callable[..., keras.Model]:
    """`build(num_items=30, max_len=8, **overrides)` making small versions of `model`.

    Widths are set to 16 (attention units to 8) where the builder has them, dropout to 0 (the
    learning checks need a deterministic fit), and a random matrix is passed for a required
    `item_embeddings`; `options` and `overrides` go to the builder unchanged, except an
    `item_features` given as a function, which is called with the catalogue size of each
    build (e.g. `keras_seqrec.testing.synthetic_item_features`).
    """
    from keras_seqrec.models import build_model, hyperparameters

    if isinstance(model, str):
        params = hyperparameters(model)
        make = lambda n, length, **kw: build_model(model, n, length, **kw)  # noqa: E731
    else:
        params = {k: p.default for k, p in inspect.signature(model).parameters.items()
                  if k not in ("num_items", "max_len")}
        make = model

    def build(num_items: int = NUM_ITEMS, max_len: int = MAX_LEN, **overrides) -> keras.Model:
        kwargs = {}
        for key, value in (("embedding_dim", 16), ("hidden_dim", 16), ("attention_units", 8),
                           ("dropout", 0.0)):
            if key in params:
                kwargs[key] = value
        if params.get("item_embeddings", None) is inspect.Parameter.empty:  # required
            rng = np.random.default_rng(0)
            kwargs["item_embeddings"] = rng.normal(size=(num_items + 1, 16)).astype("float32")
        kwargs.update(options)
        kwargs.update(overrides)
        if callable(kwargs.get("item_features")):
            kwargs["item_features"] = kwargs["item_features"](num_items)
        return make(num_items, max_len, **kwargs)

    return build


def sample_batch(seed: int = 0, n: int = 4) -> np.ndarray:
    """`(n, 8)` item indices in 1..30 with left padding in row 0 and one item in row 1."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, NUM_ITEMS + 1, size=(n, MAX_LEN)).astype("int32")
    x[0, :3] = 0  # left padding
    x[1, :MAX_LEN - 1] = 0  # a single item
    return x


def _numpy(model, x):
    return ops.convert_to_numpy(model(x, training=False))


def check_output_shape_and_padding(build: Builder) -> None:
    """Scores `(batch, max_len, num_items + 1)`; softmax puts exactly 0 on padding."""
    from keras_seqrec.models import model_max_len

    model = build()
    logits = model(sample_batch(), training=False)
    assert tuple(logits.shape) == (4, MAX_LEN, NUM_ITEMS + 1), logits.shape
    assert model_max_len(model) == MAX_LEN
    probs = ops.convert_to_numpy(ops.softmax(logits, axis=-1))
    assert np.all(probs[..., 0] == 0.0), "padding (index 0) gets probability"
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-5)


def check_causal(build: Builder) -> None:
    """Changing the items after position t changes no output up to t, and does change later."""
    model = build()
    x = sample_batch()
    reference = _numpy(model, x)
    for t in range(MAX_LEN - 1):
        changed = x.copy()
        changed[:, t + 1:] = (changed[:, t + 1:] % NUM_ITEMS) + 1  # new items after t
        out = _numpy(model, changed)
        np.testing.assert_allclose(out[:, : t + 1], reference[:, : t + 1], rtol=1e-5, atol=1e-5,
                                   err_msg=f"position <= {t} sees items after it")
        assert not np.allclose(out[:, t + 1:], reference[:, t + 1:]), "outputs ignore the input"


def check_trimmed_padding_and_long_inputs(build: Builder) -> None:
    """Dropping all-padding columns keeps the scores; inputs longer than max_len are cut."""
    model = build()
    x = sample_batch()
    x[:, :3] = 0  # three leading padding columns in every row
    full = _numpy(model, x)
    np.testing.assert_allclose(_numpy(model, x[:, 3:]), full[:, 3:], rtol=1e-4, atol=1e-5,
                               err_msg="trimming padding columns changes the scores")
    longer = np.concatenate([np.ones((len(x), 4), x.dtype), x], axis=1)
    np.testing.assert_array_equal(_numpy(model, longer), full,
                                  err_msg="items beyond max_len change the scores")


def check_last_position_model(build: Builder) -> None:
    """`last_position_model` (used by evaluation and serving) equals the full model's last row."""
    from keras_seqrec.models import last_position_model

    model = build()
    x = np.concatenate([sample_batch(), np.zeros((1, MAX_LEN), "int32")])  # + a padding row
    full = _numpy(model, x)[:, -1]
    np.testing.assert_allclose(_numpy(last_position_model(model), x), full, rtol=1e-5,
                               atol=1e-5)


def check_keras_file_round_trip(build: Builder) -> None:
    """`model.save(...keras)` then `load_model` gives identical outputs (layers registered)."""
    model = build()
    x = sample_batch()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_numpy(model, x), _numpy(loaded, x))


def check_training_reduces_the_loss(build: Builder) -> None:
    """30 steps cut the loss by 30%, every trainable weight changes, and items absent from the
    input train through a tied output layer."""
    from keras_seqrec.losses import SoftmaxCrossEntropy

    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=SoftmaxCrossEntropy())
    x = sample_batch(n=16)
    y = np.where(x == 0, 0, (x % NUM_ITEMS) + 1).astype("int32")
    names = [layer.name for layer in model.layers]
    embedding = model.get_layer("item_embedding") if "item_embedding" in names else None
    before = (ops.convert_to_numpy(embedding.item_table()).copy() if embedding is not None
              else None)
    trainable_before = [ops.convert_to_numpy(w) for w in model.trainable_weights]
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    last = model.evaluate(x, y, verbose=0)
    assert last < 0.7 * first, f"loss {first:.3f} -> {last:.3f} in 30 steps"
    # A variable captured as a constant in the functional graph (a position table, say) would
    # silently keep its initial value.
    for var, old in zip(model.trainable_weights, trainable_before):
        assert not np.allclose(ops.convert_to_numpy(var), old), f"{var.path} did not change"
    absent = np.setdiff1d(np.arange(1, NUM_ITEMS + 1), x)
    if embedding is not None and embedding.trainable and "item_scores" not in names and len(
            absent):
        after = ops.convert_to_numpy(embedding.item_table())
        assert not np.allclose(before[absent], after[absent]), "the tied output does not train"


def check_mixed_bfloat16(build: Builder) -> None:
    """Trains under `mixed_bfloat16` with a finite loss and returns float32 scores."""
    from keras_seqrec.losses import SoftmaxCrossEntropy

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build()
        model.compile(optimizer="adam", loss=SoftmaxCrossEntropy())
        x = sample_batch(n=8)
        y = np.where(x == 0, 0, (x % NUM_ITEMS) + 1).astype("int32")
        history = model.fit(x, y, epochs=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all(), history.history["loss"]
        assert model(x, training=False).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)


def check_learns_a_next_item_rule(build: Builder) -> None:
    """`fit_recommender` on a log whose next item is a function of the last reaches HR@1 >= 0.9."""
    from keras_seqrec.data import prepare
    from keras_seqrec.evaluation import evaluate_recommender
    from keras_seqrec.testing.synthetic import deterministic_log
    from keras_seqrec.training import fit_recommender

    data = prepare(deterministic_log(num_users=300, num_items=20, length=12), max_len=10)
    keras.utils.set_random_seed(0)
    model = build(data.num_items, data.max_len)
    fit_recommender(model, data, epochs=15, batch_size=32, learning_rate=1e-2,
                    early_stopping_patience=15, verbose=0)
    hr = evaluate_recommender(model, data, "test", cutoffs=[1])["hr@1"]
    assert hr >= 0.9, f"test HR@1 {hr:.3f} < 0.9"


MODEL_CHECKS: dict[str, Callable[[Builder], None]] = {
    "output_shape_and_padding": check_output_shape_and_padding,
    "causal": check_causal,
    "trimmed_padding_and_long_inputs": check_trimmed_padding_and_long_inputs,
    "last_position_model": check_last_position_model,
    "keras_file_round_trip": check_keras_file_round_trip,
    "training_reduces_the_loss": check_training_reduces_the_loss,
    "mixed_bfloat16": check_mixed_bfloat16,
    "learns_a_next_item_rule": check_learns_a_next_item_rule,
}


def check_model(model: Union[str, Builder], checks: Optional[Iterable[str]] = None,
                **options) -> list[str]:
    """Run the battery (or the named `checks`) on a registered model name or a builder.

    `options` are hyperparameters passed to every build (e.g. `num_layers=2`). Returns the
    names of the checks that passed, all of them; the first failure raises `AssertionError`
    whose message starts with the check's name.
    """
    names = list(MODEL_CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in MODEL_CHECKS]
    if unknown:
        raise ValueError(f"Unknown checks {unknown}; choose from {list(MODEL_CHECKS)}.")
    build = small_builder(model, **options)
    label = model if isinstance(model, str) else getattr(model, "__name__", repr(model))
    for name in names:
        try:
            MODEL_CHECKS[name](build)
        except AssertionError as error:
            raise AssertionError(f"{name} failed for {label}: {error}") from error
    return names
