"""Bounded soak: steady load plus faults, watching turnout for growth.

    ./dev soak [--duration 600] [--interval 30] [--connections 16] [--warmup 60]
               [--rss-growth-mb 25] [--fd-slack 4] [--task-slack 4]

Starts (all on 127.0.0.1, free ports, a temporary directory) three nginx backends and
turnout (an ``io.l5d.fs`` namer over them, retries of reads, the Prometheus telemeter), then
for ``--duration`` seconds drives it with ``wrk -t1 -c<connections>`` in ``--interval``
slices while, at the same time:

- one backend is stopped (by PID) every 45 s and started again 3 s later on its port;
- the namer's files churn: every 2 s the ``web`` endpoint set changes, a new service file is
  written, requested once and the one written 10 steps earlier removed (so routes and clients
  are created and expire: ``bindingCache.idleTtlSecs`` is 20 s here);
- clients misbehave twice a second: a request head cut short, a request sent and the
  connection closed before the answer, a body promised and not sent;
- ``/admin/metrics.json`` and ``/admin/metrics/prometheus`` are scraped every second.

Every interval it prints requests/s, p50/p99 latency and errors (wrk), and turnout's RSS,
open file descriptors, asyncio tasks and loop lag (``process/...`` gauges). Verdict, exit
status 1 on growth:

- RSS: the last sample minus the first one after ``--warmup`` seconds must stay under
  ``--rss-growth-mb`` (the slope over the whole post-warm-up run is printed too);
- file descriptors and asyncio tasks, measured idle (no client, pools expired: the client's
  ``hostConnectionPool.idleTimeMs`` is 1 s here) before the load and again after it, must come
  back to the baseline within ``--fd-slack`` / ``--task-slack``.

Every process started is stopped by PID when the run ends; the run is bounded by
``--duration`` plus about a minute of setup and settling.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from turnout.testing import DiscoDir, NginxBackend, TurnoutProcess, free_port, http_request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_bench import Result, run_wrk  # bench/ is not a package

RESTART_EVERY = 45.0
RESTART_DOWN = 3.0
CHURN_EVERY = 2.0
ABUSE_EVERY = 0.5
SCRAPE_EVERY = 1.0


@dataclass
class Sample:
    """One interval's numbers."""

    t: float
    result: Result | None
    rss_mb: float
    #: the most open fds and asyncio tasks seen by the scrapes during the interval
    fds: int
    tasks: int
    lag_ms: float
    services: int


@dataclass
class Background:
    """The fault and scrape threads; each runs ``step`` every ``every`` seconds until stopped."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def every(self, name: str, seconds: float, step: Callable[[int], None]) -> None:
        def run() -> None:
            start = time.monotonic()
            i = 0
            while not self.stop.is_set():
                try:
                    step(i)
                    self.counts[name] = self.counts.get(name, 0) + 1
                except Exception as e:  # a fault thread must go on; count what failed
                    self.errors[name] = self.errors.get(name, 0) + 1
                    if self.errors[name] <= 3:
                        print(f"soak: {name} step {i}: {type(e).__name__}: {e}", file=sys.stderr)
                i += 1
                self.stop.wait(max(0.0, start + i * seconds - time.monotonic()))

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


class Admin:
    """Reads turnout's admin: the latest ``/admin/metrics.json`` (scraped by a thread)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latest: dict[str, Any] = {}
        self.conn: http.client.HTTPConnection | None = None
        self.lock = threading.Lock()
        #: the most open fds and asyncio tasks scraped since :meth:`peaks` was last called
        self.peak_fds = 0
        self.peak_tasks = 0

    def get(self, path: str) -> bytes:
        with self.lock:  # (the scraper thread and the main thread share the connection)
            return self._get(path)

    def _get(self, path: str) -> bytes:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status}")
                return body
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def metrics(self) -> dict[str, Any]:
        m = self.latest = json.loads(self.get("/admin/metrics.json"))
        self.peak_fds = max(self.peak_fds, int(gauge(m, "process/open_fds")))
        self.peak_tasks = max(self.peak_tasks, int(gauge(m, "process/asyncio_tasks")))
        return m

    def peaks(self) -> tuple[int, int]:
        out = (self.peak_fds, self.peak_tasks)
        self.peak_fds = self.peak_tasks = 0
        return out

    def scrape(self, i: int) -> None:
        self.metrics()
        self.get("/admin/metrics/prometheus")


