"""A quiet import of the deep-learning backend.

TensorFlow's native libraries write start-up lines straight to file descriptor 2 before their
logging is configured ("All log messages before absl::InitializeLog() ...", "Could not find cuda
drivers ...", CPU-feature notes). `TF_CPP_MIN_LOG_LEVEL` cannot silence them, because they are
written before that variable is read. `quiet_native_startup` captures descriptor 2 while the
backend loads, drops only those known start-up lines, and writes everything else (real warnings,
Python warnings, errors) back to `sys.stderr`, so nothing the user needs is lost.

Set `KERAS_SEQREC_VERBOSE_STARTUP=1` (or `TF_CPP_MIN_LOG_LEVEL=0`) to see every line.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

# Lines that TensorFlow and XLA print on every start-up and that say nothing actionable.
STARTUP_CHATTER = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:. ]+\d+ (cudart_stub|cpu_feature_guard|port|cuda_executor|cuda_dnn"
    r"|cuda_fft|cuda_blas|cuda_diagnostics|cuda_platform|computation_placer)\.cc:\d+\].*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate "
    r"compiler flags\."
    r"|oneDNN custom operations are on\..*"
    # Printed once per process, at the first oneDNN op on a bool tensor (the transpose of the
    # mask in every masked recurrent layer); the op then runs in Eigen, as it would anyway.
    r"|E\d{4} [\d:. ]+\d+ util\.cc:\d+\] oneDNN supports DT_BOOL only on platforms with "
    r"AVX-512\..*)$"
)
# "failed call to cuInit" is news on a machine with an NVIDIA driver, noise on one without.
NO_GPU_CHATTER = re.compile(r"^E\d{4} [\d:. ]+\d+ cuda_platform\.cc:\d+\] failed call to cuInit.*$")


def _has_nvidia_driver() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")


def verbose_startup() -> bool:
    """Whether the user asked to see the backend's start-up lines."""
    return (os.environ.get("KERAS_SEQREC_VERBOSE_STARTUP", "") not in ("", "0")
            or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0")


def filter_startup_lines(text: str) -> str:
    """`text` without the known start-up chatter lines (everything else kept, in order)."""
    patterns = [STARTUP_CHATTER] if _has_nvidia_driver() else [STARTUP_CHATTER, NO_GPU_CHATTER]
    kept = [line for line in text.splitlines(keepends=True)
            if not any(p.match(line.rstrip("\r\n")) for p in patterns)]
    return "".join(kept)


@contextlib.contextmanager
def quiet_native_startup() -> Iterator[None]:
    """Capture descriptor 2 inside the block; re-emit what is not start-up chatter afterwards.

    Example:
        >>> from keras_seqrec._startup import quiet_native_startup
        >>> with quiet_native_startup():
        ...     import json  # anything whose native start-up lines should be dropped
    """
    if verbose_startup():
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no usable descriptor 2 (some embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = filter_startup_lines(capture.read().decode("utf-8", errors="replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


def import_tensorflow():
    """`import tensorflow`, without its start-up chatter (a no-op once TensorFlow is loaded).

    The models need only Keras; TensorFlow is imported where SavedModel export or `tf.data`
    needs it, so a JAX or PyTorch user does not pay for it until then.
    """
    if "tensorflow" in sys.modules and _DEVICES_LISTED:
        return sys.modules["tensorflow"]
    with quiet_native_startup():
        import tensorflow

        _list_devices(tensorflow)
    return tensorflow


_DEVICES_LISTED = False


def _list_devices(tf) -> None:
    # The first device query initialises CUDA and prints its verdict, and the first oneDNN op
    # on a bool tensor prints a one-time notice on some CPUs; do both while captured.
    global _DEVICES_LISTED
    if not _DEVICES_LISTED:
        tf.config.list_physical_devices()
        tf.transpose(tf.zeros((1, 1), tf.bool))
        _DEVICES_LISTED = True


def import_keras():
    """`import keras` (and its backend) without start-up chatter; returns the keras module."""
    with quiet_native_startup():
        import keras

        if keras.backend.backend() == "tensorflow":
            _list_devices(sys.modules["tensorflow"])
    return keras
