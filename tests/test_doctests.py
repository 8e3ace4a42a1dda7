"""The examples in the docstrings run (they are the API's first documentation)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "latentflow.components",
    "latentflow.flows",
    "latentflow.flows.hidden",
    "latentflow.flows.transforms",
    "latentflow.lightning.anneal",
    "latentflow.models.recurrent",
    "latentflow.recipes",
    "latentflow.plotting.nlsq",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
