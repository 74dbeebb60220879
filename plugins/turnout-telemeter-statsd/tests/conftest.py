"""Fixtures of the statsd telemeter's tests: a real UDP listener on 127.0.0.1
(:class:`turnout_telemeter_statsd.testing.StatsdListener`) and turnout's process and backend
fixtures."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("turnout_telemeter_statsd") is None:  # checkout, no pip install
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_telemeter_statsd.testing import StatsdListener


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.close()
