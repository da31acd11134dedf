"""The `Interactions` container and readers for generic interaction logs."""

from __future__ import annotations

import dataclasses
import os
import re
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


# ASCII whitespace, exactly what `tf.strings.strip` removes in the exported serving graph.
ID_WHITESPACE = " \t\n\r\x0b\x0c"
_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")


def normalize_ids(values) -> np.ndarray:
    """The one normalisation applied to raw ids, in the loaders and in the serving graph alike.

    Ids are strings with leading and trailing ASCII whitespace removed. When every id is the
    canonical decimal form of an integer (`"7"`, never `"007"`, `"+7"` or `"7.0"`) the ids are
    kept as int64, which turns back into the same strings; otherwise they stay strings, so raw
    ids round-trip exactly (`"007"` and `"7"` are two items). Integer arrays pass through.
    The work is done once per distinct id, so long logs with few ids are cheap.

    Example:

    >>> normalize_ids([" 7", "12 "]).tolist(), normalize_ids(["007", "7"]).tolist()
    ([7, 12], ['007', '7'])
    """
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.array
    if isinstance(values, pd.Categorical):
        codes, uniques = values.codes, np.asarray(values.categories)
    else:
        values = np.asarray(values)
        if values.dtype.kind in "iu":
            return values.astype(np.int64)
        if values.dtype.kind == "b":
            raise ValueError("Ids must be integers or strings; got booleans.")
        if values.dtype.kind == "f":
            integral = np.isfinite(values) & (values == np.round(values))
            if not integral.all():
                raise ValueError(
                    "Ids must be integers or strings; got non-integral numbers such as "
                    f"{values[~integral][0]!r}."
                )
            return values.astype(np.int64)
        codes, uniques = pd.factorize(values.ravel())
    if uniques.dtype.kind in "iu":
        return uniques.astype(np.int64)[codes]
    text = [str(v).strip(ID_WHITESPACE) for v in uniques]
    if text and all(_CANONICAL_INT.fullmatch(v) for v in text):
        return np.asarray(text, dtype=np.int64)[codes]
    return np.asarray(text, dtype=str)[codes]


def _check_id_column(column: pd.Series, role: str) -> np.ndarray:
    missing = int(column.isna().sum())
    if missing:
        first = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise ValueError(
            f"The {role} id column {column.name!r} has {missing:,} missing (NaN) values "
            f"(first at row {first}). Drop or fill those rows before loading."
        )
    try:
        ids = normalize_ids(column)
    except ValueError as error:
        raise ValueError(f"The {role} id column {column.name!r}: {error}") from None
    if ids.dtype.kind == "U":
        empty = ids == ""
        if empty.any():
            raise ValueError(
                f"The {role} id column {column.name!r} has {int(empty.sum()):,} empty ids "
                f"(first at row {int(np.flatnonzero(empty)[0])}); the empty string is the "
                "padding id. Drop or fill those rows."
            )
    return ids


