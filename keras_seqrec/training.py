"""`fit_recommender`: train any zoo model with full-ranking validation and early stopping."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import time
import warnings
from typing import Optional, Sequence

import keras
import numpy as np

from keras_seqrec.data import SequenceDataset
from keras_seqrec.data.pipeline import (SampledBatches, ShardedBatches, TargetBatches,
                                        as_fit_input)
from keras_seqrec.evaluation import evaluate_recommender
from keras_seqrec.layers import CandidateLogits, FirstRow
from keras_seqrec.losses import (
    PositionLoss,
    PositionLossValues,
    SoftmaxCrossEntropy,
    get_loss,
)
from keras_seqrec.models.common import SEQUENCE_OUTPUT, model_max_len, output_layer
from keras_seqrec.sampling import PopularitySampler

_METRIC_NAMES = ("hr", "ndcg", "mrr", "coverage")
DEFAULT_LEARNING_RATE = 1e-3  # Adam's, when neither a rate nor an optimizer is given


def _parse_metric(metric: str) -> tuple[str, int]:
    name, _, k = metric.partition("@")
    if name not in _METRIC_NAMES or not k.isdigit() or int(k) < 1:
        raise ValueError(
            f"`validation_metric` must look like 'ndcg@10' with one of {_METRIC_NAMES}; "
            f"got {metric!r}."
        )
    return name, int(k)


def _validation_metrics(model, data: SequenceDataset, metric: str = "ndcg@10", *,
                        cutoffs: Sequence[int] = (), exclude_seen: bool = False,
                        batch_size: int = 256) -> dict:
    """Full-ranking metrics of `model` on `data`'s validation split at `cutoffs` and at
    `metric`'s own cutoff; coverage only when `metric` is a coverage (it needs every user's
    top-K list)."""
    kind, cutoff = _parse_metric(metric)
    return evaluate_recommender(model, data, "validation",
                                cutoffs=sorted(set(cutoffs) | {cutoff}),
                                exclude_seen=exclude_seen, batch_size=batch_size,
                                coverage=kind == "coverage")


class RankingValidation(keras.callbacks.Callback):
    """After each epoch: full-ranking metrics on the validation split, early stopping on one of
    them, and the best weights kept (restored at the end when `restore_best`).

    Metrics land in the epoch logs as `val_hr@10`, `val_ndcg@10`, `val_mrr@10` so the progress
    bar, the `History` and TensorBoard all show them; coverage@K only when it is the validation
    metric (it needs every user's top-K list, and the final evaluation reports it anyway). An
    epoch whose training loss is not finite is never kept: training stops there (`diverged`)
    and the best earlier epoch is restored.
    """

    def __init__(self, data: SequenceDataset, *, model: Optional[keras.Model] = None,
                 metric: str = "ndcg@10", patience: int = 3,
                 restore_best: bool = True, cutoffs: Sequence[int] = (10,),
                 exclude_seen: bool = False, batch_size: int = 256, verbose: int = 1):
        super().__init__()
        _parse_metric(metric)
        self.data = data
        self.eval_model = model  # the zoo model; None: the model being fitted
        self.metric = metric
        self.patience = patience
        self.restore_best = restore_best
        self.cutoffs = sorted(set(cutoffs) | {_parse_metric(metric)[1]})
        self.exclude_seen = exclude_seen
        self.batch_size = batch_size
        self.verbose = verbose
        self.best = -np.inf
        self.best_epoch = -1
        self.best_weights = None
        self.stopped = False
        self.diverged = None  # (epoch, loss) of a diverged epoch

    @property
    def target(self) -> keras.Model:
        return self.eval_model if self.eval_model is not None else self.model

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        loss = logs.get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.diverged = (epoch, float(loss))
            self.model.stop_training = True
            print(f"\nTraining diverged: the loss is {float(loss)} in epoch {epoch + 1}. "
                  "Stopping; the best earlier epoch is kept. Lower the learning rate.")
            return
        metrics = _validation_metrics(self.target, self.data, self.metric,
                                      cutoffs=self.cutoffs, exclude_seen=self.exclude_seen,
                                      batch_size=self.batch_size)
        for key, value in metrics.items():
            if key not in ("examples", "repeat_targets"):
                logs[f"val_{key}"] = value
        score = metrics[self.metric]
        if score > self.best:
            self.best, self.best_epoch = score, epoch
            self.best_weights = self.target.get_weights()
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


class NewItemCalibration(keras.callbacks.Callback):
    """After each epoch, before validation: put the cold-start split's new items on the same
    footing as the trained ones (`catalogue.calibrate_new_items`: their output bias is set so
    that they draw their share of the catalogue's probability over the users' histories).

    The histories are a seeded sample of the users' validation inputs (their training
    sequences; the targets are not read); `share` None is the new items' share of the
    catalogue. The calibration is part of the weights, so the
    kept epoch, checkpoints and exports carry it.
    """

    def __init__(self, data: SequenceDataset, model: keras.Model, samples: int = 4096,
                 seed: int = 0, share: Optional[float] = None):
        from keras_seqrec.catalogue import calibration_histories

        super().__init__()
        self.target_model, self.new_items, self.share = model, data.cold_mask(), share
        self.histories = calibration_histories(data.validation.inputs(data.max_len), samples,
                                               seed)
        self.offset = None

    def on_epoch_end(self, epoch, logs=None):
        from keras_seqrec.catalogue import calibrate_new_items

        self.offset = calibrate_new_items(self.target_model, self.histories, self.new_items,
                                          share=self.share)


def calibrates_new_items(model: keras.Model, data: SequenceDataset) -> bool:
    """Whether `fit_recommender` calibrates `model`'s new items on `data`: a cold-start split
    and a feature-aware model with id embeddings (the only kind whose new items differ from
    its trained ones)."""
    from keras_seqrec.catalogue import new_item_bias_layer

    return len(data.cold_items) > 0 and new_item_bias_layer(model) is not None


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def dataset_fingerprint(data: SequenceDataset) -> str:
    """A short hash of what training and validation read from `data` (vocabulary, training
    sequences, validation and test examples, `max_len`): equal fingerprints, same data."""
    ids = np.asarray([str(x) for x in data.vocabulary.ids]).astype("U")
    parts = [ids, np.asarray([data.max_len]), data.train.values, data.train.offsets]
    for split in (data.validation, data.test):
        parts += [split.targets, split.history.values, split.history.offsets]
    return _digest(parts)


def _run_fingerprint(model: keras.Model, data: SequenceDataset, settings: dict) -> dict:
    """What must match for a checkpoint to be resumed: the model's name, architecture and
    initial weights, the data, and the training `settings`. A mismatch names the keys that
    differ."""
    def text_digest(value) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()
                              ).hexdigest()[:16]

    return {
        "model": model.name,
        "architecture": text_digest(model.get_config()),
        "initial_weights": _digest(model.get_weights()),
        "data": dataset_fingerprint(data),
        "training": json.dumps(settings, sort_keys=True, default=str),
    }


def _is_state_file(name: str) -> bool:
    return name == "state.json" or name.endswith((".npz", ".tmp"))


class _Checkpoint(keras.callbacks.Callback):
    """Everything a faithful resume needs, saved atomically at the end of every epoch.

    `<dir>/state.json` names the files of the last finished epoch; it is replaced with
    `os.replace`, so a process killed at any moment leaves either the previous epoch's state
    or the new one, never a mix. The state holds every model variable (dropout seed states
    included), the optimizer's variables, the epoch, the history so far, the best epoch and its
    weights, and the run's fingerprint (model name and architecture, initial weights, data,
    training settings).
    """

    def __init__(self, directory: str, fingerprint: dict, train_model: keras.Model,
                 validation: RankingValidation, timer: "_EpochTimer"):
        super().__init__()
        self.directory = directory
        self.fingerprint = fingerprint
        self.train_model = train_model
        self.validation = validation
        self.timer = timer
        self.history: dict[str, list] = {}
        self.epoch = -1  # last finished epoch

    @property
    def state_path(self) -> str:
        return os.path.join(self.directory, "state.json")

    def load(self) -> bool:
        """Restore a saved state; False when there is none. Raises on a different run's."""
        if not os.path.exists(self.state_path):
            return False
        with open(self.state_path) as f:
            state = json.load(f)
        saved = state.get("fingerprint", {})
        differs = [k for k in sorted(set(saved) | set(self.fingerprint))
                   if saved.get(k) != self.fingerprint.get(k)]
        if differs:
            hint = (" (initial weights differ: build the model after "
                    "`keras.utils.set_random_seed(seed)` as the interrupted run did)"
                    if "initial_weights" in differs else "")
            raise ValueError(
                f"checkpoint_dir {self.directory!r} holds an unfinished run with a different "
                f"{', '.join(differs)}{hint}; resuming it would mix two runs. Delete that "
                "folder or pass another checkpoint_dir (CLI: --overwrite starts afresh)."
            )
        with np.load(os.path.join(self.directory, state["variables"])) as saved_vars:
            model_values = [saved_vars[f"m{i}"] for i in range(state["num_model_variables"])]
            opt_values = [saved_vars[f"o{i}"] for i in range(state["num_optimizer_variables"])]
        optimizer = self.train_model.optimizer
        if not optimizer.built:
            optimizer.build(self.train_model.trainable_variables)
        for variables, values in ((self.train_model.variables, model_values),
                                  (optimizer.variables, opt_values)):
            if len(variables) != len(values):
                raise ValueError(f"The checkpoint in {self.directory!r} does not fit this "
                                 "model; delete it to start afresh.")
            for variable, value in zip(variables, values):
                variable.assign(value)
        v = self.validation
        v.best, v.best_epoch = state["best"], state["best_epoch"]
        if state.get("best_weights"):
            with np.load(os.path.join(self.directory, state["best_weights"])) as best:
                v.best_weights = [best[f"w{i}"] for i in range(len(best.files))]
        self.timer.times = list(state["epoch_seconds"])
        self.history = state["history"]
        self.epoch = state["epoch"]
        return True

    def _write(self, name: str, arrays: dict) -> None:
        tmp = os.path.join(self.directory, f".{name}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, os.path.join(self.directory, name))

    def on_epoch_end(self, epoch, logs=None):
        if self.validation.diverged is not None:
            return  # never save a diverged state
        logs = logs or {}
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        os.makedirs(self.directory, exist_ok=True)
        optimizer = self.train_model.optimizer
        variables = f"variables-{epoch}.npz"
        self._write(variables, {
            **{f"m{i}": np.asarray(v) for i, v in enumerate(self.train_model.variables)},
            **{f"o{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)},
        })
        best = f"best-{self.validation.best_epoch}.npz"
        if self.validation.best_weights is not None and not os.path.exists(
                os.path.join(self.directory, best)):
            self._write(best, {f"w{i}": w for i, w in enumerate(self.validation.best_weights)})
        state = {
            "fingerprint": self.fingerprint, "epoch": epoch, "variables": variables,
            "num_model_variables": len(self.train_model.variables),
            "num_optimizer_variables": len(optimizer.variables),
            "best": float(self.validation.best), "best_epoch": self.validation.best_epoch,
            "best_weights": best if self.validation.best_weights is not None else None,
            "epoch_seconds": list(self.timer.times), "history": self.history,
        }
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.state_path)
        self.epoch = epoch
        keep = {variables, state["best_weights"], "state.json"}
        for name in os.listdir(self.directory):
            if name not in keep and _is_state_file(name):
                os.remove(os.path.join(self.directory, name))

    def clear(self) -> None:
        """Remove the resume state of a finished run, so a later run starts afresh."""
        if not os.path.isdir(self.directory):
            return
        for name in os.listdir(self.directory):
            if _is_state_file(name):
                os.remove(os.path.join(self.directory, name))
        if not os.listdir(self.directory):
            os.rmdir(self.directory)


def _check_positive(name: str, value, integer: bool = False) -> None:
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(
        value, (int, float, np.integer, np.floating))
    if isinstance(value, bool) or not ok_type or not np.isfinite(value) or value <= 0:
        kind = "an integer >= 1" if integer else "a finite number > 0"
        raise ValueError(f"`{name}` must be {kind}; got {value!r}.")


LEARNING_RATE_SCHEDULES = (None, "plateau", "cosine")


def check_training_arguments(*, epochs=1, batch_size=1, learning_rate=1e-3,
                             early_stopping_patience=1, time_limit=None,
                             validation_metric="ndcg@10", num_negatives=None,
                             num_items=None, learning_rate_schedule=None,
                             plateau_patience=1, weight_decay=0.0,
                             adam_beta_2=0.999, new_item_share=None) -> None:
    """Raise `ValueError` naming the first bad training argument (the CLI calls this before
    it loads any data; `fit_recommender` calls it too).

    Example:

    >>> check_training_arguments(learning_rate=-1)
    Traceback (most recent call last):
    ...
    ValueError: `learning_rate` must be a finite number > 0; got -1.
    """
    _check_positive("epochs", epochs, integer=True)
    _check_positive("batch_size", batch_size, integer=True)
    _check_positive("learning_rate", learning_rate)
    _check_positive("early_stopping_patience", early_stopping_patience, integer=True)
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) \
                or not time_limit > 0:
            raise ValueError(
                f"`time_limit` must be a positive number of seconds; got {time_limit!r}.")
    _parse_metric(validation_metric)
    if learning_rate_schedule not in LEARNING_RATE_SCHEDULES:
        raise ValueError(f"`learning_rate_schedule` must be one of "
                         f"{', '.join(map(repr, LEARNING_RATE_SCHEDULES))}; got "
                         f"{learning_rate_schedule!r}.")
    _check_positive("plateau_patience", plateau_patience, integer=True)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
            or not 0.0 <= weight_decay < float("inf"):
        raise ValueError(f"`weight_decay` must be a finite number >= 0; got {weight_decay!r}.")
    if isinstance(adam_beta_2, bool) or not isinstance(adam_beta_2, (int, float)) \
            or not 0.0 < adam_beta_2 < 1.0:
        raise ValueError(f"`adam_beta_2` must be in (0, 1); got {adam_beta_2!r}.")
    if new_item_share is not None and (
            isinstance(new_item_share, bool) or not isinstance(new_item_share, (int, float))
            or not 0.0 < new_item_share < 1.0):
        raise ValueError(f"`new_item_share` must be in (0, 1); got {new_item_share!r}.")
    if num_negatives is not None:
        _check_positive("num_negatives", num_negatives, integer=True)
        if num_items is not None and num_negatives >= num_items:
            raise ValueError(
                f"`num_negatives` ({num_negatives:,}) must be smaller than the catalogue "
                f"({num_items:,} items); a few hundred to a few thousand is typical, and the "
                "full softmax (loss='softmax') is exact when the catalogue is this small."
            )


