"""namerd: how fast a dtab change reaches a linker, and what namerd's watches cost in memory.

    .venv/bin/python bench/namerd_bench.py [--names 1000] [--changes 20] [--watches 10000]
                                           [--deadline 300]

Starts (all on 127.0.0.1, free ports, a temporary directory) two tiny HTTP backends that
answer ``A`` and ``B``, ``turnout namerd`` with ``io.l5d.inMemory`` (namespace ``default``:
``/svc => /$/inet/127.0.0.1/<A>``) and one linker (``turnout run``) whose HTTP router binds
through ``io.l5d.namerd.http``. Then:

1. sends one request for each of ``--names`` distinct hosts through the linker, so the
   linker holds that many bind watches on namerd (how many bound, and the linker's
   ``watches`` gauge, are printed);
2. ``--changes`` times: reads the dtab (with its version), PUTs ``/svc`` pointing at the
   other backend (``If-Match``), and times until a request through the linker for the first
   name, and one for the last name, is answered by the new backend. p50/p99/max printed;
3. namerd's RSS (``/proc/<pid>/status`` VmRSS) at start, with the linker's watches, and with
   ``--watches`` more bind watches opened directly on ``/api/1/bind/default?watch=1`` for
   distinct names (as that many linkers' bindings would), and the RSS per watch.

Prints numbers; asserts nothing. Bounded by ``--deadline`` seconds; every process started is
stopped by PID when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "core" / "src"))

from turnout.namerd.client import NamerdClient  # noqa: E402
from turnout.naming import Dtab  # noqa: E402

HOST = "127.0.0.1"


#: the linker, with aiohttp's default connection limit replaced (io.l5d.namerd.http opens
#: one long-lived connection per watch through one ClientSession)
LINKER_WITH_LIMIT = """
import sys, aiohttp
_init = aiohttp.TCPConnector.__init__
def _patched(self, *a, limit=%d, **kw):
    _init(self, *a, limit=limit, **kw)
aiohttp.TCPConnector.__init__ = _patched
from turnout.cli import main
sys.exit(main(["run", sys.argv[1]]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def backend(name: str) -> tuple[ThreadingHTTPServer, int]:
    body = name.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        self.handle = log.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=self.handle, stderr=self.handle, stdin=subprocess.DEVNULL, env=env
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.handle.close()


def wait_ports(proc: Proc, ports: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(port_open(p) for p in ports):
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"did not start:\n{proc.log.read_text(errors='replace')}")
        time.sleep(0.05)


def get(port: int, host: str, timeout: float = 15.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)
    finally:
        conn.close()


def admin_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def open_watches(api: int, count: int, deadline: float) -> tuple[int, list[Any]]:
    """``count`` bind watches on namerd, each until its first document; returns how many
    answered and the open responses (to close later)."""
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    )
    sem = asyncio.Semaphore(200)  # connections being opened at once
    opened: list[Any] = []

    async def one(i: int) -> bool:
        async with sem:
            try:
                resp = await session.get(
                    f"http://{HOST}:{api}/api/1/bind/default",
                    params={"path": f"/svc/w-{i}", "watch": "1"},
                )
                opened.append(resp)
                line = await asyncio.wait_for(resp.content.readline(), 30)
                return bool(line)
            except (TimeoutError, aiohttp.ClientError, OSError):
                return False

    remaining = max(1.0, deadline - time.monotonic())
    try:
        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), remaining)
    except TimeoutError:
        results = []
    return sum(results), [session, *opened]


