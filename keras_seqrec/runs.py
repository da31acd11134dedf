"""Reading a finished run folder back (what `keras-seqrec train` or `update` wrote): its model,
vocabulary, item features, and the data it was trained and evaluated on, rebuilt from run.json.

Example (a run folder written by `keras-seqrec train --output runs/gru_attention`):

    import keras_seqrec as ks

    run = ks.load_run("runs/gru_attention")
    run.model.summary()
    ks.evaluate_recommender(run.model, run.data, "test", exclude_seen=True)
"""

from __future__ import annotations

import dataclasses
import json
import os
from functools import cached_property
from typing import Optional

import keras
import numpy as np

from keras_seqrec.data.dataset import SequenceDataset
from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.data.vocabulary import Vocabulary
from keras_seqrec.datasets.interactions import Interactions


def read_run_info(run_dir: str) -> dict:
    """The run.json of a finished run folder (written last, so its presence marks the run as
    finished)."""
    path = os.path.join(run_dir, "run.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"run folder {run_dir!r} holds no run.json: it is not a finished `keras-seqrec "
            "train` run (pass the folder its --output named).")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def stored_settings(settings: dict) -> dict:
    """`prepare`'s keyword arguments from a run.json's `dataset.settings`, all but
    `min_rating` (settings older runs did not record take their defaults of the time)."""
    return dict(max_len=settings["max_len"],
                min_user_interactions=settings["min_user_interactions"],
                min_item_interactions=settings["min_item_interactions"],
                drop_duplicates=settings.get("drop_duplicates", True),
                tie_break=settings.get("tie_break", "file"), seed=settings.get("seed", 0),
                cold_items=settings.get("cold_items", 0.0))


def read_source(source: dict, data_dir: Optional[str] = None) -> Interactions:
    """One data source of a run.json (its `dataset` or one of its `updates`), read again:
    a named dataset (from `data_dir` when given) or a file with the recorded format and
    columns."""
    from keras_seqrec import datasets

    name = source["source"]
    if name in datasets.available_datasets():
        return datasets.load(name, data_dir=data_dir)
    if os.path.exists(name):
        return datasets.read_interactions(name, format=source.get("format"),
                                          **(source.get("columns") or {}))
    raise FileNotFoundError(
        f"the run's data {name!r} is neither a known dataset "
        f"({', '.join(datasets.available_datasets())}) nor an existing file; run from the "
        "folder the run was trained in, or move the file back.")


def run_log(info: dict, data_dir: Optional[str] = None) -> Interactions:
    """The interaction log a run trained on: its dataset, then each update's new log
    (`data_dir` overrides the recorded one for named datasets)."""
    from keras_seqrec.update import grown_log

    dataset = info["dataset"]
    data_dir = data_dir or dataset.get("data_dir")
    log = read_source(dataset, data_dir)
    for update in dataset.get("updates", []):
        log = grown_log(log, read_source(update, data_dir))
    return log


def run_data(info: dict, vocabulary: Vocabulary,
             data_dir: Optional[str] = None) -> SequenceDataset:
    """The `SequenceDataset` a run was trained and evaluated on, prepared again from its
    run.json the way it was then, and checked against the run's `vocabulary`."""
    from keras_seqrec.data.prepare import prepare

    dataset = info["dataset"]
    settings = stored_settings(dataset["settings"])
    min_rating = dataset["settings"]["min_rating"]
    updated = bool(dataset.get("updates"))
    out_of_core = dataset.get("out_of_core")
    if out_of_core and not updated:  # prepared through DuckDB: prepare it the same way
        from keras_seqrec.data.out_of_core import prepare_parquet

        columns = dataset.get("columns") or {}
        settings.pop("tie_break")  # out of core breaks ties in file order only
        if columns.get("rating_col") is None:
            min_rating = None
        data = prepare_parquet(dataset["source"], **columns, min_rating=min_rating,
                               memory_limit=out_of_core["memory_limit"], **settings)
    else:
        log = run_log(info, data_dir)
        # An updated run's items were appended to its base run's: keep their order.
        data = prepare(log, min_rating=min_rating if log.has_ratings else None,
                       vocabulary=vocabulary if updated else None, **settings)
    if data.vocabulary != vocabulary:
        raise ValueError("the run's data no longer matches the model's vocabulary: the "
                         "file changed since the run trained.")
    return data


@dataclasses.dataclass
class Run:
    """A finished run folder, read back by `load_run`.

    Attributes:
        path: the run folder.
        info: its run.json (model, dataset and its settings, training, metrics).
        model: the trained Keras model.
        vocabulary: raw item id <-> the model's item index.
        item_counts: training interactions per item index (what `pop` and export use).
        features: the item features a feature-aware run trained with, else None.
        titles: raw item id (as a string) -> title, when the dataset has titles.
        data_dir: where named datasets are read from, if not where they were.

    `data` (the `SequenceDataset` with its validation and test splits) is prepared again from
    the run's log the first time it is read.
    """

    path: str
    info: dict
    model: keras.Model
    vocabulary: Vocabulary
    item_counts: np.ndarray
    features: Optional[ItemFeatures] = None
    titles: Optional[dict] = None
    data_dir: Optional[str] = None

    @property
    def name(self) -> str:
        """The registered model name the run trained (`info["model"]`)."""
        return self.info["model"]

    @cached_property
    def data(self) -> SequenceDataset:
        return run_data(self.info, self.vocabulary, self.data_dir)


def load_run(run_dir: str, *, data_dir: Optional[str] = None) -> Run:
    """Read a finished run folder back: model, vocabulary, counts, features and titles now,
    its data (`Run.data`) when first asked for.

    Args:
        run_dir: a folder written by `keras-seqrec train` or `keras-seqrec update`.
        data_dir: where a named dataset (e.g. `ml-1m`) is, if not where it was at training.

    Returns:
        A `Run`.

    Raises:
        FileNotFoundError: `run_dir` is not a finished run.

    Example (a run folder written by `keras-seqrec train --output runs/gru_attention`):

        run = ks.load_run("runs/gru_attention")
        top = run.model.predict(run.data.test.inputs(run.data.max_len)[:5]).argmax(-1)
        run.vocabulary.to_ids(top)   # raw item ids
    """
    info = read_run_info(run_dir)
    missing = [name for name in ("model.keras", "vocabulary.json", "item_counts.npy")
               if not os.path.exists(os.path.join(run_dir, name))]
    if missing:
        raise FileNotFoundError(f"run folder {run_dir!r} lacks {', '.join(missing)}: copy "
                                "the whole folder that training wrote.")
    vocabulary = Vocabulary.load(os.path.join(run_dir, "vocabulary.json"))
    counts = np.load(os.path.join(run_dir, "item_counts.npy"))
    saved = os.path.join(run_dir, "item_features.npz")
    features = ItemFeatures.load(saved) if os.path.exists(saved) else None
    titles = None
    if os.path.exists(os.path.join(run_dir, "titles.json")):
        with open(os.path.join(run_dir, "titles.json"), encoding="utf-8") as f:
            titles = json.load(f)
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    return Run(path=run_dir, info=info, model=model, vocabulary=vocabulary,
               item_counts=counts, features=features, titles=titles, data_dir=data_dir)
