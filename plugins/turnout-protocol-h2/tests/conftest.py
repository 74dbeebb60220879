"""Fixtures of the codec tests. Helpers (the `h2` package as the peer of a codec session)
live in helpers/turnout_h2_testpeer.py, importable from every test module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))

from turnout_h2_testpeer import ServerPair


@pytest.fixture
def pair() -> ServerPair:
    return ServerPair()
