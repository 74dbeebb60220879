"""Fixtures of the io.l5d.ingress tests: the Kubernetes API double of the first-party
k8s plugin (``kube``) and turnout's own (``turnout_process``, ``recording_backend``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
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
