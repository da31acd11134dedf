"""`fit_recommender`: train any zoo model with full-ranking validation and early stopping."""

from __future__ import annotations

import json
import os
import time
from typing import Optional, Sequence

import keras
import numpy as np

from keras_seqrec.data import SequenceDataset
from keras_seqrec.data.pipeline import SampledBatches, as_fit_input
from keras_seqrec.evaluation import evaluate_recommender
from keras_seqrec.layers import CandidateLogits, FirstRow
from keras_seqrec.losses import PositionLoss, get_loss
from keras_seqrec.models.common import SEQUENCE_OUTPUT, model_max_len, output_layer
from keras_seqrec.sampling import PopularitySampler

_METRIC_NAMES = ("hr", "ndcg", "mrr", "coverage")


def _parse_metric(metric: str) -> tuple[str, int]:
    name, _, k = metric.partition("@")
    if name not in _METRIC_NAMES or not k.isdigit() or int(k) < 1:
        raise ValueError(
            f"`validation_metric` must look like 'ndcg@10' with one of {_METRIC_NAMES}; "
            f"got {metric!r}."
        )
    return name, int(k)


class RankingValidation(keras.callbacks.Callback):
    """After each epoch: full-ranking metrics on the validation split, early stopping on one of
    them, and the best weights kept (restored at the end when `restore_best`).

    Metrics land in the epoch logs as `val_hr@10`, `val_ndcg@10`, ... so the progress bar, the
    `History` and TensorBoard all show them. With a `checkpoint_dir` the best weights and the
    best score are saved there, so a resumed run remembers them.
    """

    def __init__(self, data: SequenceDataset, *, model: Optional[keras.Model] = None,
                 metric: str = "ndcg@10", patience: int = 3,
                 restore_best: bool = True, ks: Sequence[int] = (10,),
                 exclude_seen: bool = False, batch_size: int = 256,
                 checkpoint_dir: Optional[str] = None, verbose: int = 1):
        super().__init__()
        _parse_metric(metric)
        self.data = data
        self.eval_model = model  # the zoo model; None: the model being fitted
        self.metric = metric
        self.patience = patience
        self.restore_best = restore_best
        self.ks = sorted(set(ks) | {_parse_metric(metric)[1]})
        self.exclude_seen = exclude_seen
        self.batch_size = batch_size
        self.checkpoint_dir = checkpoint_dir
        self.verbose = verbose
        self.best = -np.inf
        self.best_epoch = -1
        self.best_weights = None
        self.stopped = False
        self._load_state()

    def _state_path(self):
        return os.path.join(self.checkpoint_dir, "best.json") if self.checkpoint_dir else None

    def _weights_path(self):
        return os.path.join(self.checkpoint_dir, "best_weights.npz")

    def _load_state(self):
        path = self._state_path()
        if path and os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
            self.best, self.best_epoch = state["best"], state["best_epoch"]

    @property
    def target(self) -> keras.Model:
        return self.eval_model if self.eval_model is not None else self.model

    def on_train_begin(self, logs=None):
        path = self._state_path()
        if path and os.path.exists(self._weights_path()) and self.best_weights is None:
            with np.load(self._weights_path()) as saved:
                self.best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        metrics = evaluate_recommender(
            self.target, self.data, "validation", ks=self.ks, exclude_seen=self.exclude_seen,
            batch_size=self.batch_size,
        )
        for key, value in metrics.items():
            if key != "examples":
                logs[f"val_{key}"] = value
        score = metrics[self.metric]
        if score > self.best:
            self.best, self.best_epoch = score, epoch
            self.best_weights = self.target.get_weights()
            if self.checkpoint_dir:
                os.makedirs(self.checkpoint_dir, exist_ok=True)
                np.savez(self._weights_path(),
                         **{f"w{i}": w for i, w in enumerate(self.best_weights)})
                with open(self._state_path(), "w") as f:
                    json.dump({"best": score, "best_epoch": epoch}, f)
        elif epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True
            self.stopped = True
            if self.verbose:
                print(f"\nEarly stopping: val_{self.metric} has not improved for "
                      f"{self.patience} epochs (best {self.best:.4f} at epoch "
                      f"{self.best_epoch + 1}).")

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_weights is not None:
            self.target.set_weights(self.best_weights)
            if self.verbose:
                print(f"Restored the weights of epoch {self.best_epoch + 1} "
                      f"(val_{self.metric} = {self.best:.4f}).")
        # The run finished: its resume state must not leak into a later run in the same folder
        # (like BackupAndRestore, which deletes its backup at this point).
        for path in (self._state_path(), self.checkpoint_dir and self._weights_path()):
            if path and os.path.exists(path):
                os.remove(path)


