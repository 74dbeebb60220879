"""The base of in-process span collectors: an aiohttp application on its own thread that
accepts POSTs of spans at one path and keeps what it accepted. It knows no tracing protocol:
each tracing plugin's collector double (in that plugin's ``testing`` module) subclasses it
with the path, the wire format and the checks of its protocol."""

from __future__ import annotations

import threading
import time
from typing import Any, Self

from aiohttp import web

from .loop import ThreadedApp
from .net import LOCALHOST, free_port


class SpanCollector:
    """Subclasses set :attr:`path` and :attr:`name` and implement ``_post``; they append
    accepted spans to :attr:`spans` and problems to :attr:`errors` under :attr:`_lock`."""

    #: where spans are POSTed
    path = "/"
    #: shown in thread names and errors
    name = "span collector"
    #: the largest request body accepted
    max_body = 1024**2

    def __init__(self, port: int | None = None) -> None:
        self.host = LOCALHOST
        self.port = port or free_port()
        self.spans: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadedApp(self.name, self.host, self.port)

    async def _post(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    def start(self, timeout: float = 10.0) -> Self:
        def make_app() -> web.Application:
            app = web.Application(client_max_size=self.max_body)
            app.router.add_post(self.path, self._post)
            return app

        try:
            self._server.start(make_app, timeout)
        except Exception as e:
            raise RuntimeError(f"{self.name} did not start: {e!r}") from e
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.stop(timeout)

    def wait_spans(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``n`` spans arrived; return them all (raise on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.spans) >= n:
                    return list(self.spans)
            time.sleep(0.02)
        raise TimeoutError(f"{len(self.spans)} spans after {timeout}s, wanted {n}: {self.errors}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
