"""Admin overhead: what scraping the metrics costs the HTTP data path.

    .venv/bin/python bench/admin_overhead.py [--duration 5] [--rounds 2] [--interval 0.1]
                                             [--services 10] [--connections 32] [--no-pin]
                                             [--endpoints /admin/metrics.json,...]

Starts (all on 127.0.0.1, free ports, a temporary directory) nginx as the backend and turnout
with an ``io.l5d.fs`` namer and the ``io.l5d.prometheus`` telemeter, sends one request to
``--services`` extra logical names (so the metrics tree holds as many more services and
clients), then drives turnout with ``wrk -t1 -c<connections> -d<duration>s`` ``--rounds``
times without scraping and as many times while a thread fetches ``/admin/metrics.json`` and
``/admin/metrics/prometheus`` every ``--interval`` seconds (alternating, A then B), and prints
the median requests/s of each, their ratio, the number of scrapes done and what one scrape
costs. The issue's target: scraping costs under 5% of the requests/s.

turnout is pinned to CPU 1, wrk and nginx to CPU 0 (as ``bench/http_bench.py`` does), when
the machine has two CPUs; the scraper thread (the "Prometheus" side) runs on CPU 0 too.
Every process started is stopped by PID when the run ends. Numbers vary with what else the
machine runs: the turnout CPU time per request is printed too.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from turnout.testing import DiscoDir, NginxBackend, TurnoutProcess, free_port, http_request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_bench import cpu_ticks, run_wrk  # bench/ is not a package

ENDPOINTS = ("/admin/metrics.json", "/admin/metrics/prometheus")


@dataclass
class Scraper:
    """A thread fetching every admin endpoint once per ``interval`` (keep-alive)."""

    port: int
    interval: float
    cpu: int | None = None
    endpoints: tuple[str, ...] = ENDPOINTS
    scrapes: int = 0
    errors: int = 0
    seconds: dict[str, list[float]] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Scraper:
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        if self.cpu is not None:
            os.sched_setaffinity(0, {self.cpu})  # this thread only: keep off turnout's CPU
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        start = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            for path in self.endpoints:
                t0 = time.perf_counter()
                try:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    body = response.read()
                    if response.status != 200:
                        self.errors += 1
                except (OSError, http.client.HTTPException):
                    self.errors += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    continue
                self.seconds.setdefault(path, []).append(time.perf_counter() - t0)
                self.size[path] = len(body)
            self.scrapes += 1
            tick += 1
            self._stop.wait(max(0.0, start + tick * self.interval - time.monotonic()))
        conn.close()


def scrape_cpu(admin: int, url: str, pid: int, endpoints: tuple[str, ...]) -> dict[str, float]:
    """turnout's CPU seconds per scrape of each endpoint (200 scrapes each, after a warm-up)."""
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    out: dict[str, float] = {}
    try:
        for path in endpoints:
            for _ in range(10):
                conn.request("GET", path)
                conn.getresponse().read()
            n = 200
            before = cpu_ticks(pid)
            for _ in range(n):
                http_request(port, "GET", "/", {"Host": "web"})
                conn.request("GET", path)
                conn.getresponse().read()
            # minus the requests' own cost, measured the same way without scraping
            middle = cpu_ticks(pid)
            for _ in range(n):
                http_request(port, "GET", "/", {"Host": "web"})
            after = cpu_ticks(pid)
            ticks = (middle - before) - (after - middle)
            out[path] = max(ticks, 0) / os.sysconf("SC_CLK_TCK") / n
    finally:
        conn.close()
    return out


