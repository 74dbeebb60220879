"""HTTP/2 benchmark: h2load through nginx (``grpc_pass``) and through turnout's h2 router.

    ./dev bench            (runs this after the HTTP/1.1 tables)
    .venv/bin/python bench/h2_bench.py [--duration 8] [--rounds 2] [--no-pin]

Starts (all on 127.0.0.1, each on its own free port, in a temporary directory):

- an h2c nginx backend answering ``200 ok`` (``listen ... http2``, prior knowledge),
- nginx as the reference HTTP/2 proxy: one worker, ``listen ... http2`` and ``grpc_pass`` to the
  backend with an upstream keep-alive pool,
- turnout with one ``protocol: h2`` router (identifier, binding cache, balancer, stats,
  classifier: the whole stack) to the same backend,
- turnout with one ``protocol: http`` router to an HTTP/1.1 nginx backend, driven by wrk, for
  turnout's own HTTP/1.1 CPU per request in the same run (the issue's yardstick: the h2 path
  should cost at most twice that per request),

pins the proxies to CPU 1 and the load generator plus the backends to CPU 0 when the machine
has two or more CPUs, drives each h2 target with ``h2load -c16 -m8 -D<duration>`` (16
connections, 8 concurrent streams each), and prints requests/s, mean request time, the proxy's
CPU time per request and how busy it kept its CPU, and turnout/nginx ratios. Medians over the
rounds. Every process it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_bench import _child, cpu_ticks, free_port, peak_rss_mb, pinned, wait_port

TICK = os.sysconf("SC_CLK_TCK")


def h2load(url: str, duration: int, cpu: int | None) -> tuple[float, float, int]:
    """(requests/s, mean ms per request, failed) from ``h2load -c16 -m8``."""
    argv = ["h2load", "-c16", "-m8", "-t1", f"-D{duration}", url]
    out = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, timeout=duration + 60)
    text = out.stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", text)
    failed = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    if rps is None or mean is None or failed is None:
        raise RuntimeError(f"h2load said:\n{text}\n{out.stderr}")
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", mean.group(1))
    assert m is not None
    ms = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return float(rps.group(1)), ms, sum(int(g) for g in failed.groups())


def wrk(url: str, duration: int, cpu: int | None) -> float:
    argv = ["wrk", "-t1", "-c32", f"-d{duration}s", url]
    out = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found is not None, out
    return float(found.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=8, help="seconds per run (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="rounds; medians are reported")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    args, _ = p.parse_known_args()  # (./dev bench passes the HTTP/1.1 bench's options too)
    for tool in ("nginx", "h2load", "wrk"):
        if shutil.which(tool) is None:
            print(f"h2 bench: {tool} is not installed (./dev bench installs it)", file=sys.stderr)
            return 2
    many = (os.cpu_count() or 1) >= 2 and not args.no_pin
    load_cpu, proxy_cpu = (0, 1) if many else (None, None)
    work = Path(tempfile.mkdtemp(prefix="turnout-h2-bench-"))
    backend, backend_h1, nginx_port, turnout_port, admin, http_port, http_admin = (
        free_port() for _ in range(7)
    )
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], log: str, cpu: int | None) -> subprocess.Popen[bytes]:
        with open(work / log, "wb") as out:
            proc = subprocess.Popen(
                pinned(cpu, argv), stdout=out, stderr=subprocess.STDOUT, cwd=work
            )
        procs.append(proc)
        return proc

    try:
        for d in ("b", "p", "f", "u", "s"):
            (work / d).mkdir()
        temp = " ".join(
            f"{k}_temp_path {work / d};"
            for k, d in (
                ("client_body", "b"),
                ("proxy", "p"),
                ("fastcgi", "f"),
                ("uwsgi", "u"),
                ("scgi", "s"),
            )
        )
        common = (
            "worker_processes 1; daemon off; error_log stderr warn; "
            "events { worker_connections 4096; }"
        )
        (work / "backend.conf").write_text(
            f"{common} pid {work}/backend.pid; http {{ access_log off; {temp} "
            "keepalive_requests 1000000; "
            f'server {{ listen 127.0.0.1:{backend} http2; location / {{ return 200 "ok\\n"; }} }} '
            f'server {{ listen 127.0.0.1:{backend_h1}; location / {{ return 200 "ok\\n"; }} }} }}'
        )
        (work / "proxy.conf").write_text(
            f"{common} pid {work}/proxy.pid; http {{ access_log off; {temp} "
            "keepalive_requests 1000000; "
            f"upstream be {{ server 127.0.0.1:{backend}; keepalive 512; "
            "keepalive_requests 1000000; } "
            f"server {{ listen 127.0.0.1:{nginx_port} http2; "
            "location / { grpc_pass grpc://be; } } }"
        )
        (work / "h2.yaml").write_text(
            f"admin: {{port: {admin}}}\n"
            "routers:\n- protocol: h2\n"
            f"  dtab: /svc => /$/inet/127.0.0.1/{backend}\n"
            f"  servers: [{{port: {turnout_port}}}]\n"
        )
        (work / "http.yaml").write_text(
            f"admin: {{port: {http_admin}}}\n"
            "routers:\n- protocol: http\n"
            f"  dtab: /svc => /$/inet/127.0.0.1/{backend_h1}\n"
            f"  servers: [{{port: {http_port}}}]\n"
        )
        start(["nginx", "-p", str(work), "-c", str(work / "backend.conf")], "backend.log", load_cpu)
        nginx = start(
            ["nginx", "-p", str(work), "-c", str(work / "proxy.conf")], "proxy.log", proxy_cpu
        )
        turnout = start(
            [sys.executable, "-m", "turnout", "run", str(work / "h2.yaml")], "h2.log", proxy_cpu
        )
        http = start(
            [sys.executable, "-m", "turnout", "run", str(work / "http.yaml")], "http.log", proxy_cpu
        )
        for port in (backend, backend_h1, nginx_port, turnout_port, http_port):
            wait_port(port, 30.0)
        targets = [
            ("direct", backend, None),
            ("nginx h2", nginx_port, _child(nginx.pid) or nginx.pid),
            ("turnout h2", turnout_port, turnout.pid),
        ]
        results: dict[str, list[tuple[float, float, int, float | None, float | None]]] = {
            name: [] for name, _, _ in targets
        }
        http_cpu: list[float] = []
        for url in (f"http://127.0.0.1:{p}/" for _, p, _ in targets):  # warm up
            h2load(url, 2, load_cpu)
        wrk(f"http://127.0.0.1:{http_port}/", 2, load_cpu)
        for _ in range(args.rounds):
            for name, port, pid in targets:
                before = cpu_ticks(pid) if pid else 0
                rps, mean, failed = h2load(f"http://127.0.0.1:{port}/", args.duration, load_cpu)
                cpu = (cpu_ticks(pid) - before) / TICK if pid else None
                per_req = cpu / (rps * args.duration) * 1e6 if cpu is not None and rps else None
                busy = cpu / args.duration if cpu is not None else None
                results[name].append((rps, mean, failed, per_req, busy))
            before = cpu_ticks(http.pid)
            rps = wrk(f"http://127.0.0.1:{http_port}/", args.duration, load_cpu)
            http_cpu.append((cpu_ticks(http.pid) - before) / TICK / (rps * args.duration) * 1e6)

        def med(name: str, i: int) -> float:
            values = [r[i] for r in results[name] if r[i] is not None]
            return statistics.median(values) if values else float("nan")  # type: ignore[type-var]

        print(
            f"\nHTTP/2: h2load -c16 -m8, {args.duration}s x {args.rounds} rounds (medians); "
            f"proxies {'pinned to CPU 1' if many else 'unpinned'}"
        )
        print(
            f"{'target':<12} {'req/s':>10} {'mean ms':>9} {'failed':>7} {'CPU µs/req':>11} {'CPU busy':>9}"
        )
        for name, _, pid in targets:
            per = med(name, 3)
            busy = med(name, 4)
            print(
                f"{name:<12} {med(name, 0):>10.0f} {med(name, 1):>9.2f} {int(med(name, 2)):>7} "
                f"{'-' if pid is None else f'{per:.1f}':>11} "
                f"{'-' if pid is None else f'{busy * 100:.0f}%':>9}"
            )
        ratio = med("turnout h2", 0) / med("nginx h2", 0)
        h1 = statistics.median(http_cpu)
        print(f"turnout h2 / nginx h2 requests/s: {ratio:.2f} (goal ≥ 0.40)")
        print(
            f"turnout h2 CPU per request / turnout HTTP/1.1 (wrk -c32, same run, "
            f"{h1:.1f} µs): {med('turnout h2', 3) / h1:.2f} (goal ≤ 2)"
        )
        print(f"turnout h2 peak RSS: {peak_rss_mb(turnout.pid):.1f} MB")
        if os.environ.get("H2_BENCH_LOGS"):
            for log in sorted(work.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}")
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