def fit_recommender(
    model: keras.Model,
    data: SequenceDataset,
    *,
    epochs: int = 20,
    batch_size: int = 128,
    learning_rate: Optional[float] = None,
    learning_rate_schedule: Optional[str] = None,
    plateau_patience: int = 2,
    optimizer: Optional[keras.optimizers.Optimizer] = None,
    weight_decay: float = 0.0,
    adam_beta_2: float = 0.999,
    loss="softmax",
    validation_metric: str = "ndcg@10",
    early_stopping_patience: int = 3,
    restore_best: bool = True,
    exclude_seen: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    tensorboard_dir: Optional[str] = None,
    checkpoint_dir: Optional[str] = None,
    time_limit: Optional[float] = None,
    new_item_share: Optional[float] = None,
    seed: int = 0,
    verbose: int = 1,
) -> keras.callbacks.History:
    """Train a zoo model on next-item targets at every real position, with validation.

    Batches group sequences of similar length and drop their all-padding columns
    (`data.training_batches`), so logits are computed at few padded positions; the loss
    ignores the padded positions that remain and weighs every real position of the epoch
    alike (it sets the loss's `positions_per_batch` on a copy, see `losses.PositionLoss`).

    After each epoch the model is evaluated on the validation split with full ranking; training
    stops when `validation_metric` has not improved for `early_stopping_patience` epochs, and
    the best epoch's weights are restored (`restore_best`). The test split is never touched.
    An epoch whose loss is not finite stops training (`history.stopped_by == "diverged"`) and
    is never kept; if the first epoch diverges, `FloatingPointError` is raised.

    On a cold-start split (`prepare(..., cold_items=share)`) the new items never train; a
    feature-aware model scores them from their features, and after every epoch, before
    validation, their output bias is set so that they draw their share of the catalogue's
    probability, or `new_item_share` of it (`NewItemCalibration`,
    `catalogue.calibrate_new_items`).

    The model is always compiled here with `loss` and `optimizer` (or Adam at
    `learning_rate`), whether or not it was compiled before; the caller's loss object is
    never changed.

    Args:
        model: a model from `build_model`.
        data: a `SequenceDataset` from `prepare`.
        epochs: maximum number of epochs.
        batch_size: sequences per step.
        learning_rate: Adam's learning rate (default 1e-3). With an `optimizer` it may be
            left out; given, it must equal the optimizer's own.
        learning_rate_schedule: None keeps the rate constant. "plateau" halves it whenever
            `validation_metric` has not improved for `plateau_patience` epochs (down to 1/64
            of the start; the Amazon Beauty and ML-1M SASRec results train so). "cosine"
            anneals it from `learning_rate` to 1/100 of it along a half cosine over the whole
            run: over `time_limit` seconds of wall clock when one is given (budgeted training:
            the best model this many minutes buy, `benchmarks/SPEED.md`), else over `epochs`.
            Early stopping still applies. A wall-clock schedule resumed from a checkpoint
            starts its clock again; the others resume exactly.
        plateau_patience: epochs without improvement before "plateau" halves the rate.
        optimizer: a Keras optimizer to use instead of Adam.
        weight_decay: decoupled weight decay; above 0 the optimizer is AdamW (Loshchilov &
            Hutter) instead of Adam.
        adam_beta_2: Adam's second-moment decay (Keras' default 0.999; the SASRec paper used
            0.98).
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
            stalls for 2 epochs (the Amazon Beauty SASRec benchmark trains so). Their own
            state is not part of a checkpoint.
        tensorboard_dir: write TensorBoard logs there (losses and validation metrics).
        checkpoint_dir: save the whole training state there after every epoch (atomically).
            Calling again with the same directory, model (built after the same
            `keras.utils.set_random_seed`), data and settings after an interruption, even a
            `kill -9`, resumes from the last finished epoch and ends with the same weights and
            metrics as an uninterrupted run. A state left by a different run is an error,
            never resumed. A finished run removes its state.
        time_limit: wall-clock seconds of this call; no new epoch starts that, at the pace
            of the epochs so far (validation included; the first, which traces, only when it
            is the only one), would end after them. The first epoch always runs, and the best
            epoch is still restored.
        new_item_share: on a cold-start split with a feature-aware model, the share of the
            probability the new items draw over the users' histories after each epoch (in
            (0, 1)); None: their share of the catalogue. Larger shows them more, at the warm
            targets' expense (`benchmarks/NEW_ITEMS.md` measures the trade).
        seed: seeds Python, NumPy and the backend (dropout, shuffling). Initial weights are
            drawn when the model is built: call `keras.utils.set_random_seed(seed)` before
            `build_model` for a fully reproducible run (the CLI does).
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.

    Returns:
        The `keras.callbacks.History` of the whole run (resumed epochs included):
        `history.history` has `loss` and every `val_*` ranking metric per epoch;
        `history.best_epoch` and `history.best_score` tell which epoch was kept,
        `history.seconds_per_epoch` the mean epoch time and `history.stopped_by` why training
        ended ("epochs", "early_stopping", "time_limit" or "diverged").

    Example:

    >>> import keras_seqrec as ks
    >>> data = ks.prepare(ks.datasets.load(), max_len=20, min_rating=3,
    ...                   min_item_interactions=20)
    >>> model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=16,
    ...                        hidden_dim=16)
    >>> history = fit_recommender(model, data, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['loss', 'val_hr@10', 'val_mrr@10', 'val_ndcg@10']
    """
    loss = copy.copy(get_loss(loss))  # set up below: never change the caller's object
    own_rate = (None if optimizer is None
                else float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
    if own_rate is not None and learning_rate is not None and not np.isclose(own_rate,
                                                                             learning_rate):
        raise ValueError(f"`learning_rate`={learning_rate:g} differs from the optimizer's own "
                         f"({own_rate:g}); pass one.")
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATE if own_rate is None else own_rate
    if optimizer is not None and (weight_decay != 0.0 or adam_beta_2 != 0.999):
        raise ValueError("`weight_decay` and `adam_beta_2` configure the Adam optimizer "
                         "fit_recommender builds; with your own `optimizer`, set them on it.")
    if learning_rate_schedule is not None and optimizer is not None \
            and not hasattr(optimizer.learning_rate, "assign"):
        raise ValueError(f"The optimizer has its own learning-rate schedule; leave out "
                         f"`learning_rate_schedule={learning_rate_schedule!r}`.")
    check_training_arguments(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        early_stopping_patience=early_stopping_patience, time_limit=time_limit,
        validation_metric=validation_metric, learning_rate_schedule=learning_rate_schedule,
        plateau_patience=plateau_patience, weight_decay=weight_decay, adam_beta_2=adam_beta_2,
        num_negatives=getattr(loss, "num_negatives", None) if getattr(loss, "sampled", False)
        else None, num_items=data.num_items, new_item_share=new_item_share,
    )
    calibrates = calibrates_new_items(model, data)
    if new_item_share is not None and not calibrates:
        raise ValueError("`new_item_share` sets how much a feature-aware model's new items "
                         "draw on a cold-start split (prepare(..., cold_items=share)); "
                         "here there are none to calibrate: leave it out.")
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
    keras.utils.set_random_seed(seed)
    train_model, batches, train_loss = training_setup(model, data, loss, batch_size=batch_size,
                                                      seed=seed)
    if optimizer is None:
        optimizer = (keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay,
                                            beta_2=adam_beta_2) if weight_decay > 0
                     else keras.optimizers.Adam(learning_rate, beta_2=adam_beta_2))
    train_model.compile(optimizer=optimizer, loss=train_loss)
    if isinstance(train_loss, PositionLossValues):
        # Trained through the fused model; the zoo model is compiled as the docstring says,
        # so `model.evaluate(x, y)` and `model.loss` work as before (same optimizer object).
        model.compile(optimizer=optimizer, loss=loss)
    validation = RankingValidation(
        data, model=model, metric=validation_metric, patience=early_stopping_patience,
        restore_best=restore_best, exclude_seen=exclude_seen, verbose=verbose,
    )
    timer = _EpochTimer(time_limit, verbose)
    initial_epoch = 0
    checkpoint = None
    if checkpoint_dir:
        settings = {
            "seed": seed, "batch_size": batch_size, "loss": loss.get_config(),
            "optimizer": {k: v for k, v in optimizer.get_config().items() if k != "name"},
            "validation_metric": validation_metric,
            "early_stopping_patience": early_stopping_patience,
            "exclude_seen": bool(exclude_seen), "restore_best": bool(restore_best),
            "learning_rate_schedule": learning_rate_schedule,
            "plateau_patience": plateau_patience if learning_rate_schedule == "plateau" else None,
            # a resumed run must calibrate its new items as it started (absent: the default)
            **({"new_item_share": new_item_share} if new_item_share is not None else {}),
        }
        checkpoint = _Checkpoint(os.fspath(checkpoint_dir), _run_fingerprint(
            model, data, settings), train_model, validation, timer)
        if checkpoint.load():
            initial_epoch = checkpoint.epoch + 1
            batches.start_at_epoch(initial_epoch)
            if verbose:
                print(f"Resuming from {checkpoint_dir} after epoch {initial_epoch} "
                      f"(best val_{validation_metric} {validation.best:.4f} at epoch "
                      f"{validation.best_epoch + 1}).")
            if initial_epoch - 1 - validation.best_epoch >= early_stopping_patience:
                validation.stopped = True  # it had early-stopped: nothing left to train
                initial_epoch = epochs
            initial_epoch = min(initial_epoch, epochs)
    train, steps = as_fit_input(batches)
    # Validation first, so every later callback (checkpoint, TensorBoard, the user's) sees val_*.
    all_callbacks = [keras.callbacks.TerminateOnNaN(), validation, timer]
    if calibrates:  # before validation scores them
        all_callbacks.insert(1, NewItemCalibration(data, model, seed=seed,
                                                   share=new_item_share))
    if learning_rate_schedule == "plateau":  # after validation: it reads val_*
        all_callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=f"val_{validation_metric}", mode="max", factor=0.5,
            patience=plateau_patience, min_lr=learning_rate / 64, verbose=min(verbose, 1)))
    elif learning_rate_schedule == "cosine":
        all_callbacks.append(_CosineLearningRate(learning_rate, epochs=epochs, steps=steps,
                                                 seconds=time_limit))
    if checkpoint is not None:
        all_callbacks.append(checkpoint)
    if tensorboard_dir:
        all_callbacks.append(keras.callbacks.TensorBoard(tensorboard_dir))
    all_callbacks.extend(callbacks)
    if initial_epoch < epochs:
        history = train_model.fit(train, epochs=epochs, steps_per_epoch=steps,
                                  initial_epoch=initial_epoch, callbacks=all_callbacks,
                                  verbose=verbose, shuffle=False)  # batches shuffle with `seed`
    else:
        history = keras.callbacks.History()
        validation.on_train_end()
    if checkpoint is not None:
        history.history = {k: list(v) for k, v in checkpoint.history.items()}
    if validation.diverged is not None and validation.best_weights is None:
        epoch, value = validation.diverged
        raise FloatingPointError(
            f"Training diverged in epoch {epoch + 1} (loss {value}) before any epoch could be "
            f"kept; lower the learning rate (it was {learning_rate:g})."
        )
    if checkpoint is not None:
        checkpoint.clear()
    history.best_epoch = validation.best_epoch
    history.best_score = validation.best
    history.seconds_per_epoch = float(np.mean(timer.times)) if timer.times else 0.0
    history.stopped_by = ("diverged" if validation.diverged is not None else
                          "time_limit" if timer.out_of_time else
                          "early_stopping" if validation.stopped else "epochs")
    return history


