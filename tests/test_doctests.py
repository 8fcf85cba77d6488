"""Every runnable example in the library's docstrings runs and says what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import cas

MODULES = sorted(m.name for m in pkgutil.iter_modules(cas.__path__, "cas."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_pure_modules_have_examples() -> None:
    """STYLE.md: pure helpers carry a runnable example."""
    for name in ("cas.digest", "cas.names", "cas.layout", "cas.tree", "cas.retry", "cas.formats",
                 "cas.units", "cas.policy"):
        assert doctest.DocTestFinder().find(importlib.import_module(name)), name
