"""Connecting to an endpoint by host name (issue 10): a resolver failure says so.

``open_connection`` resolves the host first: an unresolvable or unanswered host raises
``ResolveError`` ("cannot resolve host X: ...") instead of a bare ``TimeoutError``, and a
cancelled attempt leaves no resolver future behind (uvloop's ``create_connection`` does,
which logs "Future exception was never retrieved": MagicStack/uvloop#437).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from turnout.naming import AddrFailed, AddrNeg, InetResolver
from turnout.naming.inet import ResolveError, classify_error, open_connection

Main = Callable[[], Coroutine[Any, Any, Any]]


def run(main: Main, loop_kind: str = "asyncio") -> Any:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(main())
    return asyncio.run(main())


def fail_lookups(loop: asyncio.AbstractEventLoop, error: BaseException | None) -> None:
    """Make ``loop.getaddrinfo`` raise ``error`` (or hang when None)."""

    async def getaddrinfo(*_: Any, **__: Any) -> Any:
        if error is None:
            await asyncio.sleep(3600)
        raise error

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]


def test_an_unresolvable_host_names_itself_and_the_reason() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        fail_lookups(loop, again)
        with pytest.raises(ResolveError) as info:
            await open_connection(asyncio.Protocol, "db.internal", 5432, 3.0)
        assert str(info.value) == (
            "cannot resolve host db.internal: Temporary failure in name resolution"
        )
        assert info.value.errno == socket.EAI_AGAIN and info.value.host == "db.internal"
        assert isinstance(info.value, OSError) and not isinstance(info.value, TimeoutError)

    run(main)


def test_a_silent_resolver_is_a_resolve_error_not_a_connect_timeout() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fail_lookups(loop, None)
        start = loop.time()
        with pytest.raises(ResolveError) as info:
            await open_connection(asyncio.Protocol, "db.internal", 5432, 0.05)
        assert loop.time() - start < 5  # bounded by the timeout (generously: a busy machine)
        assert str(info.value) == "cannot resolve host db.internal: no answer within 0.05s"
        assert info.value.errno == errno.ETIMEDOUT

    run(main)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_cancelled_attempt_leaves_no_unretrieved_resolver_future(loop_kind: str) -> None:
    """A real lookup of a name that does not exist (RFC 6761 ``.invalid``), cancelled while
    it runs: when the lookup fails afterwards, nothing may log "never retrieved"."""
    reports: list[dict[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reports.append(context))
        for timeout in (0.0, 0.0005, 0.002):
            with pytest.raises(OSError):  # ResolveError, or TimeoutError if cancelled later
                await open_connection(asyncio.Protocol, "turnout-test.invalid", 80, timeout)
            task = asyncio.ensure_future(
                open_connection(asyncio.Protocol, "turnout-test.invalid", 80, 5.0)
            )
            await asyncio.sleep(0)
            task.cancel()  # cancelled from outside (the request ended)
            with pytest.raises((asyncio.CancelledError, OSError)):
                await task
        await asyncio.sleep(0.5)  # the lookups end (and fail) in the resolver's threads
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0.05)

    run(main, loop_kind)
    messages = [str(r.get("message")) for r in reports]
    assert not any("never retrieved" in m for m in messages), messages


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_connects_by_name_and_refusal_is_not_a_timeout(loop_kind: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await open_connection(asyncio.Protocol, "localhost", port, 5.0)
        assert transport.get_extra_info("peername")[1] == port
        transport.close()
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await open_connection(asyncio.Protocol, "127.0.0.1", port, 5.0)

    run(main, loop_kind)


def test_a_connect_timeout_says_so() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def hang(*_: Any, **__: Any) -> Any:
            await asyncio.sleep(3600)

        loop.create_connection = hang  # type: ignore[method-assign]
        with pytest.raises(TimeoutError, match=r"no connection within 0\.05s"):
            await open_connection(asyncio.Protocol, "127.0.0.1", 1, 0.05)

    run(main)


def test_tls_checks_the_host_name_not_the_address() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, dict[str, Any]]] = []

        async def capture(_: Any, host: str, port: int, **kwargs: Any) -> Any:
            seen.append((host, kwargs))
            return object(), object()

        async def getaddrinfo(*_: Any, **__: Any) -> Any:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 0))]

        loop.create_connection = capture  # type: ignore[method-assign]
        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        context = object()
        await open_connection(asyncio.Protocol, "web.internal", 443, 1.0, ssl=context)
        await open_connection(asyncio.Protocol, "web.internal", 80, 1.0)
        assert seen == [
            ("10.1.2.3", {"ssl": context, "server_hostname": "web.internal"}),
            ("10.1.2.3", {}),
        ]

    run(main)


# -- /$/inet ------------------------------------------------------------------------------------
def test_inet_resolver_failures_name_the_host() -> None:
    again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert classify_error(again, "web") == AddrFailed(
        "cannot resolve host web: Temporary failure in name resolution"
    )
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert classify_error(unknown, "web") is AddrNeg

    async def main() -> None:
        async def lookup(host: str) -> tuple[list[str], float | None]:
            raise again

        resolver = InetResolver()
        resolver.use(lookup)
        var = resolver.addr("web.test", 80)
        obs = var.observe(lambda _: None)
        await asyncio.sleep(0.05)
        assert var.value == AddrFailed(
            "cannot resolve host web.test: Temporary failure in name resolution"
        )
        obs.close()

    run(main)