def _check_timestamps(column: pd.Series) -> pd.Series:
    name = column.name
    if pd.api.types.is_datetime64_any_dtype(column):
        if column.isna().any():
            raise ValueError(
                f"The timestamp column {name!r} has {int(column.isna().sum()):,} missing "
                f"values (first at row {int(np.flatnonzero(column.isna().to_numpy())[0])}). "
                "Every interaction needs a time to be ordered; drop those rows."
            )
        if getattr(column.dt, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        return (column.astype("datetime64[ns]").astype(np.int64) // 1_000_000_000).astype(np.int64)
    if pd.api.types.is_bool_dtype(column):
        raise ValueError(f"The timestamp column {name!r} holds booleans, not times.")
    if not pd.api.types.is_numeric_dtype(column):
        numeric = pd.to_numeric(column, errors="coerce")
        bad = numeric.isna().to_numpy() & column.notna().to_numpy()
        if bad.any() or numeric.isna().all():
            first = int(np.flatnonzero(bad)[0]) if bad.any() else 0
            raise ValueError(
                f"The timestamp column {name!r} must be numeric (e.g. Unix seconds) or "
                f"datetime64; row {first} holds {column.iloc[first]!r}"
                f"{f' ({int(bad.sum()):,} such rows)' if bad.sum() > 1 else ''}. Fix or drop "
                f"those rows, or convert the column first, e.g. "
                f"`df[{name!r}] = pd.to_datetime(df[{name!r}])`."
            )
        column = numeric
    if column.isna().any():
        first = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise ValueError(
            f"The timestamp column {name!r} has {int(column.isna().sum()):,} missing "
            f"values (first at row {first}). Every interaction needs a time to be ordered; "
            "drop or fill those rows."
        )
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (np.abs(values) >= 2.0 ** 63)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"The timestamp column {name!r} has {int(bad.sum()):,} infinite or "
                f"out-of-range values (first at row {first}: {float(values[first])}); "
                "drop or fix those rows."
            )
        return column.astype(np.float64)
    return column.astype(np.int64)


def check_columns(columns: list, **wanted: Optional[str]) -> None:
    """Raise one clear error naming every wanted column (`user_col="user"`, ...) that is not
    in `columns`; None means not wanted."""
    missing = {arg: col for arg, col in wanted.items() if col is not None and col not in columns}
    if missing:
        described = ", ".join(f"{arg}={col!r}" for arg, col in missing.items())
        raise ValueError(
            f"Column(s) not found: {described}. The data has columns {list(columns)}; "
            "pass the right names, e.g. `user_col=..., item_col=..., time_col=...`."
        )


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
        user_col, item_col: names of the user and item id columns (ints or strings), both
            normalised by `normalize_ids`.
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
    check_columns(list(df.columns), user_col=user_col, item_col=item_col, time_col=time_col,
                  rating_col=rating_col)
    out = pd.DataFrame(
        {
            USER: _check_id_column(df[user_col], "user"),
            ITEM: _check_id_column(df[item_col], "item"),
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


FORMATS = ("csv", "tsv", "parquet", "sequences")
_SNIFF_BYTES = 1 << 16


def _open_bytes(path: str, size: int) -> tuple[bytes, bool]:
    """The first `size` bytes of the file's content (decompressed when gzipped), and whether
    the file is gzipped."""
    import gzip

    with open(path, "rb") as f:
        head = f.read(size)
    if not head.startswith(b"\x1f\x8b"):
        return head, False
    try:
        with gzip.open(path, "rb") as f:
            return f.read(size), True
    except (OSError, EOFError) as error:
        raise ValueError(f"{path!r} looks gzipped but cannot be decompressed ({error}).") \
            from None


def _check_file(path: str, what: str = "interaction log") -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"No {what} at {path!r}.")
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"{path!r} is a directory; pass the log file inside it (for a MovieLens release "
            "folder, pass the dataset name and the folder as data_dir / --data-dir)."
        )
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path!r} is empty: it holds no interactions.")


