"""Fixtures of the h2 plugin's tests. Helpers live in helpers/ (importable from every test
module): the `h2` package as the raw peer of a codec session (turnout_h2_testpeer), a raw
HTTP/2 client on a socket (turnout_h2_rawclient), real grpcio servers and clients
(turnout_h2_grpc)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))

from turnout.testing import TurnoutProcess, free_port
from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_h2_grpc import GrpcBackend
from turnout_h2_proxy import h2_config
from turnout_h2_testpeer import ServerPair


@pytest.fixture
def pair() -> ServerPair:
    return ServerPair()


@pytest.fixture
def grpc_backend() -> Iterator[Callable[..., GrpcBackend]]:
    started: list[GrpcBackend] = []

    def factory(name: str = "backend", **kw: Any) -> GrpcBackend:
        backend = GrpcBackend(name, **kw).start()
        started.append(backend)
        return backend

    yield factory
    for backend in started:
        backend.stop()


@pytest.fixture
def h2_proxy(turnout_process: Any) -> Callable[..., TurnoutProcess]:
    """``h2_proxy(dtab, env=None, **router options)``: a started turnout with one h2
    router (``server={...}``: options of its server; ``telemetry=[...]``)."""

    def start(dtab: str, env: dict[str, str] | None = None, **router: Any) -> TurnoutProcess:
        proc: TurnoutProcess = turnout_process(
            h2_config(dtab, free_port(), free_port(), **router), env=env
        )
        return proc

    return start
