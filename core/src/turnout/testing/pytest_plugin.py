"""pytest fixtures over :mod:`turnout.testing` (none is autouse).

Import them into a ``conftest.py``::

    from turnout.testing.pytest_plugin import *  # noqa: F403

Each fixture is a factory; whatever it started is stopped (by PID) when the test ends,
whether it passed or failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .backend import RecordingBackend
from .fs import DiscoDir
from .nginx import NginxBackend
from .process import NamerdProcess, TurnoutProcess

__all__ = ["disco_dir", "namerd_process", "nginx_backend", "recording_backend", "turnout_process"]

TurnoutFactory = Callable[..., TurnoutProcess]
NginxFactory = Callable[..., NginxBackend]
BackendFactory = Callable[..., RecordingBackend]


@pytest.fixture
def turnout_process(tmp_path: Path) -> Iterator[TurnoutFactory]:
    """``turnout_process(yaml_text, *, start=True, cwd=None, env=None, args=(),
    timeout=20)``: a :class:`TurnoutProcess` in its own directory under ``tmp_path``,
    started (and ready) unless ``start=False``. Killed at teardown; its log is printed
    when the test failed (pytest shows captured output)."""
    started: list[TurnoutProcess] = []

    def factory(config: str, *, start: bool = True, timeout: float = 20.0, **kw: Any) -> Any:
        workdir = tmp_path / f"turnout-{len(started)}"
        proc = TurnoutProcess(config, workdir=workdir, **kw)
        started.append(proc)
        if start:
            proc.start(timeout)
        return proc

    yield factory
    for proc in started:
        proc.kill()
        log = proc.log()
        if log:
            print(f"--- turnout log ({proc.workdir}) ---\n{log}")


@pytest.fixture
def namerd_process(tmp_path: Path) -> Iterator[Callable[..., NamerdProcess]]:
    """``namerd_process(yaml_text, *ports, env=None)``: a started :class:`NamerdProcess`
    (ready when every one of ``ports`` accepts) in its own directory under ``tmp_path``.
    Killed at teardown; its log is printed (pytest shows it when the test failed)."""
    started: list[NamerdProcess] = []

    def factory(config: str, *ports: int, env: dict[str, str] | None = None) -> NamerdProcess:
        proc = NamerdProcess(config, tmp_path / f"namerd-{len(started)}", ports, env)
        started.append(proc)
        return proc.start()

    yield factory
    for proc in started:
        proc.kill()
        print(f"--- namerd log ({proc.workdir}) ---\n{proc.log()}")


@pytest.fixture
def nginx_backend(tmp_path: Path) -> Iterator[NginxFactory]:
    """``nginx_backend(name, port=None, *, locations=(), http_extra="", access_log=False)``:
    a started :class:`NginxBackend` answering ``"<name> <uri>\\n"``; stopped at teardown."""
    started: list[NginxBackend] = []

    def factory(name: str, port: int | None = None, **kw: Any) -> NginxBackend:
        workdir = tmp_path / f"nginx-{name}-{len(started)}"
        backend = NginxBackend(name, port, workdir=workdir, **kw)
        started.append(backend)
        return backend.start()

    yield factory
    for backend in started:
        backend.stop()


@pytest.fixture
def recording_backend() -> Iterator[BackendFactory]:
    """``recording_backend(response=None, *, name="backend", delay=0, respond_after="body",
    record_limit=1 MiB)``: a started :class:`RecordingBackend`; stopped at teardown."""
    started: list[RecordingBackend] = []

    def factory(response: Any = None, **kw: Any) -> RecordingBackend:
        backend = RecordingBackend(response, **kw)
        started.append(backend)
        return backend.start()

    yield factory
    for backend in started:
        backend.stop()


@pytest.fixture
def disco_dir(tmp_path: Path) -> DiscoDir:
    """An empty :class:`DiscoDir` (``io.l5d.fs`` rootDir) under ``tmp_path``."""
    return DiscoDir(tmp_path / "disco")
