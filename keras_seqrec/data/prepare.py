"""`prepare`: interaction log -> filtered, time-ordered sequences with leak-free splits."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from keras_seqrec.data.dataset import EvalSplit, SequenceDataset
from keras_seqrec.data.sequences import Sequences
from keras_seqrec.data.vocabulary import Vocabulary
from keras_seqrec.datasets.interactions import ITEM, RATING, TIMESTAMP, USER, Interactions

SPLITS = ("leave_one_out", "temporal")
TIE_BREAKS = ("file", "random")


def k_core_mask(user_codes: np.ndarray, item_codes: np.ndarray, min_user: int,
                min_item: int) -> np.ndarray:
    """Which interactions survive iterative k-core filtering: drop users with fewer than
    `min_user` and items with fewer than `min_item` interactions until both bounds hold.

    Works on dense integer codes and holds one boolean per interaction plus one copy of the
    surviving codes at a time, so it runs on logs of hundreds of millions of rows.

    Example:

    >>> k_core_mask(np.array([0, 0, 1]), np.array([0, 1, 0]), 2, 1).tolist()
    [True, True, False]
    """
    keep = np.ones(len(user_codes), dtype=bool)
    if min_user <= 1 and min_item <= 1:
        return keep
    num_users, num_items = int(user_codes.max()) + 1, int(item_codes.max()) + 1
    while True:
        users_ok = np.bincount(user_codes[keep], minlength=num_users) >= min_user
        items_ok = np.bincount(item_codes[keep], minlength=num_items) >= min_item
        ok = users_ok[user_codes]
        ok &= items_ok[item_codes]
        ok &= keep
        if np.array_equal(ok, keep) or not ok.any():
            return ok
        keep = ok


def _k_core(frame: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Iteratively drop users and items with too few interactions until both bounds hold."""
    if min_user <= 1 and min_item <= 1:
        return frame
    keep = k_core_mask(pd.factorize(frame[USER])[0], pd.factorize(frame[ITEM])[0],
                       min_user, min_item)
    return frame[keep]


def _empty_error(what: str, before: int) -> ValueError:
    return ValueError(
        f"No interactions left after {what} (there were {before:,} before it). "
        "Loosen that setting."
    )


