"""SavedModel export for TensorFlow Serving, and `Recommender` for answering requests in Python.

The exported graph takes raw item ids and returns raw item ids: vocabulary lookup, padding,
truncation, the model, exclusion of seen items, cold start and top-K all live inside it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import socket
import tempfile
import warnings
from typing import Optional, Sequence, Union

import keras
import numpy as np

from keras_seqrec.data import Vocabulary
from keras_seqrec.data.pipeline import bucket_length
from keras_seqrec._startup import import_tensorflow

PathLike = Union[str, os.PathLike]
CARD = "model_card.json"
TITLES = "item_titles.json"
OWNER = ".keras_seqrec_export.json"  # inside a temporary export folder: who is writing it


def _next_version(export_dir: str) -> int:
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(d) for d in os.listdir(export_dir) if re.fullmatch(r"\d+", d)]
    return max(versions, default=0) + 1


def _attention_explainer(model, scorer):
    """`(batch, length)` -> `scorer`'s logits and the last position's attention weights
    `(batch, length)` of a `gru_attention` model, in one pass over the GRU; None for any
    other model."""
    from keras_seqrec.models.common import single_input
    from keras_seqrec.models.gru_attention import STATES, attention_layer, attention_memory

    attention = attention_layer(model)
    if attention is None:
        return None
    _, weights = attention(model.get_layer(STATES).output,
                           padding_mask=model.get_layer("padding_mask").output, last_only=True,
                           memory=attention_memory(model))
    return keras.Model(single_input(model), [scorer.outputs[0], weights[:, 0, :]],
                       name=f"{model.name}_explain")


def _serving_module(model, vocabulary: Vocabulary, top_k: int, exclude_seen: bool,
                    item_counts: Optional[np.ndarray], jit_compile: bool = False):
    """The export archive and a description of each signature, for the model card (see
    `export_saved_model`)."""
    tf = import_tensorflow()

    from keras_seqrec.models.common import last_position_model, model_max_len
    from keras_seqrec.models.session import RecurrentSession

    max_len = model_max_len(model)
    size = vocabulary.size
    if top_k < 1 or top_k > vocabulary.num_items:
        raise ValueError(f"`top_k` must be in 1..{vocabulary.num_items}; got {top_k}.")
    scorer = last_position_model(model)
    # The id lookup and the ragged ops stay outside XLA; the model itself can be compiled.
    score = tf.function(lambda ids: scorer(ids, training=False), jit_compile=jit_compile)
    keys = tf.constant([str(x) for x in vocabulary.ids])
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, tf.range(1, size, dtype=tf.int64)),
        default_value=0,
    )
    id_strings = tf.constant([""] + [str(x) for x in vocabulary.ids])
    if item_counts is None:
        cold = None
    else:
        counts = np.asarray(item_counts, dtype=np.float32).copy()
        counts[0] = -np.inf
        cold = tf.constant(counts[None, :])

    def lookup(history):
        """Item indices of a string history (unknown ids and "" padding -> 0)."""
        return table.lookup(tf.strings.strip(history))

    # The columns the model runs on for scores: the batch's longest history rounded up to one
    # of few widths (`bucket_length`), so a 10-item history costs a recurrent model 10 steps,
    # not `max_len`, and an XLA export compiles few shapes. Every zoo model scores a trimmed
    # window as the full one (the battery's `trimmed_padding_and_long_inputs`).
    widths = tf.constant([bucket_length(n, max_len) for n in range(max_len + 1)], tf.int64)

    def window(idx, trim: bool = False):
        """The most recent `max_len` known items, left-padded to `(batch, max_len)`, or with
        `trim` to the bucketed width of the batch's longest history."""
        known = idx > 0
        compact = tf.ragged.boolean_mask(idx, known)[:, -max_len:]
        lengths = compact.row_lengths()
        width = max_len
        if trim:  # (the maximum of an empty batch is the lowest int64: 0 then)
            width = tf.gather(widths, tf.maximum(tf.reduce_max(lengths), 0))
        right = compact.to_tensor(default_value=0, shape=[None, max_len])
        # Shift every row right so the most recent item sits in the last column.
        cols = tf.range(width, dtype=tf.int64)[None, :] - (width - lengths)[:, None]
        return tf.where(cols >= 0, tf.gather(right, tf.maximum(cols, 0), batch_dims=1),
                        tf.zeros_like(cols))

    def finish(scores, has_known, seen):
        """Cold start and seen-item exclusion on raw scores; `seen` int64 `(batch, n)`
        indices, 0 where there is none."""
        if cold is not None:
            scores = tf.where(has_known[:, None], scores,
                              tf.broadcast_to(cold, tf.shape(scores)))
        if exclude_seen:
            where = tf.where(seen > 0)
            pairs = tf.stack([where[:, 0], tf.gather_nd(seen, where)], axis=1)
            scores = tf.tensor_scatter_nd_update(
                scores, pairs, tf.fill([tf.shape(pairs)[0]], float("-inf")))
        return scores

    def scores_for(history):
        idx = lookup(history)
        scores = tf.cast(score(tf.cast(window(idx, trim=True), tf.int32)), tf.float32)
        return finish(scores, tf.reduce_any(idx > 0, axis=1), idx)

    def best_of(scores):
        # Padding, seen items and non-finite scores are never answers: all become -inf, and
        # only the slots with a finite score are real recommendations (`num_results`).
        finite = tf.math.is_finite(scores)
        finite = tf.concat([tf.zeros_like(finite[:, :1]), finite[:, 1:]], axis=1)
        scores = tf.where(finite, scores, tf.fill(tf.shape(scores), float("-inf")))
        best = tf.math.top_k(scores, k=top_k)
        real = tf.math.is_finite(best.values)
        ids = tf.where(real, tf.gather(id_strings, best.indices), tf.fill(tf.shape(real), ""))
        return {"item_ids": ids, "scores": best.values,
                "num_results": tf.reduce_sum(tf.cast(real, tf.int32), axis=1)}, best.indices

    def serve(history):
        return best_of(scores_for(history))[0]

    def score_all(history):
        # Scores of every item in vocabulary order (item_ids[i] <-> scores[:, i]).
        scores = scores_for(history)[:, 1:]
        return {"scores": scores}

    attention = _attention_explainer(model, scorer)
    explain_scores = (tf.function(lambda ids: attention(ids, training=False),
                                  jit_compile=jit_compile) if attention is not None else None)

    def leave_one_out(x, top, scores):
        """The drop in each row's `top` item score when each window item is left out
        (earlier items move one place later, a padding enters on the left); 0 at padding."""
        width = tf.shape(x)[1]
        reach = tf.reduce_max(tf.reduce_sum(tf.cast(x > 0, tf.int32), axis=1))
        x = x[:, width - reach:]  # the columns where some row has an item
        cols = tf.range(reach)
        # sources[j, c]: the column variant j (item j left out) reads at column c.
        sources = tf.where(cols[None, :] <= cols[:, None], cols[None, :] - 1, cols[None, :])
        padded = tf.concat([tf.zeros_like(x[:, :1]), x], axis=1)
        variants = tf.gather(padded, sources + 1, axis=1)  # (batch, reach, reach)
        flat = tf.reshape(variants, [-1, reach])
        rows = tf.repeat(top, reach)
        left_out = tf.gather(tf.cast(score(flat), tf.float32), rows, batch_dims=1)
        full = tf.gather(tf.cast(scores, tf.float32), top, batch_dims=1)
        drop = full[:, None] - tf.reshape(left_out, [-1, reach])
        drop = tf.where(x > 0, drop, tf.zeros_like(drop))
        return tf.concat([tf.zeros([tf.shape(x)[0], width - reach]), drop], axis=1)

    def explain(history):
        idx = lookup(history)
        x = tf.cast(window(idx), tf.int32)
        if attention is not None:
            scores, weights = explain_scores(x)
        else:
            scores = score(x)
        answer, best = best_of(finish(tf.cast(scores, tf.float32),
                                      tf.reduce_any(idx > 0, axis=1), idx))
        if attention is None:
            weights = leave_one_out(x, tf.cast(best[:, 0], tf.int32), scores)
        weights = tf.cast(weights, tf.float32)
        # Back to the request's columns: a known item's place from the end of its row picks
        # its window column; unknown ids, padding and items before the window get 0.
        known = idx > 0
        from_end = tf.cumsum(tf.cast(known, tf.int32), axis=1, reverse=True)
        column = max_len - from_end
        inside = known & (column >= 0)
        picked = tf.gather(weights, tf.clip_by_value(column, 0, max_len - 1), batch_dims=1)
        answer["weights"] = tf.where(inside, picked, tf.zeros_like(picked))
        return answer

    archive = keras.export.ExportArchive()
    archive.track(scorer)
    archive.track(table)
    if attention is not None:
        archive.track(attention)
    spec = [tf.TensorSpec([None, None], tf.string, name="history")]
    archive.add_endpoint("serving_default", serve, input_signature=spec)
    archive.add_endpoint("score_all", score_all, input_signature=spec)
    archive.add_endpoint("explain", explain, input_signature=spec)
    signatures = {"serving_default": "top-K", "score_all": "every item's score",
                  "explain": ("attention" if attention is not None else "leave_one_out")}

    try:
        session = RecurrentSession(model)
    except ValueError as e:
        signatures["session_step"] = f"not available: {e}"
        return archive, signatures

    def step(state, seen, idx):
        state, logits = session.step(state, idx)
        known = idx > 0
        seen = tf.where(known[:, None], tf.concat([seen[:, 1:], idx[:, None]], axis=1), seen)
        return state, seen, finish(logits, session.events(state) > 0, seen)

    def session_step(state, seen, item_id):
        idx = lookup(item_id)
        state, seen, scores = step(state, seen, idx)
        answer = best_of(scores)[0]
        answer.update(state=state, seen=seen)
        return answer

    def session_start(history):
        idx = lookup(history)
        batch = tf.shape(idx)[0]
        state = tf.zeros([batch, session.state_size])
        seen = tf.zeros([batch, max_len], tf.int64)
        scores = finish(tf.zeros([batch, size]), tf.zeros([batch], tf.bool), seen)

        def body(i, state, seen, scores):
            state, seen, scores = step(state, seen, idx[:, i])
            return i + 1, state, seen, scores

        _, state, seen, scores = tf.while_loop(
            lambda i, *_: i < tf.shape(idx)[1], body, (0, state, seen, scores))
        answer = best_of(scores)[0]
        answer.update(state=state, seen=seen)
        return answer

    archive.add_endpoint("session_step", session_step, input_signature=[
        tf.TensorSpec([None, session.state_size], tf.float32, name="state"),
        tf.TensorSpec([None, max_len], tf.int64, name="seen"),
        tf.TensorSpec([None], tf.string, name="item_id"),
    ])
    archive.add_endpoint("session_start", session_start, input_signature=spec)
    signatures["session_step"] = {"state_size": session.state_size, "seen_size": max_len}
    signatures["session_start"] = "state and top-K of a history"
    return archive, signatures


