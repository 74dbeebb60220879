"""Fixtures of the k8s namer's tests: the Kubernetes API double (``kube``), turnout processes
and recording backends (from :mod:`turnout.testing.pytest_plugin`).

Also lets these tests run from a checkout where this plugin was not ``pip install``-ed; after
``pip install -e .`` the path insertion does nothing."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("turnout_namer_k8s") is None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_namer_k8s.testing import KubeApiDouble


@pytest.fixture
def kube() -> Iterator[KubeApiDouble]:
    """A started Kubernetes API double on 127.0.0.1 (its own thread); closed at teardown."""
    double = KubeApiDouble().start()
    try:
        yield double
    finally:
        double.close()
        assert not double.errors, double.errors
