"""Fixtures of the statsd telemeter's tests: a real UDP listener on 127.0.0.1 and turnout's
process and backend fixtures."""

from __future__ import annotations

import importlib.util
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("turnout_telemeter_statsd") is None:  # checkout, no pip install
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from turnout.testing.pytest_plugin import *  # noqa: F403


class StatsdListener:
    """A UDP socket on 127.0.0.1 that keeps every datagram it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.datagrams: list[bytes] = []

    def receive(self, timeout: float = 0.05) -> None:
        """Read what arrived (waiting up to ``timeout`` for the first datagram)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self.datagrams.append(self.sock.recv(65535))
                self.sock.settimeout(0.001)
        except (TimeoutError, BlockingIOError):
            pass

    def lines(self) -> list[str]:
        return [line for d in self.datagrams for line in d.decode().split("\n")]

    def total(self, name: str, kind: str = "c") -> float:
        """Sum of the values sent for ``name`` with type ``kind``."""
        out = 0.0
        for line in self.lines():
            metric, _, rest = line.partition(":")
            value, _, typ = rest.partition("|")
            if metric == name and typ == kind:
                out += float(value)
        return out

    def last(self, name: str, kind: str = "g") -> float | None:
        """The last value sent for ``name``."""
        out = None
        for line in self.lines():
            metric, _, rest = line.partition(":")
            value, _, typ = rest.partition("|")
            if metric == name and typ == kind:
                out = float(value)
        return out

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.receive()
            if predicate():
                return True
            if time.monotonic() > deadline:
                return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.close()
