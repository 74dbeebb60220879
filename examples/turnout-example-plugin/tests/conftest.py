"""Lets these tests run from a checkout where this plugin was not ``pip install``-ed (as in
turnout's own test run); after ``pip install -e .`` this does nothing."""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("turnout_example_plugin") is None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))