def prepare(
    interactions: Interactions,
    *,
    max_len: int = 50,
    min_rating: Optional[float] = None,
    min_user_interactions: int = 1,
    min_item_interactions: int = 1,
    split: str = "leave_one_out",
    valid_start: Optional[float] = None,
    test_start: Optional[float] = None,
    session_gap: Optional[float] = None,
    drop_duplicates: bool = True,
    tie_break: str = "file",
    seed: int = 0,
    cold_items: float = 0.0,
    vocabulary: Optional[Vocabulary] = None,
) -> SequenceDataset:
    """Turn an interaction log into time-ordered item sequences with leak-free splits.

    Steps: drop exact duplicate rows (the same user, item and timestamp, `drop_duplicates`);
    keep ratings `>= min_rating` (implicit feedback); iterative k-core filtering (every
    user has `>= min_user_interactions` and every item `>= min_item_interactions`); sort each
    user's interactions by timestamp, ties in file order or in a seeded random order
    (`tie_break`); build the item vocabulary over what remains; split.

    Splits:
        - `"leave_one_out"` (default): per user, the last item is the test target (its input:
          everything before it), the second-to-last the validation target (input: everything
          before that), the rest is training. Users with fewer than 3 interactions are too short
          to split: all their items are used for training and they are in no evaluation split.
          With `session_gap`, only each user's last session is split this way and the user's
          earlier sessions train whole, so no training sequence is later than a target.
        - `"temporal"`: a global cut in time. Interactions before `valid_start` are training;
          every interaction at or after `valid_start` and before `test_start` is a validation
          target, every one at or after `test_start` a test target, each with the user's
          earlier interactions as input. Targets with no earlier interaction (new users) are
          dropped and counted in `info`.

    Args:
        interactions: the log, e.g. from `keras_seqrec.datasets.load`.
        max_len: model input length (>= 2); older items are truncated at batching time.
        min_rating: keep only interactions rated at least this (needs a rating column).
        min_user_interactions, min_item_interactions: k-core bounds.
        split: "leave_one_out" or "temporal".
        valid_start, test_start: the temporal cut points, in the log's timestamp unit.
        session_gap: split each user's history into sessions wherever two consecutive
            interactions are more than this far apart (e.g. 1800 for 30 minutes of Unix
            seconds). Every session is then its own sequence, named `"<user>:<n>"`: nothing
            carries over from one session to the next (the session-based setting of GRU4Rec).
            Filtering happens before the split into sessions.
        drop_duplicates: drop rows repeating an earlier row's user, item and timestamp (a log
            exported twice would otherwise make the validation target equal the test target);
            the count is in `describe()["duplicates_dropped"]`. Set False to keep them.
        tie_break: order of a user's interactions with equal timestamps: "file" (file order)
            or "random" (a random order drawn with `seed`, the same for every run).
        seed: seed of the random tie-break and of the draw of cold items.
        cold_items: the cold-start protocol: this share of the items (drawn with `seed`)
            is "new": every interaction with them is removed from the training sequences, so
            no fitted statistic (the models, item2vec, popularity, Markov transitions) knows
            them, while they stay in the vocabulary, in evaluation histories and as
            evaluation targets. Rank over the whole catalogue as usual and report warm and
            cold targets apart (`evaluate_recommender(..., targets="cold")`). The indices are
            `data.cold_items`; counts are in `describe()["cold_items"]`.
        vocabulary: an existing vocabulary (a trained model's) whose items keep their
            indices, even those the filtered log no longer holds; the log's other items are
            appended after them in order of first appearance (`Vocabulary.extended`). What
            `keras_seqrec.update` prepares a grown log with.

    Returns:
        A `SequenceDataset`.

    Example:

    >>> import pandas as pd
    >>> from keras_seqrec.datasets import from_dataframe
    >>> log = from_dataframe(pd.DataFrame({"user": [1, 1, 1, 1], "item": [7, 8, 9, 7],
    ...                                    "timestamp": [1, 2, 3, 4]}))
    >>> data = prepare(log, max_len=5)
    >>> data.train.tolist(), data.validation.targets.tolist(), data.test.targets.tolist()
    ([[1, 2]], [3], [1])
    """
    if not isinstance(interactions, Interactions):
        raise TypeError(
            "`interactions` must be an `Interactions` (see keras_seqrec.datasets); got "
            f"{type(interactions).__name__}."
        )
    _check_settings(max_len=max_len, split=split, valid_start=valid_start,
                    test_start=test_start, tie_break=tie_break, cold_items=cold_items,
                    min_user_interactions=min_user_interactions,
                    min_item_interactions=min_item_interactions, session_gap=session_gap)

    frame = interactions.frame
    info = {"name": interactions.name, "raw": interactions.describe()}
    if len(frame) == 0:
        raise ValueError("The interaction log is empty.")
    duplicates = 0
    if drop_duplicates:
        repeated = frame.duplicated(subset=[USER, ITEM, TIMESTAMP], keep="first").to_numpy()
        duplicates = int(repeated.sum())
        if duplicates:
            frame = frame[~repeated]
    info["duplicates_dropped"] = duplicates
    if min_rating is not None:
        if RATING not in frame.columns:
            raise ValueError(
                "`min_rating` needs ratings, but this log has none (columns: "
                f"{list(frame.columns)}). Pass rating_col= when loading, or min_rating=None."
            )
        before = len(frame)
        frame = frame[frame[RATING].to_numpy() >= min_rating]
        if len(frame) == 0:
            raise _empty_error(f"min_rating={min_rating}", before)
    before = len(frame)
    frame = _k_core(frame, min_user_interactions, min_item_interactions)
    if len(frame) == 0:
        raise _empty_error(
            f"k-core filtering (min_user_interactions={min_user_interactions}, "
            f"min_item_interactions={min_item_interactions})",
            before,
        )

    # Time order within each user. lexsort is stable, so ties keep file order, or the order
    # of a seeded random key for tie_break="random".
    user_codes, user_ids = pd.factorize(frame[USER], sort=True)
    timestamps = frame[TIMESTAMP].to_numpy()
    keys = (timestamps, user_codes)
    if tie_break == "random":
        keys = (np.random.default_rng(seed).permutation(len(timestamps)),) + keys
    order = np.lexsort(keys)
    user_codes = user_codes[order]
    timestamps = timestamps[order]
    present = pd.unique(frame[ITEM])
    if vocabulary is None:
        vocabulary = Vocabulary(present)
    else:
        new = present[vocabulary.lookup(present) == 0]
        vocabulary = vocabulary.extended(new) if len(new) else vocabulary
    items = vocabulary.lookup(frame[ITEM].to_numpy()[order])
    settings = {"max_len": int(max_len), "min_rating": min_rating,
                "min_user_interactions": int(min_user_interactions),
                "min_item_interactions": int(min_item_interactions), "split": split,
                "session_gap": session_gap, "drop_duplicates": bool(drop_duplicates),
                "tie_break": tie_break, **({"seed": int(seed)} if tie_break == "random"
                                           else {})}
    return assemble(interactions.name, info, np.asarray(user_ids), user_codes, items,
                    timestamps, vocabulary, settings, valid_start=valid_start,
                    test_start=test_start, cold_items=cold_items, seed=seed,
                    item_data=interactions.items)


