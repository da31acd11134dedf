"""`prepare_parquet`: `prepare` for Parquet logs larger than memory, through DuckDB.

The in-memory `prepare` holds the whole log as a pandas frame (about 24 bytes per
interaction before any copy), so 200 million interactions would need tens of GiB. Here an
embedded DuckDB does the three passes that need the whole log at once, under a memory limit
and spilling to a temporary folder beyond it:

1. two small dictionaries, raw user id -> dense code and raw item id -> dense code, in the
   sorted order of the normalised ids (`normalize_ids`' rules, written in SQL);
2. the log encoded through them, with exact duplicates (same user, item and timestamp) kept
   once, at their first position in file order (`drop_duplicates`);
3. the rows that pass `min_rating`, sorted by user, then timestamp, then file order, streamed
   out in batches as two int32 columns (and the timestamps when the split needs them).

What comes back is 8 bytes per interaction; k-core filtering and the split then run in numpy
on those codes (`k_core_mask`, `assemble`), exactly as `prepare` does them. The result equals
`prepare(read_log(path), ...)` on any log that fits in memory (tested on ml-latest-small and a
synthetic log with duplicates, string ids, ratings and several files).

DuckDB was chosen over Polars' streaming engine and Spark because it runs in-process from one
pip wheel (no JVM, no cluster), reads a Parquet file, folder or glob directly, and enforces a
memory limit by spilling its joins, aggregates and sorts to disk: the three operations above.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from typing import Optional, Sequence, Union

import numpy as np

from keras_seqrec.data.dataset import SequenceDataset
from keras_seqrec.data.prepare import _check_settings, _empty_error, assemble, k_core_mask
from keras_seqrec.data.vocabulary import Vocabulary
from keras_seqrec.datasets.interactions import ID_WHITESPACE, check_columns

PathLike = Union[str, os.PathLike]
INSTALL_HINT = "pip install 'keras-seqrec[large]' (or: pip install duckdb)"
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "UBIGINT", "HUGEINT")
_FLOAT_TYPES = ("FLOAT", "DOUBLE", "REAL")
_CANONICAL_INT = "-?(0|[1-9][0-9]{0,17})"  # the same rule as normalize_ids


def _duckdb():
    try:
        import duckdb
    except ImportError:
        raise ImportError(f"prepare_parquet needs DuckDB: {INSTALL_HINT}.") from None
    return duckdb


def parquet_files(source: Union[PathLike, Sequence[PathLike]]) -> list[str]:
    """The files of a Parquet dataset, in the order `pandas.read_parquet` reads them.

    `source` is a file, a folder (every file below it whose name does not start with "." or
    "_", sorted by path, as pyarrow discovers them) or a list of files (kept in its order).

    Example:

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b.parquet", "a.parquet", "_SUCCESS"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [os.path.basename(f) for f in parquet_files(folder)]
    ['a.parquet', 'b.parquet']
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
                found += [os.path.join(root, n) for n in names if not n.startswith((".", "_"))]
            if not found:
                raise FileNotFoundError(f"{path!r} is a folder without Parquet files.")
            return sorted(found)
        files = [path]
    else:
        files = [os.fspath(f) for f in source]
        if not files:
            raise ValueError("No Parquet files given.")
    for f in files:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"No such Parquet file: {f!r}.")
    return files


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _Log:
    """SQL expressions over the Parquet files, checked against their schema."""

    def __init__(self, con, files, user_col, item_col, time_col, rating_col):
        self.con = con
        self.source = (f"read_parquet([{', '.join(map(_literal, files))}], "
                       "file_row_number=true)")
        try:
            schema = con.sql(f"DESCRIBE SELECT * FROM {self.source}").fetchall()
        except Exception as error:  # duckdb raises its own IOException/InvalidInputException
            first = str(error).strip().splitlines()[0]
            raise ValueError(f"Cannot read the Parquet files: {first}") from None
        self.types = {row[0]: row[1].upper() for row in schema}
        check_columns([c for c in self.types if c != "file_row_number"], user_col=user_col,
                      item_col=item_col, time_col=time_col, rating_col=rating_col)
        self.time_is_float = self.types[time_col] in _FLOAT_TYPES
        self.time = self._timestamp(time_col)
        self.rating = None if rating_col is None else self._rating(rating_col)

    def scalar(self, query: str):
        return self.con.sql(query).fetchall()[0][0]

    def _count(self, condition: str) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {self.source} WHERE {condition}"))

    def _timestamp(self, column: str) -> str:
        kind, col = self.types[column], _quote(column)
        if kind.startswith(("TIMESTAMP", "DATE")):
            ns = f"epoch_ns(CAST({col} AS TIMESTAMP_NS))"
            # Whole seconds rounded down, as the in-memory loader's floor division.
            expr = f"(({ns} - ((({ns} % 1000000000) + 1000000000) % 1000000000)) // 1000000000)"
        elif kind.startswith(_INTEGER_TYPES):
            expr = f"CAST({col} AS BIGINT)"
        elif kind in _FLOAT_TYPES:
            bad = self._count(f"isnan({col}) OR isinf({col}) OR abs({col}) >= 9.223372036854776e18")
            if bad:
                raise ValueError(f"The timestamp column {column!r} has {bad:,} NaN, infinite or "
                                 "out-of-range values; drop or fix those rows.")
            expr = f"CAST({col} AS DOUBLE)"
        else:
            raise ValueError(
                f"The timestamp column {column!r} is {kind}; the out-of-core path reads "
                "integer, float or timestamp columns. Convert it in the Parquet files.")
        missing = self._count(f"{col} IS NULL")
        if missing:
            raise ValueError(f"The timestamp column {column!r} has {missing:,} missing values. "
                             "Every interaction needs a time to be ordered; drop those rows.")
        return expr

    def _rating(self, column: str) -> str:
        kind, col = self.types[column], _quote(column)
        if not (kind.startswith(_INTEGER_TYPES) or kind in _FLOAT_TYPES
                or kind.startswith("DECIMAL")):
            raise ValueError(f"The rating column {column!r} is {kind}, not numeric.")
        nan = f" OR isnan(CAST({col} AS DOUBLE))" if kind in _FLOAT_TYPES else ""
        missing = self._count(f"{col} IS NULL{nan}")
        if missing:
            raise ValueError(f"The rating column {column!r} has {missing:,} missing or "
                             "non-numeric values; drop them or load without `rating_col`.")
        return f"CAST({col} AS FLOAT)"  # float32, as the in-memory loader keeps ratings

    def dictionary(self, column: str, role: str, table: str) -> np.ndarray:
        """Create `table(raw, code)` and return the normalised ids in code order."""
        kind, col = self.types[column], _quote(column)
        con = self.con
        con.execute(f"CREATE TEMP TABLE {table}_raw AS SELECT DISTINCT {col} AS raw "
                    f"FROM {self.source}")
        if self.scalar(f"SELECT count(*) FROM {table}_raw WHERE raw IS NULL"):
            missing = self._count(f"{col} IS NULL")
            raise ValueError(f"The {role} id column {column!r} has {missing:,} missing values. "
                             "Drop or fill those rows before loading.")
        if kind.startswith(_INTEGER_TYPES):
            key = "CAST(raw AS BIGINT)"
        elif kind in _FLOAT_TYPES:
            bad = self.scalar(f"SELECT count(*) FROM {table}_raw WHERE isnan(raw) OR "
                              "isinf(raw) OR raw <> round(raw)")
            if bad:
                raise ValueError(f"The {role} id column {column!r}: ids must be integers or "
                                 "strings; got non-integral numbers.")
            key = "CAST(raw AS BIGINT)"
        elif kind == "VARCHAR":
            chars = " || ".join(f"chr({ord(c)})" for c in ID_WHITESPACE)
            text = f"trim(raw, {chars})"
            empty = self.scalar(f"SELECT count(*) FROM {table}_raw WHERE {text} = ''")
            if empty:
                raise ValueError(f"The {role} id column {column!r} has empty ids; the empty "
                                 "string is the padding id. Drop or fill those rows.")
            numeric = self.scalar(f"SELECT bool_and(regexp_full_match({text}, "
                                  f"{_literal(_CANONICAL_INT)})) FROM {table}_raw")
            key = f"CAST({text} AS BIGINT)" if numeric else text
        else:
            raise ValueError(f"The {role} id column {column!r} is {kind}; ids must be "
                             "integers or strings.")
        con.execute(f"CREATE TEMP TABLE {table} AS SELECT raw, CAST(dense_rank() OVER "
                    f"(ORDER BY {key}) - 1 AS INTEGER) AS code, {key} AS key FROM {table}_raw")
        con.execute(f"DROP TABLE {table}_raw")
        ids = con.sql(f"SELECT DISTINCT code, key FROM {table} ORDER BY code").fetchnumpy()
        con.execute(f"ALTER TABLE {table} DROP COLUMN key")
        keys = ids["key"]
        return keys.astype(np.int64) if keys.dtype.kind in "iu" else keys.astype(str)