def _store_each_weight_once(archive) -> None:
    """Keras' TensorFlow `ExportArchive` writes every weight twice, once through the
    `keras.Variable` wrappers `track()` lists and once as the `tf.Variable`s the endpoints
    capture (keras-team/keras#23553), which doubles the SavedModel and the memory of every
    server that loads it (a 10,000,000-item SASRec's is 2.8 GiB, not twice that,
    `benchmarks/SPEED.md`). Listing the `tf.Variable`s
    themselves lets TensorFlow's checkpoint see one object per weight."""
    tracked = getattr(archive, "_tf_trackable", None)
    if tracked is None:  # pragma: no cover - another Keras layout: nothing to mend
        return
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        wrapped = list(getattr(tracked, name, []))
        setattr(tracked, name, [getattr(v, "_value", v) for v in wrapped])


def _warmup_requests(path: str, model_name: str, max_len: int) -> bool:
    """Write TF Serving warm-up requests (PredictionLog TFRecords); False if the protos are
    missing (install `tensorflow-serving-api`)."""
    try:
        tf = import_tensorflow()
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        warnings.warn("tensorflow-serving-api is not installed: no warm-up requests written.")
        return False
    with tf.io.TFRecordWriter(path) as writer:
        for batch, length in ((1, 1), (1, max_len), (8, max_len)):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name,
                                               signature_name="serving_default"),
            )
            request.inputs["history"].CopyFrom(
                tf.make_tensor_proto(np.full((batch, length), "", dtype=object), dtype=tf.string)
            )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return True


