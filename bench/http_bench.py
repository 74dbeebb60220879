"""HTTP/1.1 benchmark: direct to nginx, through nginx as a proxy, and through turnout.

    ./dev bench [--duration 8] [--connections 32] [--rounds 2]

Starts (all on 127.0.0.1, each on its own free port, in a temporary directory):

- an nginx backend answering ``200 ok`` (installed by ``./dev bench`` when missing),
- nginx as the reference proxy (one worker, upstream keep-alive),
- turnout with the full stack (identifier, binding cache, balancer, stats, classifier), pure
  Python as installed, and with ``--compiled`` also the same code compiled with mypyc
  (``TURNOUT_COMPILE=1``; built once into ``.venv/turnout-compiled``),

pins the proxies to CPU 1 and wrk plus the backend to CPU 0 when the machine has two or more
CPUs, drives each target with ``wrk -t1 -c<connections> -d<duration>s --latency``, and prints
requests/s, p50 and p99 per target, turnout/nginx ratios and turnout's peak RSS. Every process
it starts is stopped by PID. Numbers vary with what else the machine runs: the script also
prints the CPU time the proxies used per request, the most stable figure.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", str(cpu), *argv]


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_req: float | None = None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, host: str | None, args: argparse.Namespace, cpu: int | None) -> Result:
    argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if host:
        argv += ["-H", f"Host: {host}"]
    out = subprocess.run(
        pinned(cpu, [*argv, url]), capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (
        r"Non-2xx or 3xx responses: (\d+)",
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
    ):
        m = re.search(pattern, out)
        if m:
            errors += sum(int(g) for g in m.groups())
    return Result(url, rps, p50, p99, errors)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measured(pid: int, fn: object) -> tuple[Result, float]:
    before = cpu_ticks(pid)
    result: Result = fn()  # type: ignore[operator]
    used = (cpu_ticks(pid) - before) / os.sysconf("SC_CLK_TCK")
    total = result.rps * float(ARGS.duration)
    result.cpu_us_per_req = used / total * 1e6 if total else None
    return result, used


def main() -> int:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=8, help="seconds per wrk run (default 8)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--rounds", type=int, default=2, help="rounds; medians are reported")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument(
        "--compiled",
        action="store_true",
        help="also run turnout with its data path compiled by mypyc",
    )
    ARGS = args = p.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (./dev bench installs it)", file=sys.stderr)
            return 2
    many = (os.cpu_count() or 1) >= 2 and not args.no_pin
    load_cpu, proxy_cpu = (0, 1) if many else (None, None)
    work = Path(tempfile.mkdtemp(prefix="turnout-bench-"))
    backend, nginx_proxy, turnout_port, admin_port, compiled_port, compiled_admin = (
        free_port() for _ in range(6)
    )
    compiled_path = build_compiled() if args.compiled else None
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        argv: list[str], log: str, cpu: int | None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(work / log, "wb") as out:
            proc = subprocess.Popen(
                pinned(cpu, argv), stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env
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
        common = "worker_processes 1; daemon off; error_log stderr warn; events { worker_connections 4096; }"
        (work / "backend.conf").write_text(
            f"{common} pid {work}/backend.pid; http {{ access_log off; {temp} "
            f'server {{ listen 127.0.0.1:{backend}; location / {{ return 200 "ok\\n"; }} }} }}'
        )
        (work / "proxy.conf").write_text(
            f"{common} pid {work}/proxy.pid; http {{ access_log off; {temp} "
            f"upstream be {{ server 127.0.0.1:{backend}; keepalive 512; }} "
            f"server {{ listen 127.0.0.1:{nginx_proxy}; location / {{ proxy_pass http://be; "
            f'proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}'
        )
        (work / "disco").mkdir()
        (work / "disco" / "web").write_text(f"127.0.0.1 {backend}\n")
        for name, port, admin in (
            ("turnout", turnout_port, admin_port),
            ("compiled", compiled_port, compiled_admin),
        ):
            (work / f"{name}.yaml").write_text(
                f"admin: {{port: {admin}}}\n"
                f"namers: [{{kind: io.l5d.fs, rootDir: {work / 'disco'}}}]\n"
                "routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n"
                f"  servers: [{{port: {port}}}]\n"
            )
        start(["nginx", "-p", str(work), "-c", str(work / "backend.conf")], "backend.log", load_cpu)
        nginx = start(
            ["nginx", "-p", str(work), "-c", str(work / "proxy.conf")], "proxy.log", proxy_cpu
        )
        turnout = start(
            [sys.executable, "-m", "turnout", "run", str(work / "turnout.yaml")],
            "turnout.log",
            proxy_cpu,
        )
        compiled = None
        if compiled_path is not None:
            env = {**os.environ, "PYTHONPATH": str(compiled_path)}
            argv = [sys.executable, "-m", "turnout", "run", str(work / "compiled.yaml")]
            compiled = start(argv, "compiled.log", proxy_cpu, env)
        for port in (backend, nginx_proxy, turnout_port, *([compiled_port] if compiled else [])):
            wait_port(port)
        nginx_worker = _child(nginx.pid) or nginx.pid
        targets = [
            ("direct", f"http://127.0.0.1:{backend}/", None, None),
            ("nginx", f"http://127.0.0.1:{nginx_proxy}/", None, nginx_worker),
            ("turnout", f"http://127.0.0.1:{turnout_port}/", "web", turnout.pid),
        ]
        if compiled is not None:
            targets.append(("compiled", f"http://127.0.0.1:{compiled_port}/", "web", compiled.pid))
        for _, url, host, _ in targets[2:]:  # warm up (binding, connection pools, caches)
            subprocess.run(
                ["wrk", "-t1", "-c8", "-d2s", "-H", f"Host: {host}", url],
                capture_output=True,
                check=True,
            )
        runs: dict[str, list[Result]] = {name: [] for name, *_ in targets}
        for _ in range(args.rounds):
            for name, url, host, pid in targets:
                if pid is None:
                    result = run_wrk(url, host, args, load_cpu)
                else:
                    result, _ = measured(
                        pid, lambda url=url, host=host: run_wrk(url, host, args, load_cpu)
                    )
                runs[name].append(result)
        rss = {"turnout": peak_rss_mb(turnout.pid)}
        if compiled is not None:
            rss["compiled"] = peak_rss_mb(compiled.pid)
        print(
            f"\nHTTP/1.1 GET, keep-alive, wrk -t1 -c{args.connections} -d{args.duration}s, "
            f"{args.rounds} round(s), medians; proxies {'pinned to CPU 1' if many else 'not pinned'}\n"
        )
        print(
            f"{'target':<10}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'CPU µs/req':>12}"
        )
        med: dict[str, Result] = {}
        for name, results in runs.items():
            cpu = [r.cpu_us_per_req for r in results if r.cpu_us_per_req]
            m = Result(
                name,
                statistics.median(r.rps for r in results),
                statistics.median(r.p50_ms for r in results),
                statistics.median(r.p99_ms for r in results),
                sum(r.errors for r in results),
                statistics.median(cpu) if cpu else None,
            )
            med[name] = m
            cpu_text = f"{m.cpu_us_per_req:.1f}" if m.cpu_us_per_req else "-"
            print(
                f"{name:<10}{m.rps:>12,.0f}{m.p50_ms:>10.3f}{m.p99_ms:>10.3f}{m.errors:>8}{cpu_text:>12}"
            )
        n = med["nginx"]
        print()
        for name in rss:
            t = med[name]
            cpu = (
                f", CPU per request {t.cpu_us_per_req / n.cpu_us_per_req:.2f}x"
                if t.cpu_us_per_req and n.cpu_us_per_req
                else ""
            )
            print(
                f"{name}/nginx: requests/s {t.rps / n.rps:.2f}, p99 {t.p99_ms / n.p99_ms:.2f}x{cpu}; "
                f"peak RSS {rss[name]:.1f} MB"
            )
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(
                    signal.SIGTERM if proc.args[-1].endswith(".yaml") else signal.SIGQUIT
                )
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def build_compiled() -> Path:
    """The plugin compiled with mypyc, installed into a directory (built once per source)."""
    plugin = ROOT / "plugins" / "turnout-protocol-http"
    digest = hashlib.sha1()
    for f in sorted((plugin / "src").rglob("*.py")):
        digest.update(f.read_bytes())
    target = Path(sys.prefix) / "turnout-compiled" / digest.hexdigest()[:12]
    if not (target / "turnout_protocol_http").exists():
        print(
            "bench: compiling the HTTP data path with mypyc (once; about a minute)...", flush=True
        )
        env = {**os.environ, "TURNOUT_COMPILE": "1"}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(target),
                str(plugin),
            ],
            env=env,
            check=True,
        )
    return target


def _child(pid: int) -> int | None:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


ARGS: argparse.Namespace

if __name__ == "__main__":
    sys.exit(main())