def fit_recommender(
    model: keras.Model,
    data: SequenceDataset,
    *,
    epochs: int = 20,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    optimizer: Optional[keras.optimizers.Optimizer] = None,
    loss="softmax",
    validation_metric: str = "ndcg@10",
    early_stopping_patience: int = 3,
    restore_best: bool = True,
    exclude_seen: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    tensorboard_dir: Optional[str] = None,
    checkpoint_dir: Optional[str] = None,
    time_limit: Optional[float] = None,
    seed: int = 0,
    verbose: int = 1,
) -> keras.callbacks.History:
    """Train a zoo model on next-item targets at every real position, with validation.

    Batches group sequences of similar length and drop their all-padding columns
    (`data.training_batches`), so logits are computed at few padded positions; the loss
    ignores the padded positions that remain and weighs every real position of the epoch
    alike (it sets the loss's `positions_per_batch`, see `losses.PositionLoss`).

    After each epoch the model is evaluated on the validation split with full ranking; training
    stops when `validation_metric` has not improved for `early_stopping_patience` epochs, and
    the best epoch's weights are restored (`restore_best`). The test split is never touched.

    Args:
        model: a model from `build_model` (compiled here unless it already is).
        data: a `SequenceDataset` from `prepare`.
        epochs: maximum number of epochs.
        batch_size: sequences per step.
        learning_rate: Adam's learning rate (ignored when `optimizer` is given).
        optimizer: a Keras optimizer to use instead of Adam.
        loss: a name from `keras_seqrec.losses.LOSSES` ("softmax", the default full softmax
            cross-entropy; "sampled_softmax", "bce", "gbce", "bpr_max", "top1_max") or a loss
            instance, e.g. `SampledSoftmax(num_negatives=1024, alpha=0.5)`. Sampled losses
            train through `sampled_training_model` and never compute catalogue-wide logits.
        validation_metric: e.g. "ndcg@10", "hr@10", "mrr@20".
        early_stopping_patience: epochs without improvement before stopping.
        restore_best: restore the best validation epoch's weights at the end.
        exclude_seen: validate with seen items removed from the ranking.
        callbacks: more Keras callbacks. They run after validation, so they can monitor
            `val_*` metrics, e.g. `keras.callbacks.ReduceLROnPlateau(monitor="val_ndcg@10",
            mode="max", factor=0.5, patience=2)` halves the learning rate whenever validation
            stalls for 2 epochs (the Amazon Beauty SASRec benchmark trains so).
        tensorboard_dir: write TensorBoard logs there (losses and validation metrics).
        checkpoint_dir: back up the training state there after every epoch; calling again with
            the same directory after an interruption resumes from the last finished epoch.
        time_limit: wall-clock seconds; no new epoch starts once they have passed (the epoch
            running then finishes and is validated, and the best epoch is still restored).
        seed: seeds Python, NumPy and the backend (dropout, shuffling). Initial weights are
            drawn when the model is built: call `keras.utils.set_random_seed(seed)` before
            `build_model` for a fully reproducible run (the CLI does).
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.

    Returns:
        The `keras.callbacks.History` of this call: `history.history` has `loss` and every
        `val_*` ranking metric per epoch; `history.best_epoch` and `history.best_score` tell
        which epoch was kept, `history.seconds_per_epoch` the mean epoch time and
        `history.stopped_by` why training ended ("epochs", "early_stopping" or "time_limit").

    Example:

    >>> import keras_seqrec as ks
    >>> data = ks.prepare(ks.datasets.load(), max_len=20, min_rating=3,
    ...                   min_item_interactions=20)
    >>> model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=16,
    ...                        hidden_dim=16)
    >>> history = fit_recommender(model, data, epochs=1, verbose=0)
    >>> sorted(history.history)[:3]
    ['loss', 'val_coverage@10', 'val_hr@10']
    """
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1; got {epochs}.")
    if model.output_shape[-1] != data.vocabulary.size:
        raise ValueError(
            f"The model scores {model.output_shape[-1]} columns but the dataset has "
            f"{data.num_items} items (+1 padding = {data.vocabulary.size}); build it with "
            "`num_items=data.num_items`."
        )
    if model_max_len(model) != data.max_len:
        raise ValueError(
            f"The model was built for max_len={model_max_len(model)} but the dataset has "
            f"max_len={data.max_len}; build it with `max_len=data.max_len`."
        )
    if len(data.validation) == 0:
        raise ValueError("The dataset has no validation examples to select epochs on.")
    if time_limit is not None and time_limit <= 0:
        raise ValueError(f"`time_limit` must be a positive number of seconds; got {time_limit}.")
    keras.utils.set_random_seed(seed)
    loss = get_loss(loss)
    batches = data.training_batches(batch_size=batch_size, seed=seed)
    if isinstance(loss, PositionLoss):
        # Batches are grouped by length: weigh every position alike, not every batch.
        loss.positions_per_batch = batches.positions_per_batch
    if getattr(loss, "sampled", False):
        if hasattr(loss, "set_num_items"):
            loss.set_num_items(data.num_items)
        sampler = PopularitySampler(data.item_counts(), alpha=loss.alpha, seed=seed)
        train_model = sampled_training_model(model, loss, sampler.log_q)
        batches = SampledBatches(batches, sampler, loss.num_negatives, loss.shared_negatives)
        train_model.compile(optimizer=optimizer or keras.optimizers.Adam(learning_rate),
                            loss=loss)
    else:
        train_model = model
        if optimizer is not None or not getattr(model, "compiled", False):
            model.compile(optimizer=optimizer or keras.optimizers.Adam(learning_rate),
                          loss=loss)
    train, steps = as_fit_input(batches)
    validation = RankingValidation(
        data, model=model, metric=validation_metric, patience=early_stopping_patience,
        restore_best=restore_best, exclude_seen=exclude_seen, checkpoint_dir=checkpoint_dir,
        verbose=verbose,
    )
    timer = _EpochTimer(time_limit, verbose)
    # Validation first, so every later callback (backup, TensorBoard, the user's) sees val_*.
    all_callbacks = [validation, timer]
    if checkpoint_dir:
        all_callbacks.append(
            keras.callbacks.BackupAndRestore(os.path.join(checkpoint_dir, "backup"))
        )
    if tensorboard_dir:
        all_callbacks.append(keras.callbacks.TensorBoard(tensorboard_dir))
    all_callbacks.extend(callbacks)
    history = train_model.fit(train, epochs=epochs, steps_per_epoch=steps,
                              callbacks=all_callbacks, verbose=verbose,
                              shuffle=False)  # batches shuffle with `seed`
    history.best_epoch = validation.best_epoch
    history.best_score = validation.best
    history.seconds_per_epoch = float(np.mean(timer.times)) if timer.times else 0.0
    history.stopped_by = ("time_limit" if timer.out_of_time else
                          "early_stopping" if validation.stopped else "epochs")
    return history