def _extension_format(path: str) -> Optional[str]:
    name = os.path.basename(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".parquet", "parquet"),
                        (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    return None


def detect_format(path: PathLike) -> str:
    """The format of an interaction file, read from its content: "csv", "tsv", "parquet" or
    "sequences" (`user item item ...` lines). Gzipped files are looked into.

    Content decides; a name ending in .csv/.tsv/.parquet must agree with it. Raises
    `ValueError` when the file is empty, binary, or could be read more than one way (then pass
    `format=`).

    Example:

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.txt"
    >>> _ = path.write_text("user,item,timestamp\\n1,10,5\\n")
    >>> detect_format(path)
    'csv'
    """
    path = os.fspath(path)
    _check_file(path)
    head, _ = _open_bytes(path, _SNIFF_BYTES)
    by_name = _extension_format(path)
    if head.startswith(b"PAR1"):
        content = "parquet"
    else:
        if not head.strip():
            raise ValueError(f"{path!r} is empty: it holds no interactions.")
        if b"\x00" in head:
            raise ValueError(f"{path!r} is a binary file, not a CSV/TSV/Parquet log or a "
                             "sequence file.")
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as error:
            if error.start < len(head) - 4:  # not just a character cut at the sniff limit
                raise ValueError(
                    f"{path!r} is not UTF-8 text (byte {error.start}); it is binary or in "
                    "another encoding. Convert it to UTF-8 first."
                ) from None
            text = head[:error.start].decode("utf-8")
        first = next(line for line in text.splitlines() if line.strip())
        if "," in first:
            content = "csv"
        elif "\t" in first and not all(_CANONICAL_INT.fullmatch(t.strip(ID_WHITESPACE))
                                         for t in first.split("\t") if t.strip()):
            content = "tsv"  # a tab-separated header
        elif "\t" in first and by_name == "tsv":
            content = "tsv"
        elif "\t" in first:
            raise ValueError(
                f"{path!r} could be a headerless TSV log or a `user item ...` sequence file; "
                "pass format='tsv' or format='sequences' (CLI: --format)."
            )
        else:
            content = "sequences"
    if by_name is not None and by_name != content:
        looks = ("a `user item ...` sequence file" if content == "sequences"
                 else f"a {content} file")
        raise ValueError(
            f"{path!r} is named like a {by_name} file but its content looks like {looks}; "
            f"pass format='{by_name}' or format='{content}' (CLI: --format) to say which."
        )
    return content


def read_interactions(
    path: PathLike,
    *,
    format: Optional[str] = None,
    user_col: str = "user",
    item_col: str = "item",
    time_col: Optional[str] = "timestamp",
    rating_col: Optional[str] = None,
    name: Optional[str] = None,
) -> Interactions:
    """Read any supported interaction file: a CSV/TSV/Parquet log or a sequence file.

    The format comes from the content (`detect_format`) unless `format` is one of
    `FORMATS`; gzipped files are read directly whatever their name's case.

    Example:

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "LOG.CSV.GZ"
    >>> import gzip; _ = gzip.open(path, "wt").write("user,item,timestamp\\n1,10,5\\n1,11,6\\n")
    >>> read_interactions(path).num_items
    2
    """
    path = os.fspath(path)
    if format is None:
        format = detect_format(path)
    elif format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}; got {format!r}.")
    if format == "sequences":
        return read_sequences(path, name=name)
    return read_log(path, user_col=user_col, item_col=item_col, time_col=time_col,
                    rating_col=rating_col, sep="\t" if format == "tsv" else ",", name=name,
                    format="parquet" if format == "parquet" else "csv")


