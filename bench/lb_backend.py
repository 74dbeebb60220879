"""A small HTTP/1.1 backend for the load-balancing scenarios (``bench/lb_scenarios.py``).

    python bench/lb_backend.py --port 9001 --name b1 [--delay-ms 50] [--fail-rate 0.5]
                               [--fail-status 503] [--seed 1]

Answers every request with ``<name>\\n`` after ``--delay-ms``; a ``--fail-rate`` fraction of
requests (chosen at random, reproducibly with ``--seed``) get ``--fail-status`` instead.
``GET /__stats`` returns ``{"requests": n, "failed": m}`` as JSON (counted requests exclude
it). Keep-alive, no request bodies expected (the scenario load sends plain GETs). Runs until
killed (SIGTERM or SIGINT stop it cleanly).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of turnout
    uvloop = None


class Backend(asyncio.Protocol):
    def __init__(self, cfg: argparse.Namespace, stats: dict[str, int], rng: random.Random):
        self.cfg = cfg
        self.stats = stats
        self.rng = rng
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.task = asyncio.get_running_loop().create_task(self.serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.queue.put_nowait(head)

    async def serve(self) -> None:
        """Answer requests in order (HTTP/1.1 pipelining keeps its order)."""
        cfg = self.cfg
        name = cfg.name.encode()
        while True:
            head = await self.queue.get()
            target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
            if target == b"/__stats":
                self.write(200, json.dumps(self.stats).encode())
                continue
            self.stats["requests"] += 1
            if cfg.delay_ms:
                await asyncio.sleep(cfg.delay_ms / 1000)
            if cfg.fail_rate and self.rng.random() < cfg.fail_rate:
                self.stats["failed"] += 1
                self.write(cfg.fail_status, name + b" failed\n")
            else:
                self.write(200, name + b"\n")

    def write(self, status: int, body: bytes) -> None:
        if self.transport is None:
            return
        reason = b"OK" if status == 200 else b"Service Unavailable"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s"
            % (status, reason, len(body), body)
        )


async def main(cfg: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stats = {"requests": 0, "failed": 0}
    rng = random.Random(cfg.seed)
    server = await loop.create_server(
        lambda: Backend(cfg, stats, rng), "127.0.0.1", cfg.port, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"{cfg.name} listening on 127.0.0.1:{cfg.port}", flush=True)
    await stop.wait()
    server.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--fail-rate", type=float, default=0.0)
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if uvloop is not None:
        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
