"""A real grpcio server and client for the router's end-to-end tests.

No protobuf: the methods of ``test.Echo`` take and return raw bytes (grpcio's generic
handlers without serializers), so the tests need no generated code.

Methods:

- ``Unary``: ``<name>:<request>``.
- ``Meta``: the request's metadata as ``key=value`` lines (what turnout added).
- ``ServerStream``: request ``b"<n>[:<size>]"`` → n messages (``<i>`` padded to size bytes).
- ``ClientStream``: the requests joined with ``b","``.
- ``Bidi``: each request answered with ``<name>:<request>`` as it arrives.
- ``Fail``: aborts with the status code given as the request (``b"14"``).
- ``Flaky``: UNAVAILABLE for the first ``fail_first`` calls, then ``<name>:ok``.
- ``FlakyStream``: the first ``fail_first`` calls send one message, then UNAVAILABLE; later
  ones send the ``<n>`` messages asked for.
- ``Slow``: sleeps the seconds given as the request (cancelled calls are recorded).
- ``Big``: a response of the size given as the request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from turnout.testing import free_port

SERVICE = "test.Echo"


class GrpcBackend:
    def __init__(self, name: str, port: int | None = None, fail_first: int = 0) -> None:
        self.name = name.encode()
        self.port = port or free_port()
        self.calls: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()
        self.produced = 0
        self.fail_first = fail_first
        self.lock = threading.Lock()
        self.server: Any = None
        #: (private key PEM, certificate chain PEM): serve TLS (ALPN h2) instead of h2c
        self.tls: tuple[bytes, bytes] | None = None

    # -- handlers ------------------------------------------------------------------------
    def _count(self, method: str) -> int:
        with self.lock:
            self.calls[method] += 1
            return self.calls[method]

    def unary(self, request: bytes, context: Any) -> bytes:
        self._count("Unary")
        return self.name + b":" + request

    def meta(self, request: bytes, context: Any) -> bytes:
        self._count("Meta")
        return "\n".join(f"{k}={v}" for k, v in context.invocation_metadata()).encode()

    def server_stream(self, request: bytes, context: Any) -> Iterator[bytes]:
        self._count("ServerStream")
        n, _, size = request.partition(b":")
        width = int(size or 0)
        for i in range(int(n)):
            with self.lock:
                self.produced += 1
            yield str(i).encode().ljust(width, b".")

    def client_stream(self, requests: Iterator[bytes], context: Any) -> bytes:
        self._count("ClientStream")
        return b",".join(requests)

    def bidi(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        self._count("Bidi")
        for r in requests:
            yield self.name + b":" + r

    def fail(self, request: bytes, context: Any) -> bytes:
        self._count("Fail")
        context.abort(grpc.StatusCode(_code(int(request))), "failed on purpose")
        return b""  # (abort raises)

    def flaky(self, request: bytes, context: Any) -> bytes:
        n = self._count("Flaky")
        if n <= self.fail_first:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"call {n} fails")
        return self.name + b":ok"

    def flaky_stream(self, request: bytes, context: Any) -> Iterator[bytes]:
        n = self._count("FlakyStream")
        if n <= self.fail_first:
            yield b"partial"
            context.abort(grpc.StatusCode.UNAVAILABLE, f"call {n} fails after a message")
        for i in range(int(request)):
            yield self.name + b":%d" % i

    def slow(self, request: bytes, context: Any) -> bytes:
        self._count("Slow")
        done = threading.Event()

        def on_done() -> None:
            if not done.is_set():
                with self.lock:
                    self.cancelled["Slow"] += 1

        context.add_callback(on_done)
        deadline = time.monotonic() + float(request)
        while time.monotonic() < deadline and context.is_active():
            time.sleep(0.02)
        done.set()
        return self.name + b":slow"

    def big(self, request: bytes, context: Any) -> bytes:
        self._count("Big")
        return b"x" * int(request)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> GrpcBackend:
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "Meta": grpc.unary_unary_rpc_method_handler(self.meta),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
            "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
            "Flaky": grpc.unary_unary_rpc_method_handler(self.flaky),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
            "FlakyStream": grpc.unary_stream_rpc_method_handler(self.flaky_stream),
            "Big": grpc.unary_unary_rpc_method_handler(self.big),
        }
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16),
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
            ],
        )
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        if self.tls is not None:
            credentials = grpc.ssl_server_credentials([self.tls])
            server.add_secure_port(f"127.0.0.1:{self.port}", credentials)
        else:
            server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self.server = server
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None).wait(5)
            self.server = None


def _code(value: int) -> tuple[int, str]:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code.value  # type: ignore[no-any-return]
    raise ValueError(value)


class GrpcClient:
    """A channel to ``127.0.0.1:port`` (h2c) and the ``test.Echo`` methods on it."""

    def __init__(self, port: int, authority: str | None = None) -> None:
        options = [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.enable_retries", 0),
        ]
        if authority is not None:
            options.append(("grpc.default_authority", authority))
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)

    def method(self, kind: str, name: str) -> Any:
        factory = getattr(self.channel, kind)
        return factory(f"/{SERVICE}/{name}")

    def unary(self, name: str, request: bytes, **kw: Any) -> bytes:
        result: bytes = self.method("unary_unary", name)(request, **kw)
        return result

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
