"""Fixtures of the dnssrv namer's tests: a real BIND 9 (``bind_server``) and turnout's own
process and backend fixtures."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("turnout_namer_dnssrv") is None:  # a checkout without pip install
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_namer_dnssrv.testing import BindServer

BindFactory = Callable[..., BindServer]


@pytest.fixture
def bind_server(tmp_path: Path) -> Iterator[BindFactory]:
    """``bind_server(port=None, *, records=(), minimal_responses=False, start=True)``: a
    :class:`BindServer` for zone ``svc.test`` in its own directory under ``tmp_path``,
    started (and answering) unless ``start=False``. Stopped by PID at teardown; its log is
    printed when the test failed."""
    started: list[BindServer] = []

    def factory(port: int | None = None, *, start: bool = True, **kw: Any) -> BindServer:
        server = BindServer(port, workdir=tmp_path / f"bind-{len(started)}", **kw)
        started.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in started:
        server.kill()
        log = server.log()
        if log:
            print(f"--- named log ({server.dir}) ---\n{log[-4000:]}")