@contextlib.contextmanager
def _quiet_tensorflow_logger():
    """TensorFlow's Python logger at WARNING for the block: SavedModel writing logs an INFO
    line naming the temporary folder, which says nothing to the user (warnings still show)."""
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def export_saved_model(
    model: keras.Model,
    vocabulary: Vocabulary,
    export_dir: Optional[PathLike] = None,
    *,
    top_k: int = 10,
    version: Optional[int] = None,
    exclude_seen: bool = True,
    item_counts: Optional[np.ndarray] = None,
    model_card: Optional[dict] = None,
    titles: Optional[dict] = None,
    jit_compile: bool = False,
    item_features=None,
) -> str:
    """Export a zoo model as a self-contained TF Serving SavedModel `<export_dir>/<version>/`.

    Signatures (both take `history`: string `[batch, None]`, raw item ids, oldest first, rows
    padded with empty strings; int ids are given as strings; leading and trailing ASCII
    whitespace is stripped, the same normalisation as the loaders' `normalize_ids`):

    - `serving_default` -> `item_ids` string `[batch, top_k]`, `scores` float `[batch, top_k]`
      and `num_results` int32 `[batch]`: only the first `num_results` slots of a row are
      recommendations. When fewer than `top_k` unseen items remain, the slots after them hold
      the sentinel id `""` with score `-inf`; padding or a seen item is never returned.
    - `score_all` -> `scores` float `[batch, num_items]` in vocabulary order, for re-ranking.
    - `explain` -> what `serving_default` gives, and `weights` float `[batch, history width]`
      aligned with the request's columns: how much each history item made the model
      recommend its first item. `gru_attention`: its attention at the last position (summing
      to 1 over the items it reads); every other model: the drop in the first item's score
      when that item is left out (one batched pass over the window's leave-one-out
      histories). Unknown ids, padding and items older than the `max_len` window get 0.

    Recurrent models (`rnn`, `lstm`, `gru`, `gru_w2v`, `gru4rec`, `gru_attention` with its
    learned query) also get one-event session signatures, so a server keeps each session's
    state and reads only the newest event (`keras_seqrec.models.session`):

    - `session_step(state float [batch, state_size], seen int64 [batch, max_len], item_id
      string [batch])` -> the new `state` and `seen`, and the top-K of `serving_default`. A
      new session starts from zeros for both (`state_size` is in the model card); an
      unknown id or `""` leaves a session unchanged. For up to `max_len` events the answers
      equal `serving_default` on the whole history (tested to 1e-5); a longer session keeps
      reading all of it, and `seen` excludes its last `max_len` items.
    - `session_start(history)` -> the same outputs for a stored history (the events read one
      by one), to resume a session.

    The model card's `serving.signatures` lists them, with the explanation method and the
    session state's size, or why a model has no session state (self-attention models).

    Inside the graph: unknown ids are dropped (never mapped to an item), the most recent
    `max_len` known items are left-padded, items already in the history are excluded
    (`exclude_seen`), and a history with no known item (cold start) is answered with the most
    popular training items (`item_counts`).

    The version is written to a temporary folder and renamed into place, so TF Serving never
    sees a half-written version; an existing version is never overwritten. Folders are made
    0755 and files 0644, so a TF Serving process running as another user can read them. A
    temporary folder left by an export that was killed (its process is gone) is removed by the
    next export into the same folder.

    Args:
        model: a zoo model.
        vocabulary: the dataset's `Vocabulary`.
        export_dir: model folder; default `saved_models/<model.name>`.
        top_k: recommendations per request.
        version: integer version; default: one more than the highest there.
        exclude_seen: never recommend items already in the history.
        item_counts: training interactions per item index (`data.item_counts()`), used for cold
            start. Without it, cold-start users get the model's scores for an empty history.
        model_card: metadata saved as `assets.extra/model_card.json`.
        titles: optional `{raw id: title}` saved as `assets.extra/item_titles.json`.
        item_features: the `ItemFeatures` of a feature-aware model, saved as
            `assets.extra/item_features.npz` (`ItemFeatures.load`), so new items can be added
            to this version later (`with_new_items`, `keras_seqrec.catalogue.add_items`).
        jit_compile: compile the model's part of both signatures with XLA. On 2 CPU cores it
            cut a gru_attention request of 50 ids from 4.2 to 1.0 ms p50 (the GRU's per-step
            overhead) and raised batch-256 throughput from 8,281 to 10,823 recommendations/s
            (`benchmarks/SPEED.md`); XLA compiles once for each new batch size and history
            width bucket a server sees (about a second each). Off by default: TF Serving runs
            XLA-compiled functions only when started with `--xla_cpu_compilation_enabled=true`
            (experimental there); `tf.saved_model.load` and `Recommender` run them as they are.

    Returns:
        The path of the new version folder.

    Example:

    >>> import tempfile, keras_seqrec as ks
    >>> vocab = ks.Vocabulary(list(range(100, 120)))
    >>> model = ks.build_model("gru", vocab.num_items, 5, embedding_dim=8, hidden_dim=8)
    >>> path = export_saved_model(model, vocab, tempfile.mkdtemp(), top_k=3)
    >>> Recommender(path).recommend([["101", "105"]], k=3)[0][0].shape
    (3,)
    """
    if export_dir is None:
        export_dir = os.path.join("saved_models", model.name)
    export_dir = os.fspath(export_dir)
    if version is None:
        version = _next_version(export_dir)
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer; got {version!r}.")
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(
            f"{final} already exists; TF Serving versions are immutable. Pass another "
            "`version`, or leave it out to use the next free one."
        )
    from keras_seqrec.models.common import model_max_len

    if model.output_shape[-1] != vocabulary.size:
        raise ValueError(
            f"The model scores {model.output_shape[-1]} columns but the vocabulary has "
            f"{vocabulary.num_items} items (+1 padding)."
        )
    if item_counts is None:
        warnings.warn("No `item_counts`: cold-start users get the empty-history scores.")
    if item_features is not None and item_features.vocabulary != vocabulary:
        raise ValueError("`item_features` must be aligned with `vocabulary` (the same items in "
                         "the same order).")
    os.makedirs(export_dir, exist_ok=True)
    _remove_stale_temporaries(export_dir)
    # The temporary folder is a hidden sibling (same filesystem, so the rename is atomic, and
    # TF Serving ignores non-numeric names), with a note of the process that writes it.
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
    with open(os.path.join(tmp, OWNER), "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
    try:
        archive, signatures = _serving_module(model, vocabulary, top_k, exclude_seen,
                                              item_counts, jit_compile)
        _store_each_weight_once(archive)
        with _quiet_tensorflow_logger():  # "INFO:tensorflow:Assets written to: <tmp>"
            archive.write_out(tmp, verbose=False)
        extra = os.path.join(tmp, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        card = dict(model_card or {})
        card.setdefault("model", model.name)
        card.update(
            serving={"top_k": top_k, "exclude_seen": exclude_seen, "jit_compile": jit_compile,
                     "max_len": model_max_len(model), "num_items": vocabulary.num_items,
                     "cold_start": "popularity" if item_counts is not None else "model",
                     "signatures": signatures},
            exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(),
            versions=_versions(),
        )
        with open(os.path.join(extra, CARD), "w", encoding="utf-8") as f:
            json.dump(card, f, indent=2, default=str)
        with open(os.path.join(extra, "vocabulary.json"), "w", encoding="utf-8") as f:
            json.dump(vocabulary.get_config(), f)
        if titles:
            with open(os.path.join(extra, TITLES), "w", encoding="utf-8") as f:
                json.dump({str(k): v for k, v in titles.items()}, f)
        if item_features is not None:
            item_features.save(os.path.join(extra, "item_features.npz"))
        _warmup_requests(os.path.join(extra, "tf_serving_warmup_requests"), model.name,
                         model_max_len(model))
        os.remove(os.path.join(tmp, OWNER))
        _make_readable(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _make_readable(root: str) -> None:
    """Folders 0755 and files 0644 (what TensorFlow itself writes under a usual umask)."""
    os.chmod(root, 0o755)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        pass
    return True


def _remove_stale_temporaries(export_dir: str) -> None:
    """Remove `.tmp-*` folders of earlier exports on this host whose process has died."""
    host = socket.gethostname()
    for name in os.listdir(export_dir):
        path = os.path.join(export_dir, name)
        owner = os.path.join(path, OWNER)
        if not (name.startswith(".tmp-") and os.path.isfile(owner)):
            continue  # not ours: leave it alone
        try:
            with open(owner) as f:
                note = json.load(f)
        except (OSError, ValueError):
            continue
        if note.get("host") == host and not _process_alive(int(note.get("pid", -1))):
            shutil.rmtree(path, ignore_errors=True)


def _versions() -> dict:
    import keras_seqrec

    out = {"keras_seqrec": keras_seqrec.__version__, "keras": keras.__version__}
    try:
        tf = import_tensorflow()

        out["tensorflow"] = tf.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def latest_version(path: PathLike) -> str:
    """`path` itself if it is a SavedModel, else its highest numeric version folder."""
    path = os.fspath(path)
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    version = _next_version(path) - 1
    if version < 1:
        raise FileNotFoundError(f"No SavedModel or version folder under {path!r}.")
    return os.path.join(path, str(version))


class Recommender:
    """Answer `recommend(histories, k)` with raw ids and scores from an exported SavedModel.

    A SavedModel is a program, not data: loading one runs its graph, which can read and write
    files. Load only models you exported yourself or got from a source you trust.

    Args:
        path: a version folder, or a model folder (its latest version is used).

    Example:

    >>> rec = Recommender("saved_models/gru_attention")  # doctest: +SKIP
    >>> ids, scores = rec.recommend([["1", "50", "33"]], k=5)[0]  # doctest: +SKIP
    """

    def __init__(self, path: PathLike):
        tf = import_tensorflow()

        self.path = latest_version(path)
        self._loaded = tf.saved_model.load(self.path)
        self._serve = self._loaded.signatures["serving_default"]
        extra = os.path.join(self.path, "assets.extra")
        with open(os.path.join(extra, CARD), encoding="utf-8") as f:
            self.model_card = json.load(f)
        self.top_k = self.model_card["serving"]["top_k"]
        titles = os.path.join(extra, TITLES)
        self.titles = {}
        if os.path.exists(titles):
            with open(titles, encoding="utf-8") as f:
                self.titles = json.load(f)

    def _request(self, signature, histories: Sequence[Sequence], k: Optional[int]):
        """Check `k`, pad the histories into one string tensor, call `signature`."""
        tf = import_tensorflow()

        k = self.top_k if k is None else k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.top_k:
            raise ValueError(f"`k` must be an integer in 1..{self.top_k} (this export's top_k); "
                             f"got {k!r}.")
        if isinstance(histories, (str, bytes)):
            raise TypeError("`histories` must be a list of histories (lists of ids), not a string.")
        rows = [[str(x) for x in h] for h in histories]
        if not rows:
            return k, rows, None
        width = max([len(r) for r in rows] + [1])
        padded = np.array([r + [""] * (width - len(r)) for r in rows], dtype=object)
        return k, rows, signature(history=tf.constant(padded, dtype=tf.string))

    @staticmethod
    def _top(out, i: int, k: int):
        counts = out["num_results"].numpy() if "num_results" in out else None
        n = k if counts is None else min(int(counts[i]), k)
        ids = out["item_ids"].numpy()[i, :n]
        return (np.array([x.decode("utf-8") for x in ids], dtype=str),
                out["scores"].numpy()[i, :n])

    def recommend(self, histories: Sequence[Sequence], k: Optional[int] = None):
        """For each history (raw ids, oldest first) the top-k `(item_ids, scores)` arrays.

        A row is shorter than `k` when fewer than `k` unseen items remain; it never holds
        padding or an item of the history.
        """
        k, rows, out = self._request(self._serve, histories, k)
        return [self._top(out, i, k) for i in range(len(rows))]

    def explain(self, histories: Sequence[Sequence], k: Optional[int] = None):
        """For each history the top-k `(item_ids, scores, weights)`, `weights` holding one
        float per history item, in the history's order: how much it made the model recommend
        its first item (the export's `explain` signature).

        For `gru_attention` the weights are the attention at the last position (they sum to
        1 over the items the model reads); for the other models, the drop in the first
        item's score when that history item is left out. Ids the model does not know and
        items older than its `max_len` window get 0.

        Raises:
            ValueError: the SavedModel was exported before explanations existed.
        """
        signatures = self._loaded.signatures
        if "explain" not in signatures:
            raise ValueError(f"{self.path} has no `explain` signature (exported by an older "
                             "keras-seqrec); export the model again.")
        k, rows, out = self._request(signatures["explain"], histories, k)
        weights = out["weights"].numpy() if rows else None
        return [self._top(out, i, k) + (weights[i, :len(row)],) for i, row in enumerate(rows)]

    def describe(self) -> str:
        """The model card as indented JSON."""
        return json.dumps(self.model_card, indent=2)
