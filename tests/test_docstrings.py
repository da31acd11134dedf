"""Every `Example:` block in the package's docstrings runs and prints what it claims."""

import doctest
import importlib
import pkgutil

import pytest

import keras_seqrec

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(keras_seqrec.__path__, prefix="keras_seqrec.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
