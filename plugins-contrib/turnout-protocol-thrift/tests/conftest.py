"""Fixtures of the thrift router's tests: real thriftpy2 servers and clients, and a real
turnout process with one ``protocol: thrift`` router over an ``io.l5d.fs`` directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from thriftpy2.rpc import make_client
from turnout.testing import DiscoDir, TurnoutProcess
from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_protocol_thrift.testing import Backend, demo, factories, thrift_config


@pytest.fixture
def thrift_backend() -> Iterator[Callable[..., Backend]]:
    started: list[Backend] = []

    def factory(name: str = "backend", framed: bool = True, compact: bool = False) -> Backend:
        backend = Backend(name, framed, compact)
        started.append(backend)
        return backend

    yield factory
    for backend in started:
        backend.stop()


@pytest.fixture
def thrift_client() -> Iterator[Callable[..., Any]]:
    opened: list[Any] = []

    def factory(port: int, framed: bool = True, compact: bool = False, timeout: int = 20000) -> Any:
        client = make_client(
            demo.Demo, "127.0.0.1", port, timeout=timeout, **factories(framed, compact)
        )
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.close()


@pytest.fixture
def thrift_proxy(turnout_process: Any, disco_dir: DiscoDir) -> Callable[..., TurnoutProcess]:
    def start(**kw: Any) -> TurnoutProcess:
        proc: TurnoutProcess = turnout_process(thrift_config(disco_dir, **kw))
        return proc

    return start
