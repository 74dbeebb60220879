"""In-process micro-benchmark of the HTTP data path: CPU per request, no sockets.

Drives requests through ServerProtocol → dispatch → UpstreamProtocol → response with fake
transports, so the number printed is the Python (and llhttp) cost of one proxied request,
free of syscall and scheduling noise. Usage: python bench/micro_http.py [N] [--profile]
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

from turnout.config import load_text
from turnout.linker import Linker
from turnout.plugin_manager import load_plugins


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def set_write_buffer_limits(self, high: int) -> None: ...
    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 5555) if name == "peername" else None

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close


REQUEST = b"GET / HTTP/1.1\r\nHost: web\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: keep-alive\r\n\r\nok\n"
)


async def main(n: int, profile: bool) -> None:
    from turnout_protocol_http.downstream import ServerProtocol
    from turnout_protocol_http.upstream import UpstreamProtocol

    root = Path(tempfile.mkdtemp())
    (root / "web").write_text("127.0.0.1 1\n")
    text = f"""
admin: {{port: 0}}
namers: [{{kind: io.l5d.fs, rootDir: {root}}}]
routers:
- protocol: http
  dtab: /svc => /#/io.l5d.fs
  servers: [{{port: 0}}]
"""
    plugins = load_plugins()
    linker = Linker.build(load_text(text, registry=plugins.registry), plugins)
    router = linker.routers[0]
    await router.start()
    server = router.server_runtimes[0]
    down = ServerProtocol(router, server)
    dt = FakeTransport()
    down.connection_made(dt)
    # warm up: bind the name and create the client, then plant a fake upstream connection
    route = router.core.route(
        router.identifiers[0].identify(type("R", (), {"header": lambda s, n: b"web"})()),
        router.core.dtab[:0],
    )
    await route.wait(2)
    client, _ = route.choose()
    pool = client.endpoints[0].pool
    up = UpstreamProtocol(pool)
    ut = FakeTransport()
    up.connection_made(ut)
    pool.open.add(up)
    pool.idle.append(up)

    def one() -> None:
        down.data_received(REQUEST)
        up.data_received(RESPONSE)

    for _ in range(2000):
        one()
    assert dt.out[-1].startswith(b"HTTP/1.1 200"), dt.out[-1]
    dt.out.clear()
    ut.out.clear()
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    for _ in range(n):
        one()
    if prof:
        prof.disable()
    elapsed = time.perf_counter() - t0
    print(f"{n} requests: {elapsed / n * 1e6:.2f} µs per request (Python + llhttp, no I/O)")
    assert len(dt.out) == n, len(dt.out)
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    await router.close()


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 50_000
    asyncio.run(main(count, "--profile" in sys.argv))
