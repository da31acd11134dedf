"""Shared fixtures: paths of the real datasets beside the project, skipped when absent."""

import os
import pathlib

import pytest

# Tests import keras (and so TensorFlow) before keras_seqrec sets this.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> pathlib.Path:
    """Path under ../shared/data, or skip the test when the file is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture(scope="session")
def ml_small():
    from keras_seqrec import datasets

    return datasets.load("ml-latest-small")


@pytest.fixture(scope="session")
def ml_small_data(ml_small):
    from keras_seqrec import prepare

    return prepare(ml_small, max_len=50, min_rating=3, min_item_interactions=5)


@pytest.fixture
def bench_run(tmp_path, monkeypatch):
    """A fresh copy of benchmarks/run.py whose results, tables and README live in tmp_path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_run", pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("RESULTS", "HERE", "ROOT"):
        monkeypatch.setattr(module, name, str(tmp_path))
    return module