def pin(pid: int, cpu: int | None) -> None:
    """Pin every thread of ``pid`` to ``cpu``."""
    if cpu is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each kind; medians reported")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between scrapes")
    p.add_argument("--services", type=int, default=10, help="extra services in the tree")
    p.add_argument(
        "--endpoints",
        default=",".join(ENDPOINTS),
        help="comma-separated admin paths to scrape (default: both)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    args = p.parse_args()
    endpoints = tuple(e for e in args.endpoints.split(",") if e)
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"admin_overhead: {tool} is not installed", file=sys.stderr)
            return 2
    load = os.getloadavg()
    many = (os.cpu_count() or 1) >= 2 and not args.no_pin
    load_cpu, proxy_cpu = (0, 1) if many else (None, None)
    work = Path(tempfile.mkdtemp(prefix="turnout-admin-bench-"))
    backend = NginxBackend("web", workdir=work / "nginx")
    turnout: TurnoutProcess | None = None
    try:
        backend.start()
        assert backend.proc is not None
        pin(backend.proc.pid, load_cpu)
        disco = DiscoDir(work / "disco")
        disco.write("web", backend)
        for i in range(args.services):
            disco.write(f"svc{i}", backend)
        port, admin = free_port(), free_port()
        config = {
            "admin": {"port": admin},
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco.root)}],
            "routers": [
                {
                    "protocol": "http",
                    "dtab": "/svc => /#/io.l5d.fs;",
                    "servers": [{"ip": "127.0.0.1", "port": port}],
                }
            ],
            "telemetry": [{"kind": "io.l5d.prometheus"}],
        }
        turnout = TurnoutProcess(yaml.safe_dump(config), workdir=work / "turnout").start()
        pin(turnout.pid, proxy_cpu)
        for i in range(args.services):
            http_request(port, "GET", "/", {"Host": f"svc{i}"})
        url = f"http://127.0.0.1:{port}/"
        warm = argparse.Namespace(connections=8, duration=2)
        run_wrk(url, "web", warm, load_cpu)  # bind, pools, caches
        wrk_args = argparse.Namespace(connections=args.connections, duration=args.duration)

        plain: list[float] = []
        scraped: list[float] = []
        cpu_plain: list[float] = []
        cpu_scraped: list[float] = []
        scrapers: list[Scraper] = []
        for _ in range(args.rounds):
            for with_scraper in (False, True):
                scraper = (
                    Scraper(admin, args.interval, load_cpu, endpoints).start()
                    if with_scraper
                    else None
                )
                before = cpu_ticks(turnout.pid)
                result = run_wrk(url, "web", wrk_args, load_cpu)
                used = (cpu_ticks(turnout.pid) - before) / os.sysconf("SC_CLK_TCK")
                if scraper is not None:
                    scraper.stop()
                    scrapers.append(scraper)
                requests = result.rps * args.duration
                per_request = used / requests * 1e6 if requests else float("nan")
                (scraped if with_scraper else plain).append(result.rps)
                (cpu_scraped if with_scraper else cpu_plain).append(per_request)
                if result.errors:
                    print(f"warning: wrk reported {result.errors} errors", file=sys.stderr)

        a, b = statistics.median(plain), statistics.median(scraped)
        total = sum(s.scrapes for s in scrapers)
        errors = sum(s.errors for s in scrapers)
        print(
            f"\nHTTP/1.1 GET through turnout, wrk -t1 -c{args.connections} -d{args.duration}s, "
            f"{args.rounds} round(s), medians; turnout "
            f"{'pinned to CPU 1, wrk and nginx to CPU 0' if many else 'not pinned'}; "
            f"{args.services + 1} services in the tree\n"
        )
        print(f"{'run':<48}{'req/s':>10}{'CPU µs/req':>12}   (each round)")
        print(
            f"{'no scraping':<48}{a:>10,.0f}{statistics.median(cpu_plain):>12.1f}   "
            + ", ".join(f"{x:,.0f}" for x in plain)
        )
        which = "both" if set(endpoints) == set(ENDPOINTS) else "+".join(endpoints)
        label = f"scraping {which} every {args.interval * 1000:.0f} ms"
        print(
            f"{label:<48}{b:>10,.0f}{statistics.median(cpu_scraped):>12.1f}   "
            + ", ".join(f"{x:,.0f}" for x in scraped)
        )
        overhead = (1 - b / a) * 100 if a else float("nan")
        cpu_a, cpu_b = statistics.median(cpu_plain), statistics.median(cpu_scraped)
        print(
            f"\nratio scraped/plain: {b / a:.3f} (overhead {overhead:.1f}%; target < 5%)"
            f"\nturnout CPU per request: {(cpu_b / cpu_a - 1) * 100:+.1f}% with scraping (steadier "
            f"than req/s, which moves with whatever else the machine runs; load average at "
            f"start {load[0]:.2f})"
            f"\nscrapes done: {total} (each = {len(endpoints)} endpoint(s); {errors} errors) in "
            f"{args.rounds * args.duration} s of load"
        )
        for path in endpoints:
            times = [t for s in scrapers for t in s.seconds.get(path, [])]
            size = max((s.size.get(path, 0) for s in scrapers), default=0)
            if times:
                print(
                    f"{path}: {size:,} bytes, median {statistics.median(times) * 1000:.2f} ms, "
                    f"max {max(times) * 1000:.2f} ms per scrape (seen by the scraper, under load)"
                )
        # The steadiest figure: turnout's own CPU time per scrape, measured with no load (a
        # request between scrapes keeps one service's histograms changing, as under load).
        costs = scrape_cpu(admin, url, turnout.pid, endpoints)
        per_second = sum(costs.values()) / args.interval
        for path, cost in costs.items():
            print(f"{path}: {cost * 1000:.2f} ms of turnout CPU per scrape (measured idle)")
        print(
            f"scraping every {args.interval * 1000:.0f} ms therefore takes "
            f"{per_second * 100:.1f}% of one core from the data path"
        )
        return 0
    finally:
        if turnout is not None:
            turnout.kill()
        backend.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
