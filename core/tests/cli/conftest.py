"""Fixtures for CLI tests: run ``python -m turnout`` in a subprocess, with plugin autoload off
and the fake ``http`` protocol plugin (``core/tests/plugins/turnout_fake_http.py``) loaded
through ``TURNOUT_PLUGIN_MODULES``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FAKE_PLUGIN_DIR = Path(__file__).parents[1] / "plugins"

Run = Callable[..., subprocess.CompletedProcess[str]]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    env.update(
        TURNOUT_DISABLE_PLUGIN_AUTOLOAD="1",
        TURNOUT_PLUGIN_MODULES="turnout_fake_http",
        PYTHONPATH=str(FAKE_PLUGIN_DIR),
        PYTHONWARNINGS="error",
    )
    env.update(extra)
    return env


@pytest.fixture
def turnout(tmp_path: Path) -> Run:
    """``turnout(*args, stdin=None, **env)``: the completed process (text mode), run in
    ``tmp_path``."""

    def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "turnout", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=cli_env(**env),
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    return run