def gauge(metrics: dict[str, Any], name: str) -> float:
    value = metrics.get(name, float("nan"))
    return float(value) if isinstance(value, int | float) else float("nan")


def services(metrics: dict[str, Any]) -> int:
    """Logical names turnout holds stats for (``rt/<router>/service/<name>/requests``):
    churned names must come and go."""
    return sum(
        1 for k in metrics if k.startswith("rt/") and "/service/" in k and k.endswith("/requests")
    )


def abuse(port: int, i: int) -> None:
    """One misbehaving client (three kinds, in turn)."""
    kind = i % 3
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if kind == 0:  # a head cut short
            s.sendall(b"GET /cut HTTP/1.1\r\nHost: web\r\nX-Half: ")
        elif kind == 1:  # asks, and leaves before the answer
            s.sendall(b"GET /gone HTTP/1.1\r\nHost: web\r\n\r\n")
        else:  # promises a body it does not send
            s.sendall(b"POST /body HTTP/1.1\r\nHost: web\r\nContent-Length: 1000\r\n\r\n0123456789")
            time.sleep(0.05)


def idle_numbers(admin: Admin, settle: float) -> tuple[int, int]:
    """Open fds and asyncio tasks once turnout is idle: the lowest seen within ``settle``
    seconds (pooled connections close after the pool's idle time, swept once a second)."""
    deadline = time.monotonic() + settle
    best: tuple[int, int] | None = None
    while True:
        m = admin.metrics()
        now = (int(gauge(m, "process/open_fds")), int(gauge(m, "process/asyncio_tasks")))
        best = now if best is None else (min(best[0], now[0]), min(best[1], now[1]))
        if time.monotonic() > deadline:
            return best
        time.sleep(0.5)