def prepare_parquet(
    source: Union[PathLike, Sequence[PathLike]],
    *,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str = "timestamp",
    rating_col: Optional[str] = None,
    name: Optional[str] = None,
    max_len: int = 50,
    min_rating: Optional[float] = None,
    min_user_interactions: int = 1,
    min_item_interactions: int = 1,
    split: str = "leave_one_out",
    valid_start: Optional[float] = None,
    test_start: Optional[float] = None,
    session_gap: Optional[float] = None,
    drop_duplicates: bool = True,
    seed: int = 0,
    cold_items: float = 0.0,
    memory_limit: str = "3GB",
    threads: Optional[int] = None,
    temp_directory: Optional[PathLike] = None,
    verbose: bool = True,
) -> SequenceDataset:
    """`prepare` for a Parquet log too large to load whole: the same sequences, vocabulary and
    splits as `prepare(read_log(source), ...)`, with DuckDB doing the passes over the log.

    Memory: DuckDB stays under `memory_limit` (spilling to `temp_directory`, a fresh temporary
    folder by default, removed afterwards); the log then comes back as 8 bytes per kept
    interaction (16 with timestamps, which the temporal split and `session_gap` need), and
    the split holds about three more copies of the item column. 200 million interactions:
    see `benchmarks/out_of_core.py`.

    Differences from `prepare`: ties in time are broken in file order only (no
    `tie_break="random"`), timestamps must be stored as integers, floats or timestamps (not
    text), and there is no `vocabulary=` (use `prepare` for `keras_seqrec.update`).

    Args:
        source: a Parquet file, a folder of Parquet files, or a list of files; file order (the
            order `parquet_files` gives) breaks timestamp ties.
        user_col, item_col, time_col, rating_col, name: as `read_log`.
        max_len, min_rating, min_user_interactions, min_item_interactions, split,
        valid_start, test_start, session_gap, drop_duplicates, seed, cold_items: as `prepare`.
        memory_limit: DuckDB's memory limit, e.g. "3GB".
        threads: DuckDB's threads (default: every core).
        temp_directory: where DuckDB spills.
        verbose: print each stage and its time to stderr.

    Example:

    >>> import pathlib, tempfile, pandas as pd
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.parquet"
    >>> pd.DataFrame({"user": [1, 1, 1, 1], "item": [7, 8, 9, 7],
    ...               "timestamp": [1, 2, 3, 4]}).to_parquet(path)
    >>> data = prepare_parquet(path, max_len=5, verbose=False)
    >>> data.train.tolist(), data.validation.targets.tolist(), data.test.targets.tolist()
    ([[1, 2]], [3], [1])
    """
    _check_settings(max_len=max_len, split=split, valid_start=valid_start,
                    test_start=test_start, tie_break="file", cold_items=cold_items,
                    min_user_interactions=min_user_interactions,
                    min_item_interactions=min_item_interactions, session_gap=session_gap)
    if min_rating is not None and rating_col is None:
        raise ValueError("`min_rating` needs ratings: pass rating_col= (the column holding "
                         "them), or min_rating=None.")
    files = parquet_files(source)
    if name is None:
        base = source if isinstance(source, (str, os.PathLike)) else files[0]
        name = os.path.basename(os.path.normpath(os.fspath(base))).split(".")[0]
    duckdb = _duckdb()
    start = time.perf_counter()

    def say(text):
        if verbose:
            print(f"prepare_parquet: {text} ({time.perf_counter() - start:.1f} s)",
                  file=sys.stderr, flush=True)

    spill = tempfile.mkdtemp(prefix="keras_seqrec_duckdb_", dir=temp_directory)
    config = {"memory_limit": str(memory_limit), "temp_directory": spill,
              "preserve_insertion_order": False}
    if threads is not None:
        config["threads"] = int(threads)
    try:
        con = duckdb.connect(config=config)
    except duckdb.Error as error:
        shutil.rmtree(spill, ignore_errors=True)
        raise ValueError(f"DuckDB refused memory_limit={memory_limit!r} or threads={threads!r}"
                         f": {str(error).strip().splitlines()[0]}") from None
    try:
        log = _Log(con, files, user_col, item_col, time_col, rating_col)
        user_keys = log.dictionary(user_col, "user", "user_codes")
        item_keys = log.dictionary(item_col, "item", "item_codes")
        say(f"{len(user_keys):,} users, {len(item_keys):,} items")
        raw_count, first, last = con.sql(
            f"SELECT count(*), min({log.time}), max({log.time}) FROM {log.source}"
        ).fetchall()[0]
        if raw_count == 0:
            raise ValueError("The interaction log is empty.")
        info = {"name": name, "raw": {"name": name, "users": len(user_keys),
                                      "items": len(item_keys), "interactions": int(raw_count),
                                      "first_timestamp": int(first),
                                      "last_timestamp": int(last)}}
        order = "(CAST(file_index AS BIGINT) << 40) + file_row_number"
        rating = "" if log.rating is None else f", {log.rating} AS rating"
        encoded = (f"SELECT u.code AS uc, i.code AS ic, {log.time} AS ts, {order} AS ord"
                   f"{rating} FROM {log.source} AS l "
                   f"JOIN user_codes AS u ON l.{_quote(user_col)} = u.raw "
                   f"JOIN item_codes AS i ON l.{_quote(item_col)} = i.raw")
        if drop_duplicates:
            kept_rating = "" if log.rating is None else ", arg_min(rating, ord) AS rating"
            encoded = (f"SELECT uc, ic, ts, min(ord) AS ord{kept_rating} FROM ({encoded}) "
                       "GROUP BY uc, ic, ts")
        con.execute(f"CREATE TEMP TABLE log AS {encoded}")
        count = int(log.scalar("SELECT count(*) FROM log"))
        info["duplicates_dropped"] = int(raw_count - count) if drop_duplicates else 0
        say(f"{raw_count:,} interactions read, {info['duplicates_dropped']:,} duplicates "
            "dropped")
        where = ""
        if min_rating is not None:
            where = f"WHERE rating >= CAST({float(min_rating)!r} AS FLOAT)"
            before, count = count, int(log.scalar(f"SELECT count(*) FROM log {where}"))
            if count == 0:
                raise _empty_error(f"min_rating={min_rating}", before)
        with_time = split == "temporal" or session_gap is not None
        user_codes = np.empty(count, dtype=np.int32)
        item_codes = np.empty(count, dtype=np.int32)
        timestamps = (np.empty(count, dtype=np.float64 if log.time_is_float else np.int64)
                      if with_time else None)
        columns = "uc, ic, ts" if with_time else "uc, ic"
        reader = con.sql(f"SELECT {columns} FROM log {where} ORDER BY uc, ts, ord"
                         ).to_arrow_reader(1 << 20)
        at = 0
        for batch in reader:
            end = at + batch.num_rows
            user_codes[at:end] = batch.column(0).to_numpy()
            item_codes[at:end] = batch.column(1).to_numpy()
            if with_time:
                timestamps[at:end] = batch.column(2).to_numpy()
            at = end
        if at != count:  # pragma: no cover - DuckDB returned another count than it said
            raise RuntimeError(f"DuckDB streamed {at:,} rows of {count:,}.")
        say(f"{count:,} interactions sorted by user and time")
    except (duckdb.OutOfMemoryException, duckdb.IOException) as error:
        raise ValueError(f"DuckDB stopped: {str(error).strip().splitlines()[0]} If memory or "
                         f"disk ran out, give it a larger memory_limit (it was "
                         f"{memory_limit!r}) or a temp_directory with more free space.") from None
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)

    keep = k_core_mask(user_codes, item_codes, min_user_interactions, min_item_interactions)
    if not keep.any():
        raise _empty_error(
            f"k-core filtering (min_user_interactions={min_user_interactions}, "
            f"min_item_interactions={min_item_interactions})", count)
    if not keep.all():
        user_codes, item_codes = user_codes[keep], item_codes[keep]
        if with_time:
            timestamps = timestamps[keep]
    del keep
    # Dense codes over what is left, in the same sorted order of the raw ids.
    users = np.zeros(len(user_keys), dtype=bool)
    users[user_codes] = True
    user_codes = (np.cumsum(users) - 1).astype(np.int32)[user_codes]
    user_ids = user_keys[users]
    present = np.zeros(len(item_keys), dtype=bool)
    present[item_codes] = True
    items = np.cumsum(present).astype(np.int32)[item_codes]  # 1-based: 0 is padding
    del item_codes
    vocabulary = Vocabulary._in_index_order(item_keys[present])
    say(f"k-core: {len(user_ids):,} users, {vocabulary.num_items:,} items, "
        f"{len(items):,} interactions")
    settings = {"max_len": int(max_len), "min_rating": min_rating,
                "min_user_interactions": int(min_user_interactions),
                "min_item_interactions": int(min_item_interactions), "split": split,
                "session_gap": session_gap, "drop_duplicates": bool(drop_duplicates),
                "tie_break": "file"}
    data = assemble(name, info, user_ids, user_codes, items, timestamps, vocabulary,
                    settings, valid_start=valid_start, test_start=test_start,
                    cold_items=cold_items, seed=seed)
    say("split")
    return data
