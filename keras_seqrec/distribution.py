"""Training on several devices: Keras' own distribution API (JAX backend), or TensorFlow's
`tf.distribute.MirroredStrategy` (TensorFlow backend).

`keras.distribution` and `tf.distribute` do the work; this module only says how the zoo's
weights are laid out:

- `data_parallel()`: every device holds all the weights and a slice of each batch.
- `model_parallel(model_devices)`: a `(batch, model)` device mesh; the item tables (the
  item embedding, which is also the tied output, its feature token tables, and an untied
  output layer) are split over the `model` axis along their vector width, so each device holds
  `1 / model_devices` of every item's vector and the largest weights no longer have to fit on
  one device; everything else is replicated, and batches are split over the `batch` axis.
  The width is split rather than the item rows because a catalogue of `num_items + 1` rows is
  rarely divisible by the number of devices, which row sharding requires.
- `mirrored()` (TensorFlow backend): `tf.distribute.MirroredStrategy`, every device holds all
  the weights and a slice of each batch, as `data_parallel()` on JAX; Keras' `fit`
  distributes the batches and sums the gradients across replicas.

Build and train inside the distribution's scope (`build_and_fit(..., distribution=...)` and
`keras-seqrec train --distribution` do):

    with ks.distribution.model_parallel(2).scope():
        model = ks.build_model("sasrec", data.num_items, data.max_len)
        ks.fit_recommender(model, data)

On a CPU, `XLA_FLAGS=--xla_force_host_platform_device_count=4` (set before JAX starts) gives
four virtual devices to try it on; validation, early stopping, checkpoints and `.keras`
saving work unchanged.

Several processes (hosts): every process calls `initialize(...)` first, then runs the same
program with the same data and seed; the distribution spans the devices of all of them,
`fit_recommender` feeds each process its share of every batch (`ShardedBatches`), and Keras
sums the gradients across processes:

    ks.distribution.initialize("host0:1234,host1:1234", num_processes=2, process_id=0)
    model, history = ks.training.build_and_fit("sasrec", data, distribution="data")
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import keras

# Variable paths (regular expressions, as LayoutMap matches them) of the item-sized tables,
# and the axis that holds the vector width in each.
ITEM_TABLES = {
    "item_embedding/embeddings": (None, "model"),
    "item_embedding/.*_embeddings": (None, "model"),  # feature token tables
    "item_scores/dense/kernel": ("model", None),
}


def initialize(job_addresses: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> None:
    """Join a run of several processes (JAX backend), before any other JAX work.

    Arguments default to the environment variables `KERAS_DISTRIBUTION_JOB_ADDRESSES`
    (comma-separated `host:port`, the first one coordinates), `KERAS_DISTRIBUTION_NUM_PROCESSES`
    and `KERAS_DISTRIBUTION_PROCESS_ID`, as `keras.distribution.initialize` reads them. CPU
    devices exchange gradients through Gloo, so it runs without GPUs too.
    """
    if keras.backend.backend() != "jax":
        raise ValueError(
            f"Several processes train through keras.distribution on the JAX backend; this "
            f"process runs {keras.backend.backend()!r}. Start it with KERAS_BACKEND=jax.")
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(job_addresses, num_processes, process_id)


def batch_split() -> Optional[tuple[int, int, int]]:
    """`(batch shards, this process's index, number of processes)` of the active
    `keras.distribution` (JAX), or None without one: how `fit_recommender` pads and splits
    every batch (`ShardedBatches`)."""
    if keras.backend.backend() != "jax":
        return None
    active = keras.distribution.distribution()
    if active is None:
        return None
    import jax

    mesh = active.device_mesh
    shards = mesh.shape[mesh.axis_names.index(active.batch_dim_name)]
    return int(shards), jax.process_index(), jax.process_count()


def _devices(devices: Optional[Sequence]) -> list:
    if keras.backend.backend() != "jax":
        raise ValueError(
            f"keras.distribution trains on the JAX backend; this process runs "
            f"{keras.backend.backend()!r}. Start it with KERAS_BACKEND=jax.")
    found = list(devices) if devices is not None else keras.distribution.list_devices()
    if not found:
        raise ValueError("No devices to distribute over.")
    return found


def data_parallel(devices: Optional[Sequence] = None) -> keras.distribution.DataParallel:
    """Every device holds all the weights and computes a slice of each batch.

    Example (on the JAX backend):

    >>> import keras_seqrec as ks
    >>> with data_parallel().scope():  # doctest: +SKIP
    ...     model = ks.build_model("gru", num_items=100, max_len=20)
    """
    # The zoo's batches are padded and split over processes by `ShardedBatches`, not Keras.
    return keras.distribution.DataParallel(devices=_devices(devices), auto_shard_dataset=False)


def model_parallel(model_devices: int = 2, devices: Optional[Sequence] = None
                   ) -> keras.distribution.ModelParallel:
    """The item tables split over `model_devices` devices along their width, batches over the
    rest (`len(devices) / model_devices` of them).

    Raises:
        ValueError: the device count is not a multiple of `model_devices`.
    """
    found = _devices(devices)
    if model_devices < 1 or len(found) % model_devices:
        raise ValueError(f"`model_devices` ({model_devices}) must divide the number of "
                         f"devices ({len(found)}).")
    mesh = keras.distribution.DeviceMesh((len(found) // model_devices, model_devices),
                                         ["batch", "model"], devices=found)
    layout = keras.distribution.LayoutMap(mesh)
    for path, axes in ITEM_TABLES.items():
        layout[path] = axes
    return keras.distribution.ModelParallel(layout_map=layout, batch_dim_name="batch",
                                            auto_shard_dataset=False)


def mirrored(devices: Optional[Sequence[str]] = None):
    """`tf.distribute.MirroredStrategy` over `devices` (default: every GPU, else the CPU), for
    the TensorFlow backend. Logical CPU devices set up before TensorFlow starts
    (`tf.config.set_logical_device_configuration`) let it run on a CPU.

    Raises:
        ValueError: the backend is not TensorFlow.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"MirroredStrategy is TensorFlow's; this process runs "
            f"{keras.backend.backend()!r}. Use 'data' (keras.distribution) on JAX, or start "
            "it with KERAS_BACKEND=tensorflow.")
    import tensorflow as tf

    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=list(devices))


def get(spec: Union[None, str, "keras.distribution.DataParallel",
                    "keras.distribution.ModelParallel"]):
    """A distribution from `None`, `"data"`, `"model"`, `"model:N"` (N model devices),
    `"mirrored"` (TensorFlow), or a Keras distribution or `tf.distribute` strategy object.

    Example:

    >>> get(None) is None  # one device, as without a distribution
    True
    """
    if spec is None or (not isinstance(spec, str) and hasattr(spec, "scope")):
        return spec
    name, _, count = str(spec).partition(":")
    if name == "data" and not count:
        return data_parallel()
    if name == "mirrored" and not count:
        return mirrored()
    if name == "model":
        try:
            return model_parallel(int(count) if count else 2)
        except ValueError as error:
            if "must divide" in str(error) or "JAX" in str(error):
                raise
            raise ValueError(f"Cannot read {spec!r}: 'model:N' takes a number.") from None
    raise ValueError(f"A distribution is 'data', 'model', 'model:N' or 'mirrored'; got "
                     f"{spec!r}.")


def shard_shapes(variable) -> list[tuple]:
    """The shape of each device's piece of a variable (one full shape when not split)."""
    value = variable.value
    shards = getattr(value, "addressable_shards", None)
    if not shards:
        return [tuple(value.shape)]
    return [tuple(s.data.shape) for s in shards]
