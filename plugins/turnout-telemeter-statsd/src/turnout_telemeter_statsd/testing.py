"""A statsd server double for tests: a UDP socket on 127.0.0.1 that keeps every datagram it
receives and reads the statsd line protocol (``name:value|type``) back. It ships with the
io.l5d.statsd telemeter (``from turnout_telemeter_statsd.testing import StatsdListener``), so
that users of the plugin can check what their configuration pushes.

::

    with StatsdListener() as statsd:       # {kind: io.l5d.statsd, port: <statsd.port>, ...}
        ...                                # send traffic through turnout
        client = "rt.http.client._.io_l5d_fs.web"
        assert statsd.wait_for(lambda: statsd.total(f"{client}.requests") == 6)
        assert statsd.last(f"{client}.loadbalancer.size") == 1
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Self

__all__ = ["StatsdListener"]


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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
