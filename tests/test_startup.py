"""Quiet start: no backend start-up chatter on import or on the CLI, real warnings still shown."""

import os
import re
import subprocess
import sys

from keras_seqrec._startup import filter_startup_lines

CHATTER = re.compile(r"absl::InitializeLog|^[IWE]\d{4} \d\d:\d\d:|rebuild TensorFlow|oneDNN", re.M)


def _run(code_or_args, **env):
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_SEQREC_VERBOSE_STARTUP")}
    environ.update(env)
    return subprocess.run([sys.executable, *args], env=environ, capture_output=True, text=True,
                          timeout=300)


def test_import_and_cli_help_print_no_start_up_lines():
    result = _run(["-m", "keras_seqrec.cli", "--help"])
    assert result.returncode == 0 and "usage: keras-seqrec" in result.stdout, result.stderr
    assert not CHATTER.search(result.stderr), result.stderr
    # Tensorflow in use after the import: still nothing from CUDA's first device query.
    result = _run("import keras_seqrec, tensorflow as tf; print(float(tf.constant(1.0) + 1))")
    assert result.stdout.strip() == "2.0"
    assert not CHATTER.search(result.stderr), result.stderr
    # A masked GRU transposes its bool mask: oneDNN's one-time DT_BOOL notice stays silent too.
    result = _run("import numpy as np, keras_seqrec as ks; m = ks.build_model('gru', 9, 4); "
                  "print(m.predict(np.array([[0, 1, 2, 3]]), verbose=0).shape)")
    assert result.stdout.strip() == "(1, 4, 10)", result.stderr
    assert not CHATTER.search(result.stderr), result.stderr


SCRIPT = r"""
import os, warnings
from keras_seqrec._startup import quiet_native_startup
with quiet_native_startup():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                b"written to STDERR\n")
    os.write(2, b"I0000 00:00:1796160408.300188   12613 cudart_stub.cc:31] Could not find "
                b"cuda drivers\n")
    os.write(2, b"a real native warning\n")
    warnings.warn("a python warning")
print("done")
"""


def test_only_known_start_up_lines_are_dropped_and_the_rest_reach_stderr():
    result = _run(SCRIPT)
    assert result.stdout.strip() == "done"
    assert "a real native warning" in result.stderr
    assert "a python warning" in result.stderr
    assert "cudart_stub" not in result.stderr and "InitializeLog" not in result.stderr
    verbose = _run(SCRIPT, KERAS_SEQREC_VERBOSE_STARTUP="1")
    assert "cudart_stub" in verbose.stderr and "a real native warning" in verbose.stderr


def test_filter_keeps_order_and_unknown_lines():
    text = ("I0000 00:00:1.5 7 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
            "first\n"
            "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
            "TensorFlow with the appropriate compiler flags.\n"
            "E0000 00:00:1.5 7 util.cc:131] oneDNN supports DT_BOOL only on platforms with "
            "AVX-512. Falling back to the default Eigen-based implementation if present.\n"
            "E0000 00:00:1.5 7 some_other.cc:1] an error worth seeing\n"
            "second\n")
    assert filter_startup_lines(text) == (
        "first\nE0000 00:00:1.5 7 some_other.cc:1] an error worth seeing\nsecond\n")
