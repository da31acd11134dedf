"""The `Interactions` container and readers for generic interaction logs."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Union

import numpy as np
import pandas as pd

PathLike = Union[str, os.PathLike]

# Canonical column names inside an `Interactions` frame.
USER, ITEM, TIMESTAMP, RATING = "user", "item", "timestamp", "rating"


@dataclasses.dataclass
class Interactions:
    """A log of user-item interactions, in file order, plus optional item side data.

    Args:
        frame: `pandas.DataFrame` with columns `user`, `item`, `timestamp` (int64, any unit that
            orders events; Unix seconds for MovieLens) and optionally `rating` (float). Row order
            is the file order, which breaks timestamp ties.
        items: optional `pandas.DataFrame` indexed by raw item id, e.g. with `title` and `genres`
            columns, kept for display and cold start.
        name: a short name used in reports and model cards.

    Example:

    >>> log = from_dataframe(pd.DataFrame({"u": [1, 1], "i": ["a", "b"], "t": [10, 20]}),
    ...                      user_col="u", item_col="i", time_col="t")
    >>> log.num_users, log.num_items, len(log)
    (1, 2, 2)
    """

    frame: pd.DataFrame
    items: Optional[pd.DataFrame] = None
    name: str = "interactions"

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def num_users(self) -> int:
        return int(self.frame[USER].nunique())

    @property
    def num_items(self) -> int:
        return int(self.frame[ITEM].nunique())

    @property
    def has_ratings(self) -> bool:
        return RATING in self.frame.columns

    def describe(self) -> dict:
        """Counts for reports: users, items, interactions, and the time range."""
        out = {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": len(self),
        }
        if len(self):
            out["first_timestamp"] = int(self.frame[TIMESTAMP].min())
            out["last_timestamp"] = int(self.frame[TIMESTAMP].max())
        return out

    def __repr__(self) -> str:
        return (
            f"Interactions(name={self.name!r}, users={self.num_users:,}, "
            f"items={self.num_items:,}, interactions={len(self):,})"
        )


def _check_id_column(column: pd.Series, role: str) -> pd.Series:
    missing = int(column.isna().sum())
    if missing:
        first = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise ValueError(
            f"The {role} id column {column.name!r} has {missing:,} missing (NaN) values "
            f"(first at row {first}). Drop or fill those rows before loading."
        )
    if pd.api.types.is_float_dtype(column):
        as_int = column.astype(np.int64)
        if (as_int == column).all():
            return as_int
    if column.dtype == object or pd.api.types.is_string_dtype(column):
        return column.astype(str)
    return column


def _check_timestamps(column: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        if column.isna().any():
            raise ValueError(
                f"The timestamp column {column.name!r} has {int(column.isna().sum()):,} missing "
                "values. Every interaction needs a time to be ordered; drop those rows."
            )
        if getattr(column.dt, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        return (column.astype("datetime64[ns]").astype(np.int64) // 1_000_000_000).astype(np.int64)
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        sample = column.dropna().iloc[:1].tolist()
        raise ValueError(
            f"The timestamp column {column.name!r} must be numeric (e.g. Unix seconds) or "
            f"datetime64; got dtype {column.dtype} (first value {sample}). Convert it first, "
            f"e.g. `df[{column.name!r}] = pd.to_datetime(df[{column.name!r}])`."
        )
    if column.isna().any():
        first = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise ValueError(
            f"The timestamp column {column.name!r} has {int(column.isna().sum()):,} missing "
            f"values (first at row {first}). Every interaction needs a time to be ordered; "
            "drop or fill those rows."
        )
    if pd.api.types.is_float_dtype(column):
        return column.astype(np.float64)
    return column.astype(np.int64)


def from_dataframe(
    df: pd.DataFrame,
    *,
    user_col: str = "user",
    item_col: str = "item",
    time_col: Optional[str] = "timestamp",
    rating_col: Optional[str] = None,
    items: Optional[pd.DataFrame] = None,
    name: str = "interactions",
) -> Interactions:
    """Wrap a DataFrame of interactions after checking its columns.

    Args:
        df: one row per interaction.
        user_col, item_col: names of the user and item id columns (ints or strings).
        time_col: name of the timestamp column (numeric or datetime64). `None` means the rows are
            already in time order per user: the row number is used as the timestamp.
        rating_col: optional explicit-feedback column, needed for `min_rating` filtering.
        items: optional item side data indexed by raw item id.
        name: the dataset name used in reports.

    Returns:
        An `Interactions` with canonical column names (`user`, `item`, `timestamp`, `rating`).

    Raises:
        ValueError: naming the missing column and the columns that do exist, or the bad values.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"`df` must be a pandas DataFrame; got {type(df).__name__}.")
    wanted = {"user_col": user_col, "item_col": item_col}
    if time_col is not None:
        wanted["time_col"] = time_col
    if rating_col is not None:
        wanted["rating_col"] = rating_col
    missing = {arg: col for arg, col in wanted.items() if col not in df.columns}
    if missing:
        described = ", ".join(f"{arg}={col!r}" for arg, col in missing.items())
        raise ValueError(
            f"Column(s) not found: {described}. The data has columns {list(df.columns)}; "
            "pass the right names, e.g. `user_col=..., item_col=..., time_col=...`."
        )
    out = pd.DataFrame(
        {
            USER: _check_id_column(df[user_col], "user").to_numpy(),
            ITEM: _check_id_column(df[item_col], "item").to_numpy(),
        }
    )
    if time_col is None:
        out[TIMESTAMP] = np.arange(len(df), dtype=np.int64)
    else:
        out[TIMESTAMP] = _check_timestamps(df[time_col]).to_numpy()
    if rating_col is not None:
        ratings = pd.to_numeric(df[rating_col], errors="coerce")
        if ratings.isna().any():
            raise ValueError(
                f"The rating column {rating_col!r} has {int(ratings.isna().sum()):,} missing or "
                "non-numeric values; drop them or load without `rating_col`."
            )
        out[RATING] = ratings.to_numpy(dtype=np.float32)
    return Interactions(frame=out, items=items, name=name)


