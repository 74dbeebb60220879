"""An asyncio event loop on its own thread: the home of the servers tests run in-process
(recording backends, API doubles, collectors), so that a synchronous test can start them,
change their state and stop them while turnout runs in another process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class LoopThread:
    """A daemon thread running an event loop until :meth:`close`.

    :param exception_handler: the loop's exception handler (for doubles that collect errors).
    """

    def __init__(
        self,
        name: str,
        exception_handler: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]
        | None = None,
    ) -> None:
        self.name = name
        self.exception_handler = exception_handler
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> asyncio.AbstractEventLoop:
        """Start the thread (once; later calls return the running loop)."""
        if self.loop is not None:
            return self.loop
        loop = asyncio.new_event_loop()
        if self.exception_handler is not None:
            loop.set_exception_handler(self.exception_handler)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"{self.name}: the event loop did not start in {timeout}s")
        self.loop = loop
        return loop

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the loop and return its result (its exception is raised here)."""
        if self.loop is None:
            coro.close()
            raise RuntimeError(f"{self.name}: not started")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop and end the thread (idempotent)."""
        loop, thread = self.loop, self._thread
        self.loop = self._thread = None
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)


class ThreadedApp:
    """An aiohttp application served on ``host:port`` from a :class:`LoopThread`."""

    def __init__(self, name: str, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.thread = LoopThread(name)
        self._runner: web.AppRunner | None = None

    def start(self, make_app: Callable[[], web.Application], timeout: float = 10.0) -> None:
        """Build the application (on the loop) and listen; raises if the port is taken."""
        self.thread.start(timeout)

        async def serve() -> None:
            runner = web.AppRunner(make_app(), access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            try:
                await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
            except BaseException:
                await runner.cleanup()
                raise
            self._runner = runner

        try:
            self.thread.call(serve(), timeout)
        except BaseException:
            self.thread.close(timeout)
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every connection, end the thread (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None and self.thread.loop is not None:
            try:
                self.thread.call(runner.cleanup(), timeout)
            finally:
                self.thread.close(timeout)
        else:
            self.thread.close(timeout)
