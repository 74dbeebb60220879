"""A scripted HTTP/2 backend (h2c, on 127.0.0.1) built on the codec's ServerSession, for what
real servers will not do on demand: reset a stream in the middle of its response, refuse
streams (REFUSED_STREAM), send a GOAWAY, show the frames turnout sent it."""

from __future__ import annotations

import asyncio
from typing import Any

from turnout.testing import free_port
from turnout.testing.loop import LoopThread
from turnout_protocol_h2.codec import (
    DataReceived,
    ErrorCode,
    RequestReceived,
    ServerSession,
    StreamReset,
)


class ScriptedBackend:
    """``mode``: ``ok`` (200 ``<name>`` and END_STREAM), ``reset`` (200 and 5 bytes, then
    RST_STREAM ``code`` 0.2 s later), ``refuse`` (RST_STREAM REFUSED_STREAM at once),
    ``goaway`` (answers the first stream of a connection, then sends GOAWAY with that stream
    as the last processed, ignores the rest and closes the connection a second later),
    ``flaky`` (503 to the first ``fail_first`` requests, then 200 ``<name>``; answers once
    the request's body has ended, and keeps each body in ``bodies``)."""

    def __init__(
        self,
        name: str,
        mode: str = "ok",
        code: int = ErrorCode.INTERNAL_ERROR,
        fail_first: int = 1,
    ) -> None:
        self.name = name.encode()
        self.mode = mode
        self.code = code
        self.fail_first = fail_first
        self.bodies: list[bytes] = []
        self.port = free_port()
        self.requests: list[dict[bytes, bytes]] = []
        self.resets_received: list[int] = []
        self.connections = 0
        self.open: list[Any] = []
        self.thread = LoopThread(f"h2-backend-{name}")
        self.server: Any = None

    def start(self) -> ScriptedBackend:
        loop = self.thread.start()
        self.server = self.thread.call(
            loop.create_server(lambda: _Conn(self), "127.0.0.1", self.port)
        )
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.thread.call(self._close())
            self.server = None
        self.thread.close()

    async def _close(self) -> None:
        self.server.close()
        for transport in self.open:
            transport.abort()
        await asyncio.sleep(0)  # (the transports' connection_lost run)


class _Conn(asyncio.Protocol):
    def __init__(self, backend: ScriptedBackend) -> None:
        self.backend = backend
        self.session = ServerSession()
        self.transport: Any = None
        self.gone = False
        self.body: dict[int, bytearray] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.backend.connections += 1
        self.backend.open.append(transport)
        transport.write(self.session.data_to_send())

    def data_received(self, data: bytes) -> None:
        b = self.backend
        if self.gone:
            return
        for ev in self.session.feed(data):
            if isinstance(ev, RequestReceived):
                b.requests.append(dict(ev.headers))
                sid = ev.stream_id
                if b.mode == "flaky":
                    self.body[sid] = bytearray()
                    if ev.end_stream:
                        self._answer_flaky(sid)
                elif b.mode == "refuse":
                    self.session.reset_stream(sid, ErrorCode.REFUSED_STREAM)
                elif b.mode == "reset":
                    self.session.submit_response(sid, [(b":status", b"200")])
                    self.session.send_data(sid, b"hello")
                    asyncio.get_running_loop().call_later(0.2, self._reset, sid)
                else:
                    self.session.submit_response(sid, [(b":status", b"200")])
                    self.session.send_data(sid, b.name + b"\n", end_stream=True)
                    if b.mode == "goaway":
                        # GOAWAY naming this stream the last processed (a raw frame: the
                        # codec's own GOAWAY would name every stream it has seen)
                        self.transport.write(self.session.data_to_send())
                        goaway = sid.to_bytes(4, "big") + b"\0\0\0\0"
                        self.transport.write(b"\0\0\x08\x07\0\0\0\0\0" + goaway)
                        self.gone = True
                        asyncio.get_running_loop().call_later(1.0, self.transport.close)
                        return
            elif isinstance(ev, DataReceived):
                self.session.consume(ev.stream_id, len(ev.data))
                if ev.stream_id in self.body:
                    self.body[ev.stream_id] += ev.data
                    if ev.end_stream:
                        self._answer_flaky(ev.stream_id)
            elif isinstance(ev, StreamReset):
                b.resets_received.append(ev.error_code)
        out = self.session.data_to_send()
        if out:
            self.transport.write(out)

    def _answer_flaky(self, sid: int) -> None:
        b = self.backend
        b.bodies.append(bytes(self.body.pop(sid)))
        failing = len(b.bodies) <= b.fail_first
        status = b"503" if failing else b"200"
        self.session.submit_response(sid, [(b":status", status)])
        self.session.send_data(sid, b"busy\n" if failing else b.name + b"\n", end_stream=True)

    def _reset(self, sid: int) -> None:
        self.session.reset_stream(sid, self.backend.code)
        self.transport.write(self.session.data_to_send())