def read_log(
    path: PathLike,
    *,
    user_col: str = "user",
    item_col: str = "item",
    time_col: Optional[str] = "timestamp",
    rating_col: Optional[str] = None,
    sep: str = ",",
    name: Optional[str] = None,
) -> Interactions:
    """Read a CSV (any separator) or Parquet interaction log.

    Example:

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
    >>> _ = path.write_text("user,item,timestamp\\n1,10,5\\n1,11,6\\n")
    >>> read_log(path).num_items
    2
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No interaction log at {path!r}.")
    if path.endswith((".parquet", ".pq")):
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, sep=sep)
    return from_dataframe(
        df,
        user_col=user_col,
        item_col=item_col,
        time_col=time_col,
        rating_col=rating_col,
        name=name or os.path.splitext(os.path.basename(path))[0],
    )


def read_sequences(path: PathLike, *, name: Optional[str] = None) -> Interactions:
    """Read the 'one line per user: `user item item ...`' benchmark format.

    Items on a line are in time order, oldest first (Amazon Beauty/Sports/Toys files of S3-Rec
    and ICLRec). Lines of the same user are appended in file order, so SASRec's
    `user item`-per-line files (`ml-1m.txt`) read the same way. Gzip files are read directly.
    There are no timestamps: an item's position in the file is its timestamp.

    Example:

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "seq.txt"
    >>> _ = path.write_text("1 5 6 7\\n2 6 7\\n")
    >>> read_sequences(path).frame["item"].tolist()
    [5, 6, 7, 6, 7]
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No sequence file at {path!r}.")
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        text = f.read()
    lines = text.split("\n")
    tokens = [line.split() for line in lines if line.strip()]
    if not tokens:
        raise ValueError(f"{path!r} holds no sequences.")
    lengths = np.fromiter((len(t) - 1 for t in tokens), dtype=np.int64, count=len(tokens))
    if (lengths < 1).any():
        bad = int(np.flatnonzero(lengths < 1)[0]) + 1
        raise ValueError(
            f"{path!r}: line {bad} has a user id but no items; each line must be "
            "`user item [item ...]`."
        )
    users = np.array([t[0] for t in tokens])
    items = np.array([tok for t in tokens for tok in t[1:]])
    users = np.repeat(users, lengths)
    frame = pd.DataFrame({USER: users, ITEM: items})
    for col in (USER, ITEM):
        numeric = pd.to_numeric(frame[col], errors="coerce")
        if not numeric.isna().any():
            frame[col] = numeric.astype(np.int64)
    frame[TIMESTAMP] = np.arange(len(frame), dtype=np.int64)
    return Interactions(
        frame=frame, name=name or os.path.basename(path).split(".")[0]
    )