def _read_csv_ids_as_text(path: str, sep: str, id_columns, gzipped: bool) -> pd.DataFrame:
    """A CSV whose id columns are parsed as text, never as numbers (`"007"` stays `"007"`).

    With pyarrow installed the ids are dictionary-encoded as they are read (one string per
    distinct id: fast and small on long logs); otherwise pandas reads them as `str`.
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
    except ImportError:  # pragma: no cover - pyarrow is a test dependency
        return pd.read_csv(path, sep=sep, dtype={c: str for c in id_columns},
                           compression="gzip" if gzipped else None)
    try:
        with pa.input_stream(path, compression="gzip" if gzipped else None) as stream:
            table = pacsv.read_csv(
                stream, parse_options=pacsv.ParseOptions(delimiter=sep),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in id_columns}),
            )
    except pa.ArrowInvalid as error:
        text = str(error)
        if "Empty CSV file" in text:
            raise pd.errors.EmptyDataError(text) from None
        if "UTF8" in text or "utf8" in text.lower():
            raise ValueError(f"{path!r} is not UTF-8 text; convert it to UTF-8 first.") \
                from None
        raise pd.errors.ParserError(text.splitlines()[0]) from None
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if name in id_columns:
            encoded = column.dictionary_encode().combine_chunks()
            codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
            columns[name] = pd.Categorical.from_codes(
                codes.astype(np.int64), categories=pd.Index(encoded.dictionary.to_pylist(),
                                                             dtype=object))
        else:
            columns[name] = column.to_pandas()
    return pd.DataFrame(columns)


def _base_name(path: str) -> str:
    return os.path.basename(path).split(".")[0]


def read_log(
    path: PathLike,
    *,
    user_col: str = "user",
    item_col: str = "item",
    time_col: Optional[str] = "timestamp",
    rating_col: Optional[str] = None,
    sep: str = ",",
    name: Optional[str] = None,
    format: Optional[str] = None,
) -> Interactions:
    """Read a CSV (any separator, gzipped or not) or Parquet interaction log.

    User and item ids are read as text and normalised by `normalize_ids`, so `"007"` and `"7"`
    stay two items and every raw id round-trips exactly.

    Example:

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
    >>> _ = path.write_text("user,item,timestamp\\n1,007,5\\n1,7,6\\n")
    >>> read_log(path).frame["item"].tolist()
    ['007', '7']
    """
    path = os.fspath(path)
    _check_file(path)
    head, gzipped = _open_bytes(path, _SNIFF_BYTES)
    if format is None:
        format = "parquet" if head.startswith(b"PAR1") else "csv"
    if format == "parquet":
        df = pd.read_parquet(path)
    else:
        if b"\x00" in head:
            raise ValueError(f"{path!r} is a binary file, not a CSV log.")
        try:
            df = _read_csv_ids_as_text(path, sep, (user_col, item_col), gzipped)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path!r} is empty: it holds no interactions.") from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path!r} is not UTF-8 text ({error.reason} at byte "
                             f"{error.start}); convert it to UTF-8 first.") from None
        except pd.errors.ParserError as error:
            raise ValueError(f"{path!r} is not a well-formed {'TSV' if sep == chr(9) else 'CSV'}"
                             f" log: {str(error).strip()}") from None
    if len(df) == 0:
        raise ValueError(
            f"{path!r} has a header ({', '.join(map(str, df.columns))}) but no interactions."
        )
    return from_dataframe(
        df,
        user_col=user_col,
        item_col=item_col,
        time_col=time_col,
        rating_col=rating_col,
        name=name or _base_name(path),
    )


def read_sequences(path: PathLike, *, name: Optional[str] = None) -> Interactions:
    """Read the 'one line per user: `user item item ...`' benchmark format.

    Items on a line are in time order, oldest first (Amazon Beauty/Sports/Toys files of S3-Rec
    and ICLRec). Lines of the same user are appended in file order, so SASRec's
    `user item`-per-line files (`ml-1m.txt`) read the same way. Gzip files are read directly.
    There are no timestamps: an item's position in the file is its timestamp. Ids are
    normalised by `normalize_ids`.

    Example:

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "seq.txt"
    >>> _ = path.write_text("1 5 6 7\\n2 6 7\\n")
    >>> read_sequences(path).frame["item"].tolist()
    [5, 6, 7, 6, 7]
    """
    path = os.fspath(path)
    _check_file(path, "sequence file")
    import gzip

    _, gzipped = _open_bytes(path, 4)
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path!r} is not UTF-8 text ({error.reason} at byte {error.start}); "
                         "it is binary or in another encoding.") from None
    if "\x00" in text:
        raise ValueError(f"{path!r} is a binary file, not a sequence file.")
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
    frame = pd.DataFrame({USER: normalize_ids(users), ITEM: normalize_ids(items)})
    frame[TIMESTAMP] = np.arange(len(frame), dtype=np.int64)
    return Interactions(frame=frame, name=name or _base_name(path))
