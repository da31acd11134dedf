"""Item side features aligned with a `Vocabulary`: categorical tokens, title words, dense vectors.

`ItemFeatures` holds, for every item index (row 0 = padding), the token ids of each
categorical or text field and the vectors of each dense field. Build it from a DataFrame
(`ItemFeatures.from_frame`), a CSV (`read_item_features`), the MovieLens items frame
(`movielens_features`: genres and title words) or the S3-Rec `item2attributes.json` format
(`read_item2attributes`), then add user-supplied vectors with `with_dense`.

Token id 0 is padding (no token), 1 is "missing": an item of the vocabulary without any value
in a field gets exactly one token 1 there, so a model can learn what "unknown" means instead of
reading an empty bag.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from keras_seqrec.data.vocabulary import Vocabulary

PAD_TOKEN, MISSING_TOKEN = 0, 1
RESERVED_TOKENS = ("<pad>", "<missing>")
_WORD = re.compile(r"[0-9a-z]+")
NO_GENRE = ("(no genres listed)", "unknown")  # MovieLens' own "missing" genres


def tokenize_text(text) -> list[str]:
    """Lower-case words and numbers of a title (no model, no download).

    Example:

    >>> tokenize_text("Toy Story (1995)")
    ['toy', 'story', '1995']
    """
    if not isinstance(text, str):
        return []
    return _WORD.findall(text.lower())


@dataclasses.dataclass
class ItemFeatures:
    """Side features of the items of one vocabulary, row i for item index i (row 0 = padding).

    Attributes:
        vocabulary: the items the rows are aligned with.
        categorical: field -> int32 `(vocabulary.size, width)` token ids, 0-padded on the right;
            categorical and text fields alike (text fields hold word tokens).
        tokens: field -> the token of each id (`tokens[field][j]` names id j; ids 0 and 1 are
            `"<pad>"` and `"<missing>"`).
        dense: field -> float32 `(vocabulary.size, d)`; zeros for padding and for items
            without a vector.
        has_dense: field -> bool `(vocabulary.size,)`, True where the item has a vector.
        text_fields: the token fields split into words (titles) rather than read as values.

    Example:

    >>> vocab = Vocabulary([10, 20, 30])
    >>> frame = pd.DataFrame({"item": [10, 20], "genres": ["Drama|Comedy", "Drama"]})
    >>> features = ItemFeatures.from_frame(vocab, frame, categorical=["genres"])
    >>> features.categorical["genres"].tolist()  # padding, item 10, item 20, item 30 (missing)
    [[0, 0], [3, 2], [3, 0], [1, 0]]
    >>> features.tokens["genres"]
    ('<pad>', '<missing>', 'comedy', 'drama')
    """

    vocabulary: Vocabulary
    categorical: dict = dataclasses.field(default_factory=dict)
    tokens: dict = dataclasses.field(default_factory=dict)
    dense: dict = dataclasses.field(default_factory=dict)
    has_dense: dict = dataclasses.field(default_factory=dict)
    text_fields: tuple = ()

    @property
    def fields(self) -> list[str]:
        return list(self.categorical) + list(self.dense)

    def coverage(self, field: str) -> float:
        """Share of the vocabulary's items with a value in `field` (padding not counted)."""
        present = (self.has_dense[field] if field in self.dense
                   else self.categorical[field][:, 0] != MISSING_TOKEN)[1:]
        return float(present.mean()) if len(present) else 0.0

    def _check_new_field(self, field: str) -> None:
        if field in self.categorical or field in self.dense:
            raise ValueError(f"Feature field {field!r} is given twice.")

    def cardinality(self, field: str) -> int:
        """Number of token ids of a categorical or text field, the two reserved ones included."""
        return len(self.tokens[field])

    def item_tokens(self, field: str, index: int) -> list[str]:
        """The tokens of one item index in a categorical or text field (for inspection)."""
        ids = self.categorical[field][index]
        return [self.tokens[field][j] for j in ids if j != PAD_TOKEN]

    @classmethod
    def from_frame(
        cls,
        vocabulary: Vocabulary,
        frame: pd.DataFrame,
        *,
        item: Optional[str] = "item",
        categorical: Sequence[str] = (),
        text: Sequence[str] = (),
        separator: str = "|",
        max_tokens: Optional[int] = None,
    ) -> "ItemFeatures":
        """Features from a frame with one row per item.

        Args:
            vocabulary: the dataset's vocabulary; rows for items outside it are ignored.
            frame: the item column (or, with `item=None`, the index) plus feature columns.
            item: name of the raw item id column; None reads the index.
            categorical: multi-valued columns: each cell a list of values, a string of values
                joined by `separator` (e.g. "Drama|Comedy"), or one value. Values are
                lower-cased strings; NaN or empty is missing.
            text: columns of free text (titles), split into words by `tokenize_text`.
            separator: joins the values of a categorical cell given as a string.
            max_tokens: keep at most this many tokens per item and field (the first ones).

        Raises:
            ValueError: a named column is absent, an item appears twice, or no item of the
                frame is in the vocabulary (usually ids of another type or numbering).
        """
        ids = _item_ids(frame, item)
        missing = [c for c in list(categorical) + list(text) if c not in frame.columns]
        if missing:
            raise ValueError(f"Feature columns {missing} are not in the frame; it has "
                             f"{list(frame.columns)}.")
        rows = _rows_in_vocabulary(vocabulary, ids, "the feature frame")
        out = cls(vocabulary)
        for column in list(categorical) + list(text):
            if column in text:
                values = [tokenize_text(v) for v in frame[column].to_numpy()]
            else:
                values = [_categories(v, separator) for v in frame[column].to_numpy()]
            out._add_tokens(column, rows, values, max_tokens)
        out.text_fields = tuple(text)
        return out

    def with_new_items(self, frame: pd.DataFrame, *, item: Optional[str] = "item",
                       separator: str = "|",
                       dense: Optional[Mapping[str, tuple]] = None) -> "ItemFeatures":
        """A copy whose vocabulary gains the items of `frame` (new items: features, no
        interactions), appended after the existing ones so no index changes.

        Token fields keep their token ids: a new item's values are read as the field was
        (words for text fields, values split at `separator` otherwise); values no existing
        item had are dropped (no trained embedding exists for them), and an item left with
        none gets the missing token, as does one whose column is absent. Dense fields take
        `dense[field] = (raw_ids, matrix)`; items without a vector there get zeros.

        Raises:
            ValueError: an item already in the vocabulary, an item given twice, or a vector of
                the wrong width.

        Example:

        >>> vocab = Vocabulary([10, 20])
        >>> old = ItemFeatures.from_frame(vocab, pd.DataFrame(
        ...     {"item": [10, 20], "genre": ["a", "b"]}), categorical=["genre"])
        >>> new = old.with_new_items(pd.DataFrame({"item": [30], "genre": ["b|zzz"]}))
        >>> new.vocabulary.ids.tolist(), new.item_tokens("genre", 3)
        ([10, 20, 30], ['b'])
        """
        ids = _item_ids(frame, item)
        known = self.vocabulary.lookup(ids) > 0
        if known.any():
            raise ValueError(f"Item {_plain(ids[known][0])!r} is already in the catalogue; "
                             "with_new_items adds new items only.")
        vocabulary = self.vocabulary.extended(ids)
        rows = np.arange(self.vocabulary.size, vocabulary.size)
        out = ItemFeatures(vocabulary, text_fields=self.text_fields)
        for field, matrix in self.categorical.items():
            token_id = {t: j for j, t in enumerate(self.tokens[field])
                        if j >= len(RESERVED_TOKENS)}
            grown = np.zeros((vocabulary.size, matrix.shape[1]), dtype=np.int32)
            grown[:len(matrix)] = matrix
            cells = frame[field].to_numpy() if field in frame.columns else [None] * len(ids)
            for row, cell in zip(rows, cells):
                tokens = (tokenize_text(cell) if field in self.text_fields
                          else _categories(cell, separator))
                known_ids = [token_id[t] for t in tokens if t in token_id][:matrix.shape[1]]
                grown[row, :max(len(known_ids), 1)] = known_ids or [MISSING_TOKEN]
            out.categorical[field], out.tokens[field] = grown, self.tokens[field]
        for field, vectors in self.dense.items():
            grown = np.zeros((vocabulary.size, vectors.shape[1]), dtype=np.float32)
            grown[:len(vectors)] = vectors
            present = np.zeros(vocabulary.size, dtype=bool)
            present[:len(vectors)] = self.has_dense[field]
            if dense and field in dense:
                new_ids, matrix = dense[field]
                matrix = np.asarray(matrix, dtype=np.float32)
                if matrix.ndim != 2 or matrix.shape[1] != vectors.shape[1]:
                    raise ValueError(f"Dense field {field!r}: new vectors must have width "
                                     f"{vectors.shape[1]}; got shape {matrix.shape}.")
                at = vocabulary.lookup(new_ids)
                ok = at >= self.vocabulary.size
                grown[at[ok]], present[at[ok]] = matrix[ok], True
            out.dense[field], out.has_dense[field] = grown, present
        return out

    def _add_tokens(self, field: str, rows: np.ndarray, values: list, max_tokens) -> None:
        self._check_new_field(field)
        known = rows > 0
        per_item = [v[:max_tokens] if max_tokens else v for v, k in zip(values, known) if k]
        names = sorted({t for tokens in per_item for t in tokens})
        token_id = {t: j + len(RESERVED_TOKENS) for j, t in enumerate(names)}
        width = max([len(t) for t in per_item] + [1])
        matrix = np.zeros((self.vocabulary.size, width), dtype=np.int32)
        matrix[1:, 0] = MISSING_TOKEN
        for row, tokens in zip(rows[known], per_item):
            if tokens:
                matrix[row] = 0
                matrix[row, :len(tokens)] = [token_id[t] for t in tokens]
        self.categorical[field] = matrix
        self.tokens[field] = RESERVED_TOKENS + tuple(names)

    def with_dense(self, field: str, table: Union[pd.DataFrame, tuple]) -> "ItemFeatures":
        """A copy with one more dense field: vectors keyed by raw item id, e.g. from any text or
        image encoder.

        Args:
            field: the field's name.
            table: a DataFrame indexed by raw item id with one column per dimension, or a pair
                `(raw_ids, matrix)` with `matrix` of shape `(len(raw_ids), d)`.

        Raises:
            ValueError: wrong shapes, an id given twice, a vector with NaN or infinite values,
                or no id in the vocabulary.
        """
        if isinstance(table, pd.DataFrame):
            ids, matrix = table.index.to_numpy(), table.to_numpy()
        else:
            try:
                ids, matrix = table
            except (TypeError, ValueError):
                raise ValueError("`table` must be a DataFrame indexed by raw item id or a pair "
                                 "(raw_ids, matrix).") from None
            ids = np.asarray(ids)
        try:
            matrix = np.asarray(matrix, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"Dense field {field!r}: the vectors are not numbers.") from None
        if matrix.ndim != 2 or len(matrix) != len(ids):
            raise ValueError(f"Dense field {field!r}: expected a (items, d) matrix with one row "
                             f"per id ({len(ids)} ids); got shape {matrix.shape}.")
        bad = ~np.isfinite(matrix).all(axis=1)
        if bad.any():
            raise ValueError(f"Dense field {field!r}: {int(bad.sum())} vectors hold NaN or "
                             f"infinite values, the first for item {_plain(ids[bad][0])!r}; "
                             "fill or drop them (an item without a vector gets zeros and "
                             "has_dense False).")
        _check_unique(ids, f"dense field {field!r}")
        self._check_new_field(field)
        rows = _rows_in_vocabulary(self.vocabulary, ids, f"dense field {field!r}")
        out = dataclasses.replace(self, categorical=dict(self.categorical),
                                  tokens=dict(self.tokens), dense=dict(self.dense),
                                  has_dense=dict(self.has_dense))
        known = rows > 0
        vectors = np.zeros((self.vocabulary.size, matrix.shape[1]), dtype=np.float32)
        vectors[rows[known]] = matrix[known]
        present = np.zeros(self.vocabulary.size, dtype=bool)
        present[rows[known]] = True
        out.dense[field], out.has_dense[field] = vectors, present
        return out

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write everything, token names and vocabulary included, to one `.npz` file.

        Example:

        >>> import tempfile
        >>> features = ItemFeatures.from_frame(Vocabulary(["a", "b"]), pd.DataFrame(
        ...     {"item": ["a"], "genre": ["x"]}), categorical=["genre"])
        >>> path = os.path.join(tempfile.mkdtemp(), "features.npz")
        >>> features.save(path)
        >>> ItemFeatures.load(path).item_tokens("genre", 1)
        ['x']
        """
        meta = {"vocabulary": self.vocabulary.get_config(), "tokens": self.tokens,
                "text_fields": list(self.text_fields), "categorical": list(self.categorical),
                "dense": list(self.dense)}
        arrays = {f"categorical/{k}": v for k, v in self.categorical.items()}
        arrays.update({f"dense/{k}": v for k, v in self.dense.items()})
        arrays.update({f"has_dense/{k}": v for k, v in self.has_dense.items()})
        with open(path, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "ItemFeatures":
        """Read what `save` wrote."""
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            return cls(Vocabulary.from_config(meta["vocabulary"]),
                       categorical={k: f[f"categorical/{k}"] for k in meta["categorical"]},
                       tokens={k: tuple(v) for k, v in meta["tokens"].items()},
                       dense={k: f[f"dense/{k}"] for k in meta["dense"]},
                       has_dense={k: f[f"has_dense/{k}"] for k in meta["dense"]},
                       text_fields=tuple(meta["text_fields"]))

    def describe(self) -> dict:
        """Per field: kind, width (tokens per item or vector size), distinct tokens, coverage."""
        out = {}
        for field, matrix in self.categorical.items():
            out[field] = {"kind": "tokens", "width": int(matrix.shape[1]),
                          "tokens": self.cardinality(field) - len(RESERVED_TOKENS),
                          "coverage": round(self.coverage(field), 4)}
        for field, matrix in self.dense.items():
            out[field] = {"kind": "dense", "width": int(matrix.shape[1]),
                          "coverage": round(self.coverage(field), 4)}
        return out


def _item_ids(frame: pd.DataFrame, item: Optional[str]) -> np.ndarray:
    if item is None:
        ids = frame.index.to_numpy()
    elif item not in frame.columns:
        raise ValueError(f"The feature frame has no item column {item!r}; it has "
                         f"{list(frame.columns)} (pass item=None to read the index).")
    else:
        ids = frame[item].to_numpy()
    _check_unique(ids, "the feature frame")
    return ids


def _check_unique(ids: np.ndarray, what: str) -> None:
    values, counts = np.unique(np.asarray(ids).astype(str), return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"Item {str(values[counts > 1][0])!r} appears {counts.max()} times in "
                         f"{what}; give one row per item (join multiple values into a list).")


def _rows_in_vocabulary(vocabulary: Vocabulary, ids: np.ndarray, what: str) -> np.ndarray:
    """Item index of each raw id (0 for ids outside the vocabulary); error when none is in it."""
    rows = vocabulary.lookup(ids)
    if len(ids) and not (rows > 0).any():
        raise ValueError(
            f"No item of {what} is in the vocabulary: e.g. {np.asarray(ids[:3]).tolist()} "
            f"against vocabulary ids like {vocabulary.ids[:3].tolist()} ({vocabulary.id_dtype}). "
            "Check that both use the "
            "same item ids (and, for a preprocessed benchmark file, its id map).")
    return rows


def _plain(value):
    """A NumPy scalar as the Python value it holds (for messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _categories(value, separator: str) -> list[str]:
    if isinstance(value, str):
        parts = value.split(separator) if separator else [value]
    elif isinstance(value, (list, tuple, set, np.ndarray)):
        parts = list(value)
    elif value is None or (isinstance(value, float) and np.isnan(value)):
        parts = []
    else:
        parts = [value]
    out = []
    for part in parts:
        token = str(part).strip().lower()
        if token and token not in out:
            out.append(token)
    return out


def read_item_features(path: Union[str, os.PathLike], vocabulary: Vocabulary, *,
                       item: str = "item", categorical: Sequence[str] = (),
                       text: Sequence[str] = (), separator: str = "|", sep: str = ",",
                       max_tokens: Optional[int] = None) -> ItemFeatures:
    """`ItemFeatures.from_frame` on a CSV (`sep` between columns, `separator` inside a cell);
    item ids are read as text and matched to the vocabulary's ids."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Item feature file {os.fspath(path)!r} does not exist.")
    frame = pd.read_csv(path, sep=sep, dtype={item: str})
    return ItemFeatures.from_frame(vocabulary, frame, item=item, categorical=categorical,
                                   text=text, separator=separator, max_tokens=max_tokens)


def movielens_features(items: pd.DataFrame, vocabulary: Vocabulary,
                       id_map: Optional[Mapping] = None) -> ItemFeatures:
    """Genres (categorical) and title words (text) from a MovieLens items frame, as
    `keras_seqrec.datasets.load(...).items` gives it (indexed by movie id, `title`, `genres`).

    `id_map` maps the vocabulary's raw ids to movie ids when they differ, e.g. the SASRec ML-1M
    file's `sas_to_original_items.txt` (`read_id_map`; its movies come from
    `keras_seqrec.datasets.movielens.read_movies_dat`). MovieLens' "(no genres listed)" and
    ml-100k's "unknown" genre count as missing.

    Example:

    >>> import keras_seqrec as ks
    >>> log = ks.datasets.load("ml-latest-small")
    >>> data = ks.prepare(log, max_len=20)
    >>> features = movielens_features(data.items, data.vocabulary)
    >>> features.item_tokens("genres", int(data.vocabulary.lookup([1])[0]))  # Toy Story
    ['adventure', 'animation', 'children', 'comedy', 'fantasy']
    """
    if items is None or not {"title", "genres"} <= set(items.columns):
        raise ValueError("`items` must be a MovieLens items frame with `title` and `genres` "
                         "columns (`keras_seqrec.datasets.load(name).items`).")
    frame = items[["title", "genres"]]
    if id_map is not None:
        ours = vocabulary.ids
        movie = [id_map.get(i) for i in ours]
        frame = frame.reindex(movie)
        frame.index = ours
    frame = frame.assign(genres=[[g for g in v if g not in NO_GENRE]
                                 if isinstance(v, (list, tuple, np.ndarray)) else v
                                 for v in frame["genres"]])
    return ItemFeatures.from_frame(vocabulary, frame, item=None, categorical=["genres"],
                                   text=["title"])


def read_id_map(path: Union[str, os.PathLike]) -> dict:
    """`"ours theirs"` lines (e.g. SASRec's `sas_to_original_items.txt`) as `{ours: theirs}`."""
    table = pd.read_csv(path, sep=r"\s+", header=None, names=["ours", "theirs"])
    return dict(zip(table["ours"].tolist(), table["theirs"].tolist()))


def read_item2attributes(path: Union[str, os.PathLike], vocabulary: Vocabulary,
                         field: str = "attributes") -> ItemFeatures:
    """The S3-Rec `item2attributes.json` format (`{"item id": [attribute ids]}`, e.g. brand and
    category path of every Amazon Beauty item) as one categorical field.

    Example:

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "item2attributes.json")
    >>> with open(path, "w") as f:
    ...     json.dump({"1": [7, 3], "2": [3]}, f)
    >>> read_item2attributes(path, Vocabulary([1, 2, 5])).categorical["attributes"].tolist()
    [[0, 0], [3, 2], [2, 0], [1, 0]]
    """
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{os.fspath(path)!r} is not JSON ({error.msg}, line {error.lineno}).") \
            from None
    if not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values()):
        raise ValueError(f"{os.fspath(path)!r} must map each item id to a list of attribute "
                         "ids, e.g. {\"1\": [3, 17]}.")
    frame = pd.DataFrame({"item": list(table), field: list(table.values())})
    return ItemFeatures.from_frame(vocabulary, frame, categorical=[field])


