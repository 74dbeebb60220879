"""Fixtures of the InfluxDB telemeter's tests: turnout's process and backend fixtures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("turnout_telemeter_influxdb") is None:  # checkout, no pip install
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from turnout.testing.pytest_plugin import *  # noqa: F403