def sampled_training_model(model: keras.Model, loss, log_q=None) -> keras.Model:
    """A training model sharing `model`'s weights that scores targets and sampled negatives.

    Inputs `{"item_ids", "targets", "negatives"}` (see `SampledBatches`), output
    `(batch, length, 1 + num_negatives)` candidate scores for the sampled losses. Only those
    candidates are scored: memory does not grow with the catalogue.
    """
    hidden = model.get_layer(SEQUENCE_OUTPUT).output
    head, tied = output_layer(model)
    kwargs = {"reverse": True} if tied else {}
    targets = keras.Input(shape=(None,), dtype="int32", name="targets")
    if loss.shared_negatives:
        negatives = keras.Input(shape=(None,), dtype="int32", name="negatives")
        negative_ids = FirstRow(name="shared_negatives")(negatives)
    else:
        negatives = keras.Input(shape=(None, None), dtype="int32", name="negatives")
        negative_ids = negatives
    target_ids = keras.layers.Reshape((-1, 1), name="target_candidates")(targets)
    positive = head(hidden, candidates=target_ids, **kwargs)
    negative = head(hidden, candidates=negative_ids, **kwargs)
    scores = CandidateLogits(log_q if loss.log_q_correction else None, name="candidates")(
        positive, negative, targets, negative_ids
    )
    inputs = {"item_ids": model.inputs[0], "targets": targets, "negatives": negatives}
    return keras.Model(inputs, scores, name=f"{model.name}_sampled_training")


class _EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch's training steps (validation excluded); stops training
    at the end of the epoch during which `time_limit` seconds (since training began) passed."""

    def __init__(self, time_limit: Optional[float] = None, verbose: int = 0):
        super().__init__()
        self.times = []
        self.time_limit = time_limit
        self.verbose = verbose
        self.out_of_time = False

    def on_train_begin(self, logs=None):
        self._began = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(getattr(self, "_last", time.perf_counter()) - self._start)
        elapsed = time.perf_counter() - self._began
        if self.time_limit is not None and elapsed >= self.time_limit \
                and not self.model.stop_training:
            self.model.stop_training = True
            self.out_of_time = True
            if self.verbose:
                print(f"\nStopping: the time limit of {self.time_limit:g} s has passed "
                      f"({elapsed:.0f} s, {epoch + 1} epochs).")