def _check_settings(*, max_len, split, valid_start, test_start, tie_break, cold_items,
                    min_user_interactions, min_item_interactions, session_gap) -> None:
    if not isinstance(max_len, (int, np.integer)) or max_len < 2:
        raise ValueError(f"`max_len` must be an integer >= 2; got {max_len!r}.")
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}; got {split!r}.")
    for arg, value in (("min_user_interactions", min_user_interactions),
                       ("min_item_interactions", min_item_interactions)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{arg}` must be an integer >= 1; got {value!r}.")
    if split == "temporal":
        if valid_start is None or test_start is None:
            raise ValueError(
                "The temporal split needs both `valid_start` and `test_start` (timestamps in the "
                "log's unit, valid_start <= test_start)."
            )
        if valid_start > test_start:
            raise ValueError(
                f"`valid_start` ({valid_start}) must not be after `test_start` ({test_start})."
            )
    elif valid_start is not None or test_start is not None:
        raise ValueError("`valid_start`/`test_start` only apply to split='temporal'.")
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"`tie_break` must be one of {TIE_BREAKS}; got {tie_break!r}.")
    if not 0.0 <= cold_items < 1.0:
        raise ValueError(f"`cold_items` is a share of the items in [0, 1); got {cold_items!r}.")
    if session_gap is not None and session_gap <= 0:
        raise ValueError(f"`session_gap` must be > 0; got {session_gap}.")


def assemble(name: str, info: dict, users: np.ndarray, user_codes: np.ndarray,
             items: np.ndarray, timestamps: Optional[np.ndarray], vocabulary: Vocabulary,
             settings: dict, *, valid_start=None, test_start=None, cold_items: float = 0.0,
             seed: int = 0, item_data: Optional[pd.DataFrame] = None) -> SequenceDataset:
    """The part of `prepare` after filtering, shared with `prepare_parquet`: sessions, the
    split and the cold items, from the kept interactions in time order.

    Args:
        users: raw id of every user code (sorted).
        user_codes: each interaction's user code, non-decreasing.
        items: each interaction's vocabulary index, in time order within its user.
        timestamps: aligned with `items`; may be None for a leave-one-out split without
            sessions, which does not read them.
        settings: what `describe()["settings"]` reports.
    """
    session_gap, split = settings["session_gap"], settings["split"]
    last_session = None
    if session_gap is not None:
        starts = np.ones(len(items), dtype=bool)
        starts[1:] = (user_codes[1:] != user_codes[:-1]) | (
            np.diff(timestamps) > session_gap
        )
        session = np.cumsum(starts) - 1
        owner_codes = user_codes[np.flatnonzero(starts)]  # non-decreasing
        number = np.arange(len(owner_codes)) - np.searchsorted(owner_codes, owner_codes)
        owner = users[owner_codes].astype(str)
        users = np.char.add(np.char.add(owner, ":"), number.astype(str))
        user_codes = session
        last_session = np.r_[owner_codes[1:] != owner_codes[:-1], True]
    # Codes are sorted, so each user's count is where the next user starts (no int64 copy
    # of a long log, as bincount would make).
    user_codes = np.asarray(user_codes)
    bounds = np.searchsorted(user_codes, np.arange(len(users) + 1, dtype=user_codes.dtype))
    full = Sequences.from_lengths(items, np.diff(bounds))

    info.update(
        filtered={"users": len(users), "items": vocabulary.num_items,
                  "interactions": len(items)},
        settings=dict(settings),
    )
    if split == "leave_one_out":
        train, validation, test, split_info = _leave_one_out(full, users, last_session)
    else:
        train, validation, test, split_info = _temporal(
            full, users, timestamps, valid_start, test_start
        )
        info["settings"].update(valid_start=valid_start, test_start=test_start)
    info["split"] = split_info
    cold = np.zeros(0, dtype=np.int32)
    if cold_items:
        train, cold, info["cold_items"] = _make_cold(train, validation, test, vocabulary,
                                                     cold_items, seed)
        info["settings"].update(cold_items=float(cold_items), seed=int(seed))
        info["split"]["train_interactions"] = int(len(train.values))
    return SequenceDataset(
        name=name,
        vocabulary=vocabulary,
        max_len=int(settings["max_len"]),
        users=users,
        train=train,
        validation=validation,
        test=test,
        items=item_data,
        info=info,
        cold_items=cold,
    )


def _make_cold(train: Sequences, validation, test, vocabulary: Vocabulary, share: float,
               seed: int):
    """Draw `share` of the items as new and remove their interactions from `train`."""
    count = int(round(share * vocabulary.num_items))
    if count < 1:
        raise ValueError(f"`cold_items={share}` of {vocabulary.num_items} items is no item; "
                         "use a larger share.")
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(np.arange(1, vocabulary.size), size=count, replace=False))
    mask = np.zeros(vocabulary.size, dtype=bool)
    mask[cold] = True
    kept = train.without(mask)
    info = {"share": float(share), "items": int(count),
            "training_interactions_removed": int(len(train.values) - len(kept.values)),
            "validation_cold_targets": int(mask[validation.targets].sum()),
            "test_cold_targets": int(mask[test.targets].sum())}
    return kept, cold.astype(np.int32), info


def _leave_one_out(full: Sequences, users: np.ndarray, last_session=None):
    lengths = full.lengths
    # The rows that may hold targets: every user's, or with sessions each user's last one.
    candidates = np.ones(len(lengths), bool) if last_session is None else last_session
    splittable = candidates & (lengths >= 3)
    # Short users train on everything and are evaluated nowhere (documented rule).
    train = full.head(np.where(splittable, lengths - 2, lengths))
    rows = np.flatnonzero(splittable)
    ends = full.offsets[rows + 1]
    validation = EvalSplit("validation", users[rows], full.prefixes(rows, lengths[rows] - 2),
                           full.values[ends - 2])
    test = EvalSplit("test", users[rows], full.prefixes(rows, lengths[rows] - 1),
                     full.values[ends - 1])
    info = {
        "train_interactions": int(len(train.values)),
        "validation_examples": len(validation),
        "test_examples": len(test),
        "users_too_short_to_split": int((candidates & ~splittable).sum()),
    }
    if last_session is not None:
        info["earlier_sessions_in_training"] = int((~last_session).sum())
    return train, validation, test, info


def _temporal(full, users, timestamps, valid_start, test_start):
    row = full.row_ids()
    pos = full.positions()
    in_train = timestamps < valid_start
    train = Sequences.from_lengths(
        full.values[in_train], np.bincount(row[in_train], minlength=len(full))
    )

    def targets_between(lo, hi, name):
        chosen = np.flatnonzero((timestamps >= lo) & (timestamps < hi) & (pos > 0))
        dropped = int(((timestamps >= lo) & (timestamps < hi) & (pos == 0)).sum())
        # The history of a target is every earlier item of the same user.
        rows = row[chosen]
        history = full.slices(rows, 0, pos[chosen])
        return EvalSplit(name, users[rows], history, full.values[chosen]), dropped

    validation, dropped_valid = targets_between(valid_start, test_start, "validation")
    test, dropped_test = targets_between(test_start, np.inf, "test")
    info = {
        "train_interactions": int(len(train.values)),
        "validation_examples": len(validation),
        "test_examples": len(test),
        "targets_dropped_without_history": dropped_valid + dropped_test,
    }
    return train, validation, test, info