def load_item_features(source: Union[str, os.PathLike], data, *,
                       text: Sequence[str] = ()) -> ItemFeatures:
    """Item features for a prepared dataset from a named or file source (what the CLI's
    `--item-features` reads).

    Args:
        source: `"movielens"` (genres and title words of the dataset's own items frame, for
            the MovieLens loaders), an S3-Rec `item2attributes.json` file, or a CSV with an
            `item` column whose other columns are categorical fields (several values joined
            by `|`), except the `text` ones, which are split into words.
        data: the `SequenceDataset` the features must be aligned with.
        text: CSV columns holding free text (titles, descriptions).

    Raises:
        ValueError: an unknown source, or a dataset without the MovieLens items frame.
    """
    source = os.fspath(source)
    if source == "movielens":
        if data.items is None or "genres" not in data.items.columns:
            raise ValueError(f"The dataset {data.name!r} has no MovieLens items frame (titles "
                             "and genres); pass a feature file instead of 'movielens'.")
        return movielens_features(data.items, data.vocabulary)
    if not os.path.exists(source):
        raise ValueError(f"Item features {source!r} are neither 'movielens' nor an existing "
                         "file (an item2attributes .json or a .csv with an item column).")
    if source.endswith(".json"):
        return read_item2attributes(source, data.vocabulary)
    header = pd.read_csv(source, nrows=0).columns
    if "item" not in header:
        raise ValueError(f"{source!r} needs an 'item' column; it has {list(header)}.")
    unknown = [c for c in text if c not in header]
    if unknown:
        raise ValueError(f"Text columns {unknown} are not in {source!r} ({list(header)}).")
    categorical = [c for c in header if c != "item" and c not in text]
    return read_item_features(source, data.vocabulary, categorical=categorical, text=text)