async def close_all(things: list[Any]) -> None:
    session, *responses = things
    for resp in responses:
        resp.close()
    await session.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--names", type=int, default=1000, help="names bound through the linker")
    ap.add_argument("--changes", type=int, default=20, help="dtab changes timed")
    ap.add_argument("--watches", type=int, default=10000, help="bind watches for the RSS figure")
    ap.add_argument("--deadline", type=float, default=300, help="seconds for the whole run")
    ap.add_argument(
        "--connector-limit",
        type=int,
        default=0,
        help="run the linker with aiohttp's connection limit set to this (0: no limit, the "
        "default here; io.l5d.namerd.http holds one connection per watch, and aiohttp's "
        "default limit of 100 stops it at ~100 watches); --as-shipped for core as it is",
    )
    ap.add_argument("--as-shipped", dest="connector_limit", action="store_const", const=None)
    args = ap.parse_args()
    end = time.monotonic() + args.deadline

    srv_a, port_a = backend("A")
    srv_b, port_b = backend("B")
    work = Path(tempfile.mkdtemp(prefix="namerd-bench-"))
    admin_n, api, admin_l, proxy = free_port(), free_port(), free_port(), free_port()
    import yaml

    (work / "namerd.yaml").write_text(
        yaml.safe_dump(
            {
                "admin": {"port": admin_n},
                "storage": {
                    "kind": "io.l5d.inMemory",
                    "namespaces": {"default": f"/svc => /$/inet/{HOST}/{port_a}"},
                },
                "interfaces": [{"kind": "io.l5d.httpController", "port": api}],
            }
        )
    )
    size = max(2 * args.names, 1000)
    (work / "linker.yaml").write_text(
        yaml.safe_dump(
            {
                "admin": {"port": admin_l},
                "routers": [
                    {
                        "protocol": "http",
                        "interpreter": {
                            "kind": "io.l5d.namerd.http",
                            "experimental": True,
                            "dst": f"/$/inet/{HOST}/{api}",
                            "namespace": "default",
                            "retry": {"baseSeconds": 1, "maxSeconds": 2},
                        },
                        "bindingCache": {
                            "paths": size,
                            "trees": size,
                            "bounds": size,
                            "clients": size,
                        },
                        "servers": [{"port": proxy}],
                    }
                ],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    py = sys.executable
    namerd = Proc([py, "-m", "turnout", "namerd", str(work / "namerd.yaml")], work / "n.log", env)
    if args.connector_limit is None:
        linker_cmd = [py, "-m", "turnout", "run", str(work / "linker.yaml")]
        print("linker: as shipped (aiohttp's default of 100 connections to namerd)")
    else:
        linker_cmd = [py, "-c", LINKER_WITH_LIMIT % args.connector_limit, str(work / "linker.yaml")]
        print(f"linker: aiohttp connection limit to namerd set to {args.connector_limit} (0: none)")
    linker: Proc | None = None
    try:
        wait_ports(namerd, [api, admin_n])
        linker = Proc(linker_cmd, work / "l.log", env)
        wait_ports(linker, [proxy, admin_l])
        time.sleep(0.5)
        pid = namerd.proc.pid
        rss_start = rss_kib(pid)
        print(f"namerd pid {pid}: RSS at start {rss_start / 1024:.1f} MiB, fds {open_fds(pid)}")

        # 1. bind --names names through the linker
        names = [f"n-{i}" for i in range(args.names)]
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda h: get(proxy, h, timeout=30), names))
        took = time.monotonic() - t0
        ok = sum(1 for status, body in answers if status == 200 and body == "A")
        failed = [f"{s} {b[:80]}" for s, b in answers if not (s == 200 and b == "A")]
        metrics = admin_json(admin_l, "/admin/metrics.json")
        gauge = {k: v for k, v in metrics.items() if k.endswith("io.l5d.namerd.http/watches")}
        print(
            f"bound {ok}/{len(names)} names through the linker in {took:.1f}s; linker watch "
            f"gauge {gauge}; namerd RSS {rss_kib(pid) / 1024:.1f} MiB, fds {open_fds(pid)}"
        )
        if failed:
            print(f"  first failures: {failed[:3]}")

        # 2. propagation of --changes dtab changes
        client = NamerdClient(f"http://{HOST}:{api}")
        first, last = names[0], names[-1]
        lat_first: list[float] = []
        lat_last: list[float] = []
        for i in range(args.changes):
            if time.monotonic() > end - 60:
                print("(deadline: fewer changes timed)")
                break
            target, port = ("B", port_b) if i % 2 == 0 else ("A", port_a)
            current = client.get("default")
            client.put("default", Dtab.read(f"/svc => /$/inet/{HOST}/{port}"), current.version)
            t0 = time.monotonic()
            seen: dict[str, float] = {}
            while len(seen) < 2 and time.monotonic() - t0 < 30:
                for name in (first, last):
                    if name not in seen and get(proxy, name)[1] == target:
                        seen[name] = time.monotonic() - t0
            if first in seen:
                lat_first.append(seen[first] * 1000)
            if last in seen:
                lat_last.append(seen[last] * 1000)
            time.sleep(0.2)
        for label, values in (
            (f"first name ({first})", lat_first),
            (f"last name ({last})", lat_last),
        ):
            if values:
                print(
                    f"dtab change → linker routes {label}: n={len(values)} "
                    f"p50 {statistics.median(values):.1f} ms, p99 {pct(values, 0.99):.1f} ms, "
                    f"max {max(values):.1f} ms"
                )
            else:
                print(f"dtab change → linker routes {label}: never seen within 30 s")

        # 3. namerd's RSS with --watches more bind watches
        linker.stop()
        linker = None
        time.sleep(1.0)
        rss_before = rss_kib(pid)
        t0 = time.monotonic()
        answered, opened = asyncio.run(_hold(api, args.watches, end, pid))
        print(
            f"{answered}/{args.watches} direct bind watches answered in "
            f"{time.monotonic() - t0:.1f}s"
        )
        rss_with, fds_with = opened
        print(
            f"namerd RSS: {rss_before / 1024:.1f} MiB without watches (after the linker "
            f"left), {rss_with / 1024:.1f} MiB with {answered} watches "
            f"({(rss_with - rss_before) / max(answered, 1):.1f} KiB per watch), fds {fds_with}"
        )
    finally:
        if linker is not None:
            linker.stop()
        namerd.stop()
        srv_a.shutdown()
        srv_b.shutdown()
    return 0


async def _hold(api: int, count: int, end: float, pid: int) -> tuple[int, tuple[int, int]]:
    answered, things = await open_watches(api, count, end - 10)
    await asyncio.sleep(1.0)
    measured = (rss_kib(pid), open_fds(pid))
    await close_all(things)
    return answered, measured


if __name__ == "__main__":
    sys.exit(main())
