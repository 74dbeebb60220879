"""Real HTTP/2 clients (nghttp, curl --http2-prior-knowledge) against a tiny asyncio h2c
server built on ServerSession, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest
from turnout_protocol_h2.codec import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    ServerSession,
)

pytestmark = pytest.mark.integration


class H2cServer:
    """Answers every request with its method, path and body length (after the whole body);
    data is consumed (credit returned) as it is read."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.requests: list[dict[bytes, bytes]] = []
        self._ready = threading.Event()
        #: the connections' tasks, cancelled and awaited before the loop closes (a task left
        #: pending would be collected later, in another test, as "Event loop is closed")
        self._conns: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._conn, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        self.loop.run_forever()
        server.close()
        for task in self._conns:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*self._conns, return_exceptions=True))
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)
        s = ServerSession()
        heads: dict[int, dict[bytes, bytes]] = {}
        sizes: dict[int, int] = {}
        try:
            writer.write(s.data_to_send())
            while not s.is_finished:
                data = await asyncio.wait_for(reader.read(65536), 30)
                if not data:
                    break
                for e in s.feed(data):
                    if isinstance(e, RequestReceived):
                        heads[e.stream_id] = dict(e.headers)
                        sizes[e.stream_id] = 0
                        self.requests.append(heads[e.stream_id])
                    elif isinstance(e, DataReceived):
                        sizes[e.stream_id] += len(e.data)
                        s.consume(e.stream_id, len(e.data))
                    elif isinstance(e, ConnectionTerminated):
                        break
                    if getattr(e, "end_stream", False):
                        h = heads.pop(e.stream_id)
                        body = b"%s %s %d\n" % (h[b":method"], h[b":path"], sizes.pop(e.stream_id))
                        s.submit_response(
                            e.stream_id,
                            [(b":status", b"200"), (b"content-type", b"text/plain")],
                        )
                        s.send_data(e.stream_id, body, end_stream=True)
                writer.write(s.data_to_send())
                await writer.drain()
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def h2c() -> Iterator[H2cServer]:
    srv = H2cServer()
    yield srv
    srv.stop()


def _run(cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
    # the clients are not under test: not under tests/asan.sh's preloaded libasan either
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()  # this PID only
            proc.wait(10)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="nghttp (nghttp2-client) missing")
def test_nghttp_get_and_post(h2c: H2cServer, tmp_path: object) -> None:
    url = f"http://127.0.0.1:{h2c.port}"
    r = _run(["nghttp", "-n", "-s", f"{url}/a", f"{url}/b", f"{url}/c"])
    assert r.returncode == 0, r.stderr
    assert len(h2c.requests) == 3  # three streams on one connection
    body = bytes(range(256)) * 1024  # 256 KiB: beyond the 64 KiB windows
    data = tmp_path / "body"  # type: ignore[operator]
    data.write_bytes(body)
    r = _run(["nghttp", "-d", str(data), f"{url}/upload"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"POST /upload %d\n" % len(body)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing")
def test_curl_prior_knowledge(h2c: H2cServer) -> None:
    url = f"http://127.0.0.1:{h2c.port}/hello"
    r = _run(["curl", "-sS", "--max-time", "30", "--http2-prior-knowledge", "-D", "-", url])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"HTTP/2 200") and r.stdout.endswith(b"GET /hello 0\n")
