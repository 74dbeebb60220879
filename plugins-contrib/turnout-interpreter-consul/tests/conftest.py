"""Fixtures of the io.l5d.consul.interpreter tests: turnout-namer-consul's Consul API double
(in a background thread) and turnout's own fixtures (``turnout_process``,
``recording_backend``)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("turnout_interpreter_consul") is None:  # checkout, no install
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_namer_consul.testing import ConsulDouble


@pytest.fixture
def consul_double() -> Iterator[Callable[..., ConsulDouble]]:
    """``consul_double(**ConsulServer options)``: a started :class:`ConsulDouble`; closed at
    teardown."""
    started: list[ConsulDouble] = []

    def factory(**kw: Any) -> ConsulDouble:
        double = ConsulDouble(**kw)
        started.append(double)
        return double.start()

    yield factory
    for double in started:
        double.close()
