"""Test helpers of the thrift router (for its tests and benchmark; needs ``thriftpy2``, a test
dependency): the ``Demo`` service, a threaded thriftpy2 backend, transport/protocol factories
and the YAML of a turnout with one thrift router."""

# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import contextlib
import io
import threading
import time
from typing import Any

import thriftpy2
import yaml
from thriftpy2.protocol import (
    TBinaryProtocolFactory,
    TCompactProtocolFactory,
)
from thriftpy2.rpc import make_server
from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import (
    TBufferedTransportFactory,
    TFramedTransportFactory,
)
from turnout.testing import DiscoDir, free_port

IDL = """
service Demo {
  string echo(1: string msg),
  string other(1: string msg),
  string boom(1: string msg),
  string slow(1: string msg),
  oneway void fire(1: string msg)
}
"""
demo = thriftpy2.load_fp(io.StringIO(IDL), module_name="demo_thrift")


def factories(framed: bool = True, compact: bool = False) -> dict[str, Any]:
    return {
        "proto_factory": TCompactProtocolFactory() if compact else TBinaryProtocolFactory(),
        "trans_factory": TFramedTransportFactory() if framed else TBufferedTransportFactory(),
    }


class Backend:
    """A thriftpy2 threaded server of ``Demo`` on 127.0.0.1: ``echo`` answers
    ``<name>:<msg>``, ``other`` ``<name>-other:<msg>``, ``boom`` raises a
    TApplicationException (an EXCEPTION reply), ``fire`` (oneway) records."""

    def __init__(self, name: str, framed: bool = True, compact: bool = False) -> None:
        self.name = name
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        backend = self

        class Handler:
            def echo(self, msg: str) -> str:
                backend.record("echo", msg)
                return f"{name}:{msg}"

            def other(self, msg: str) -> str:
                backend.record("other", msg)
                return f"{name}-other:{msg}"

            def boom(self, msg: str) -> str:
                backend.record("boom", msg)
                raise TApplicationException(TApplicationException.INTERNAL_ERROR, "boom " + msg)

            def slow(self, msg: str) -> str:
                backend.record("slow", msg)
                time.sleep(float(msg))
                return f"{name}:slept"

            def fire(self, msg: str) -> None:
                backend.record("fire", msg)

        self.port = free_port()
        self.server = make_server(
            demo.Demo,
            Handler(),
            "127.0.0.1",
            self.port,
            client_timeout=60000,
            **factories(framed, compact),
        )
        self.server.daemon = True
        self.closed = False
        #: client connections open now
        self.open_connections = 0
        self.server.trans.listen()
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        """thriftpy2's TThreadedServer.serve, ending quietly when the socket is closed."""
        while not self.closed:
            try:
                client = self.server.trans.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: Any) -> None:
        with self.lock:
            self.open_connections += 1
        try:
            self.server.handle(client)
        finally:
            with self.lock:
                self.open_connections -= 1

    def record(self, method: str, msg: str) -> None:
        with self.lock:
            self.calls.append((method, msg))

    def count(self, method: str | None = None) -> int:
        with self.lock:
            return len([c for c in self.calls if method is None or c[0] == method])

    def stop(self) -> None:
        self.closed = True
        self.server.close()
        with contextlib.suppress(OSError):
            self.server.trans.close()


def thrift_config(
    disco: DiscoDir,
    *,
    router: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    telemetry: list[Any] | None = None,
) -> str:
    config: dict[str, Any] = {
        "admin": {"port": free_port()},
        "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco.root), "pollIntervalMs": 50}],
        "routers": [
            {
                "protocol": "thrift",
                "dtab": "/svc => /#/io.l5d.fs;",
                **(router or {}),
                "servers": [{"port": free_port(), **(server or {})}],
            }
        ],
    }
    if telemetry:
        config["telemetry"] = telemetry
    return yaml.safe_dump(config, sort_keys=False)