def starts_from_item2vec(model_name: str, item2vec: bool = False) -> bool:
    """Whether `build_and_fit` starts the model's item embeddings from item2vec: always for a
    model that requires them (`gru_w2v`), with `item2vec` for any model that takes them."""
    from keras_seqrec.models import hyperparameters

    accepts = hyperparameters(model_name)
    return "item_embeddings" in accepts and (accepts["item_embeddings"] is not None or item2vec)


def build_and_fit(
    model_name: str,
    data: SequenceDataset,
    hyperparameters: Optional[dict] = None,
    *,
    item2vec: bool = False,
    item_features=None,
    seed: int = 0,
    distribution=None,
    **fit_args,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Seed, build the registered model (item2vec embeddings first where asked), and train it.

    The one path every command takes: `keras-seqrec train` and `benchmarks/run.py` both call
    it, so a result JSON from either can be replayed exactly (`keras-seqrec train --config`).
    Item2vec starts the item embeddings of a model that requires them (`gru_w2v`) or, with
    `item2vec=True`, of any model taking `item_embeddings`; its width is the model's
    `embedding_dim` (64 by default).

    Args:
        model_name: one of `available_models()`.
        data: a `SequenceDataset` from `prepare`.
        hyperparameters: the builder's keyword arguments (see `models.hyperparameters`).
        item2vec: start the item embeddings from item2vec.
        item_features: an `ItemFeatures` of `data.vocabulary` for the model's items (kept
            apart from `hyperparameters`, which stay plain values a result JSON can record).
        seed: seeds the initial weights, item2vec and training.
        distribution: build and train on several devices: `"data"`, `"model"`,
            `"model:N"` or a `keras.distribution` object (JAX backend), `"mirrored"` or a
            `tf.distribute` strategy (TensorFlow backend); see `keras_seqrec.distribution`.
        **fit_args: `fit_recommender`'s arguments.

    Example:

    >>> import keras_seqrec as ks
    >>> data = ks.prepare(ks.datasets.load(), max_len=20, min_rating=3,
    ...                   min_item_interactions=20)
    >>> model, history = build_and_fit("gru", data, {"embedding_dim": 16, "hidden_dim": 16},
    ...                                epochs=1, verbose=0)
    >>> history.best_epoch
    0
    """
    from keras_seqrec.item2vec import train_item2vec
    from keras_seqrec.models import build_model

    hyper = dict(hyperparameters or {})
    keras.utils.set_random_seed(seed)
    if starts_from_item2vec(model_name, item2vec):
        width = {k: hyper.pop(k) for k in ["embedding_dim"] if k in hyper}
        hyper["item_embeddings"], _ = train_item2vec(data, seed=seed, **width)
    if item_features is not None:
        hyper["item_features"] = item_features
    from keras_seqrec import distribution as distribution_lib

    distribution = distribution_lib.get(distribution)
    with distribution.scope() if distribution is not None else contextlib.nullcontext():
        model = build_model(model_name, data.num_items, data.max_len, **hyper)
        history = fit_recommender(model, data, seed=seed, **fit_args)
    return model, history


def training_setup(model: keras.Model, data: SequenceDataset, loss, *, batch_size: int = 128,
                   seed: int = 0):
    """The model `fit` trains, its batches and the loss to compile it with, for a zoo `model`.

    `loss` (a copy the caller owns) gets `positions_per_batch` of these batches, and a
    sampled loss its catalogue size. The full softmax trains through
    `full_softmax_training_model` (same values and gradients; on ML-1M SASRec a fifth to a
    third less time per epoch and no catalogue-wide tensor, `benchmarks/SPEED.md`); sampled
    losses through `sampled_training_model`. Returns
    `(train_model, batches, compile_loss)`; `train_model` shares every weight with `model`.
    `fit_recommender` and `benchmarks/profile_epoch.py` both use it. Under a
    `keras.distribution` the batches are `ShardedBatches`: padded to divide over the
    devices, and this process's part of each where several processes train together.
    """
    from keras_seqrec.distribution import batch_split

    train_model, batches, compile_loss = _training_setup(model, data, loss,
                                                         batch_size=batch_size, seed=seed)
    split = batch_split()
    if split is not None:
        batches = ShardedBatches(batches, *split)
    return train_model, batches, compile_loss


def _training_setup(model, data, loss, *, batch_size, seed):
    batches = data.training_batches(batch_size=batch_size, seed=seed)
    if isinstance(loss, PositionLoss):
        # Batches are grouped by length: weigh every position alike, not every batch.
        loss.positions_per_batch = batches.positions_per_batch
    # The cold-start protocol's new items did not exist during training: no softmax, no
    # negative sample holds them.
    excluded = data.cold_mask() if len(data.cold_items) else None
    if type(loss).call is SoftmaxCrossEntropy.call:  # not a subclass with its own maths
        return (full_softmax_training_model(model, excluded), TargetBatches(batches),
                PositionLossValues(name=loss.name,
                                   positions_per_batch=loss.positions_per_batch))
    if not getattr(loss, "sampled", False):
        if excluded is not None:
            warnings.warn(f"The loss {loss.name!r} scores the whole catalogue, new items of the "
                          "cold-start split included, so they train as negatives; the default "
                          "softmax and the sampled losses leave them out.", UserWarning,
                          stacklevel=3)
        return model, batches, loss
    if hasattr(loss, "set_num_items"):
        loss.set_num_items(data.num_items)
    sampler = PopularitySampler(data.item_counts(), alpha=loss.alpha, seed=seed,
                                exclude=excluded)
    train_model = sampled_training_model(model, loss, sampler.log_q)
    return (train_model, SampledBatches(batches, sampler, loss.num_negatives,
                                        loss.shared_negatives), loss)


def full_softmax_training_model(model: keras.Model, excluded=None) -> keras.Model:
    """A training model sharing `model`'s weights that outputs the full-softmax cross-entropy
    of its targets at every position, `(batch, length)`, 0 at padded targets.

    Inputs `{"item_ids", "targets"}` (see `TargetBatches`). The scores of the whole catalogue
    are computed a block of positions at a time and never kept (`position_cross_entropy`), so
    the values and gradients are those of `SoftmaxCrossEntropy` on `model`'s logits, at a
    fraction of the memory traffic. `excluded`, bool `(num_items + 1,)`, leaves those items
    out of the softmax (see `prepare(..., cold_items=...)`).
    """
    hidden = model.get_layer(SEQUENCE_OUTPUT).output
    head, tied = output_layer(model)
    targets = keras.Input(shape=(None,), dtype="int32", name="targets")
    kwargs = {"reverse": True} if tied else {}
    if excluded is not None:
        kwargs["excluded"] = np.asarray(excluded, dtype=bool)
    losses = head(hidden, targets=targets, **kwargs)
    inputs = {"item_ids": model.inputs[0], "targets": targets}
    return keras.Model(inputs, losses, name=f"{model.name}_full_softmax_training")


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


class _CosineLearningRate(keras.callbacks.Callback):
    """Set the optimizer's rate before every step along a half cosine from `peak` to
    `peak / 100`: over `seconds` of wall clock since training began, or else over
    `epochs * steps` steps (a function of the epoch and step only, so a resumed run follows
    the same rates)."""

    def __init__(self, peak: float, *, epochs: int, steps: int,
                 seconds: Optional[float] = None):
        super().__init__()
        self.peak, self.epochs, self.steps, self.seconds = peak, epochs, steps, seconds
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._began = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def rate(self, progress: float) -> float:
        floor = self.peak / 100
        return floor + (self.peak - floor) * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0)))

    def on_train_batch_begin(self, batch, logs=None):
        if self.seconds is not None:
            progress = (time.perf_counter() - self._began) / self.seconds
        else:
            progress = (self._epoch * self.steps + batch) / (self.epochs * self.steps)
        self.model.optimizer.learning_rate.assign(self.rate(progress))


class _EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch's training steps (validation excluded); stops training
    before an epoch that would end after `time_limit` seconds (since training began), judged by
    the longest epoch so far with its validation (leaving out the first, which traces, once
    there are others)."""

    def __init__(self, time_limit: Optional[float] = None, verbose: int = 0):
        super().__init__()
        self.times = []
        self.time_limit = time_limit
        self.verbose = verbose
        self.out_of_time = False
        self._durations = []  # whole epochs, validation included

    def on_train_begin(self, logs=None):
        self._began = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.times.append(getattr(self, "_last", now) - self._start)
        self._durations.append(now - self._start)  # validation ran before this callback
        elapsed = now - self._began
        pace = max(self._durations[1:] or self._durations)
        if self.time_limit is not None and elapsed + pace > self.time_limit \
                and not self.model.stop_training:
            self.model.stop_training = True
            self.out_of_time = True
            if self.verbose:
                print(f"\nStopping: another epoch (about {pace:.0f} s) would pass the time "
                      f"limit of {self.time_limit:g} s ({elapsed:.0f} s, {epoch + 1} epochs).")