def slope_mb_per_min(samples: list[Sample]) -> float:
    if len(samples) < 2:
        return 0.0
    xs = [s.t for s in samples]
    ys = [s.rss_mb for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 60 if den else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=600, help="seconds of load (default 600)")
    p.add_argument("--interval", type=int, default=30, help="seconds per report (default 30)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    p.add_argument("--warmup", type=int, default=60, help="seconds before RSS is compared")
    p.add_argument("--rss-growth-mb", type=float, default=25.0, help="RSS growth that fails")
    p.add_argument("--fd-slack", type=int, default=4, help="idle fds above baseline allowed")
    p.add_argument("--task-slack", type=int, default=4, help="idle tasks above baseline allowed")
    args = p.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"soak: {tool} is not installed (./dev soak installs it)", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="turnout-soak-"))
    backends = [NginxBackend(n, workdir=work / f"nginx-{n}") for n in ("a", "b", "c")]
    turnout: TurnoutProcess | None = None
    background = Background()
    try:
        for b in backends:
            b.start()
        disco = DiscoDir(work / "disco")
        disco.write("web", *backends)
        port, admin_port = free_port(), free_port()
        config = {
            "admin": {"port": admin_port},
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco.root)}],
            "routers": [
                {
                    "protocol": "http",
                    "dtab": "/svc => /#/io.l5d.fs;",
                    "bindingCache": {"idleTtlSecs": 20},
                    "client": {"hostConnectionPool": {"idleTimeMs": 1000}},
                    "service": {
                        "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"},
                        "retries": {"backoff": {"kind": "constant", "ms": 0}},
                    },
                    "servers": [{"ip": "127.0.0.1", "port": port}],
                }
            ],
            "telemetry": [{"kind": "io.l5d.prometheus"}],
        }
        turnout = TurnoutProcess(yaml.safe_dump(config), workdir=work / "turnout").start()
        admin = Admin(admin_port)
        url = f"http://127.0.0.1:{port}/"
        run_wrk(url, "web", argparse.Namespace(connections=8, duration=3), None)  # warm up
        idle_before = idle_numbers(admin, settle=4.0)
        print(
            f"soak: turnout pid {turnout.pid}, {args.duration} s of wrk -t1 "
            f"-c{args.connections} with backend restarts every {RESTART_EVERY:g} s, namer churn "
            f"every {CHURN_EVERY:g} s, misbehaving clients every {ABUSE_EVERY:g} s, admin "
            f"scrapes every {SCRAPE_EVERY:g} s; idle before: {idle_before[0]} fds, "
            f"{idle_before[1]} asyncio tasks\n"
        )

        restarts = {"n": 0}

        def restart(i: int) -> None:
            if i == 0:
                return  # (the first tick is at once)
            victim = backends[2]
            victim.stop()
            time.sleep(RESTART_DOWN)
            again = NginxBackend("c", port=victim.port, workdir=victim.dir)
            backends[2] = again
            again.start()
            restarts["n"] += 1

        def churn(i: int) -> None:
            sets = [backends, backends[:2], backends[1:]]
            disco.write("web", *sets[i % 3])
            disco.write(f"churn{i}", backends[i % 2])
            if i >= 10:
                disco.remove(f"churn{i - 10}")
            http_request(port, "GET", "/", {"Host": f"churn{i}"}, timeout=10)
            if i >= 11:  # a name whose file went away: 502, and a negative binding
                http_request(port, "GET", "/", {"Host": f"churn{i - 11}"}, timeout=10)

        background.every("restart", RESTART_EVERY, restart)
        background.every("churn", CHURN_EVERY, churn)
        background.every("abuse", ABUSE_EVERY, lambda i: abuse(port, i))
        background.every("scrape", SCRAPE_EVERY, admin.scrape)

        print(
            f"{'t s':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
            f"{'RSS MB':>9}{'fds*':>6}{'tasks*':>7}{'lag ms':>8}{'names':>7}"
        )
        samples: list[Sample] = []
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < args.duration - 1:
            seconds = max(1, min(args.interval, round(args.duration - elapsed)))
            wrk = argparse.Namespace(connections=args.connections, duration=seconds)
            admin.peaks()
            result = run_wrk(url, "web", wrk, None)
            m = admin.latest  # (scraped under load, at most a second ago)
            fds, tasks = admin.peaks()
            sample = Sample(
                time.monotonic() - start,
                result,
                gauge(m, "process/rss_bytes") / 2**20,
                fds,
                tasks,
                gauge(m, "process/loop_lag_ms"),
                services(m),
            )
            samples.append(sample)
            print(
                f"{sample.t:>5.0f}{result.rps:>9,.0f}{result.p50_ms:>9.2f}{result.p99_ms:>9.2f}"
                f"{result.errors:>8}{sample.rss_mb:>9.1f}{sample.fds:>6}{sample.tasks:>7}"
                f"{sample.lag_ms:>8.1f}{sample.services:>7}",
                flush=True,
            )
        background.join()
        print("(* the most seen by the scrapes during the interval)")
        if not turnout.running():
            print(f"soak: FAIL: turnout exited:\n{turnout.log()}", file=sys.stderr)
            return 1
        idle_after = idle_numbers(admin, settle=6.0)

        failures: list[str] = []
        after_warmup = [s for s in samples if s.t >= args.warmup] or samples[-1:]
        growth = after_warmup[-1].rss_mb - after_warmup[0].rss_mb
        total = sum(s.result.rps * args.interval for s in samples if s.result)
        errors = sum(s.result.errors for s in samples if s.result)
        print(
            f"\nRSS after warm-up {after_warmup[0].rss_mb:.1f} MB, at the end "
            f"{after_warmup[-1].rss_mb:.1f} MB: {growth:+.1f} MB "
            f"(slope {slope_mb_per_min(after_warmup):+.2f} MB/min; limit +{args.rss_growth_mb:g} MB)"
        )
        print(
            f"idle fds {idle_before[0]} before, {idle_after[0]} after (slack {args.fd_slack}); "
            f"idle asyncio tasks {idle_before[1]} before, {idle_after[1]} after "
            f"(slack {args.task_slack})"
        )
        print(
            f"about {total:,.0f} requests, {errors} wrk errors (non-2xx or socket); "
            f"{restarts['n']} backend restarts; steps done: "
            + ", ".join(f"{k} {v}" for k, v in sorted(background.counts.items()))
            + (
                "; step errors: " + ", ".join(f"{k} {v}" for k, v in background.errors.items())
                if background.errors
                else ""
            )
        )
        if growth > args.rss_growth_mb:
            failures.append(f"RSS grew {growth:.1f} MB after warm-up")
        if idle_after[0] > idle_before[0] + args.fd_slack:
            failures.append(f"open fds not back to baseline ({idle_before[0]} -> {idle_after[0]})")
        if idle_after[1] > idle_before[1] + args.task_slack:
            failures.append(f"asyncio tasks not back ({idle_before[1]} -> {idle_after[1]})")
        print("soak: " + ("FAIL: " + "; ".join(failures) if failures else "PASS"))
        return 1 if failures else 0
    finally:
        background.join()
        if turnout is not None:
            turnout.kill() if not turnout.running() else turnout.stop()
        for b in backends:
            b.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
