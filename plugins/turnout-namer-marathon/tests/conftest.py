"""Fixtures of the io.l5d.marathon tests: the Marathon API double (``marathon_double``),
turnout's process and backend fixtures for the end-to-end test, and the real-ZooKeeper
fixtures of ``turnout-namer-zk`` (``zookeeper``, ``kazoo_factory``...) for ``dst`` names that
find the Marathon leader in ZooKeeper."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("turnout_namer_marathon") is None:  # a checkout not pip-installed
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))
# marathon_test_helpers (run, eventually...) is imported by the test modules
sys.path.insert(0, str(Path(__file__).parent))

from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_namer_marathon.testing import MarathonDouble
from turnout_namer_zk.fixtures import *  # noqa: F403

DoubleFactory = Callable[..., MarathonDouble]


@pytest.fixture
def marathon_double() -> Iterator[DoubleFactory]:
    """``marathon_double(start=True, **MarathonDouble options)``: a Marathon API double on
    127.0.0.1, started unless ``start=False``; closed (its thread ended) at teardown."""
    made: list[MarathonDouble] = []

    def factory(*, start: bool = True, **kw: Any) -> MarathonDouble:
        double = MarathonDouble(**kw)
        made.append(double)
        return double.start() if start else double

    yield factory
    for double in made:
        double.close()
