"""What ``workers: N`` costs in service-discovery traffic: each worker watches on its own.

    .venv/bin/python bench/workers_discovery.py [--workers 1,2,4] [--window 20]
                                                [--services 20] [--instances 3]
                                                [--conns 10] [--wait-ms 10000]

``workers: N`` runs N share-nothing workers, each with its own namers (docs/operations.md,
"Workers"), so every worker holds its own Consul blocking query per watched service. This
measures what that costs against the Consul API double. Everything runs on 127.0.0.1, on free
ports, in a temporary directory:

1. the Consul API double as its own process (``python -m turnout_namer_consul.testing
   --port P``), with ``--services`` services (``svc0``, ``svc1``...) of ``--instances``
   instances each, registered through its control API (``POST /test/control`` ``register``),
   every instance pointing at one of ``--instances`` tiny HTTP backends;
2. for each N of ``--workers``: ``python -m turnout run CONFIG`` with one ``protocol: http``
   router, the ``io.l5d.consul`` namer (``blockingWaitMs: --wait-ms``) and the dtab
   ``/svc => /#/io.l5d.consul/dc1`` (``workers: N`` for N > 1; N = 1 is a plain single
   process, no supervisor); waits for ``/admin/ready``, then sends ``--conns`` requests per
   service, each on a NEW connection (``Host: svcK``), and checks that every worker's own
   metrics (``/admin/metrics.json?worker=i`` on the supervisor) show a load balancer of
   ``--instances`` endpoints for every service, i.e. every worker watches every service
   (more requests are sent to the services some worker lacks, up to a bound);
3. idle for ``--window`` seconds, measured:

   - **consul req/s**: API requests (``/v1/...``) the double logged in the window, divided by
     the window. The double records every ``/v1`` request it receives (its ``requests``
     control, cleared with ``clear_requests`` at the window's start); idle, these are the
     blocking queries re-issued when their ``wait`` ends, so about watches / wait;
   - **blocked**: blocking queries held open by the double at the window's end (its
     ``blocked`` control): the number of watches;
   - **conns**: established TCP connections from the turnout process tree to the double's
     port (``/proc/net/tcp``, matched to the tree's sockets through ``/proc/<pid>/fd``);
   - **idle CPU %**: utime + stime of the supervisor and its workers (``/proc/<pid>/stat``,
     the whole process tree) over the window, as a percentage of one core;

4. one change: deregisters one instance of ``svc0`` (timestamped just before the control
   call) and polls every worker's metrics until its ``svc0`` balancer has one endpoint fewer;
   the propagation time is the slowest worker's. **req/change** is the number of API
   requests the double logged in the 2 s after the change (the double, like Consul, wakes
   every blocked query on any write, so every watch of every worker answers and re-issues).

Prints a table; asserts nothing. Every process started is stopped by PID. The machine's
other load shows in the CPU and propagation columns: read them as a comparison between rows
of one run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CONSUL_PLUGIN_SRC = ROOT / "plugins" / "turnout-namer-consul" / "src"


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


def backend(name: str) -> tuple[ThreadingHTTPServer, int]:
    """A tiny HTTP server answering ``name`` to every GET."""
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
    """A subprocess with its output in a log file, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.handle = log.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=self.handle, stderr=self.handle, stdin=subprocess.DEVNULL, env=env
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class Consul:
    """The control API of the Consul double process (``POST /test/control``)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def control(self, op: str, **args: Any) -> Any:
        data = json.dumps({"op": op, "args": args}).encode()
        req = urllib.request.Request(
            f"http://{HOST}:{self.port}/test/control",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=15) as r:
            return json.loads(r.read())["result"]


def http_get(port: int, path: str, host: str = HOST, timeout: float = 10.0) -> tuple[int, bytes]:
    """One GET on a new connection: (status, body); status 0 when the connection failed."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError as e:
        return 0, str(e).encode()
    finally:
        conn.close()


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (a supervisor and its workers)."""
    out: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            kids = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        out.append(current)
        stack.extend(int(k) for k in kids)
    return out


def tree_ticks(pid: int) -> int:
    """CPU ticks of ``pid`` and all its descendants."""
    total = 0
    for p in tree_pids(pid):
        try:
            total += cpu_ticks(p)
        except OSError:
            continue
    return total


def socket_inodes(pids: list[int]) -> set[str]:
    inodes: set[str] = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def connections_to(port: int, pids: list[int]) -> int:
    """Established TCP connections to 127.0.0.1:``port`` owned by ``pids`` (/proc/net/tcp)."""
    inodes = socket_inodes(pids)
    remote = f"0100007F:{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        # sl local rem st ... inode (10th field)
        if parts[2] == remote and parts[3] == "01" and parts[9] in inodes:
            count += 1
    return count


def worker_metrics(admin: int, worker: int | None) -> dict[str, Any]:
    path = "/admin/metrics.json" if worker is None else f"/admin/metrics.json?worker={worker}"
    status, body = http_get(admin, path)
    if status != 200:
        return {}
    data: dict[str, Any] = json.loads(body)
    return data


def balancer_sizes(metrics: dict[str, Any], services: list[str]) -> dict[str, int]:
    """The ``loadbalancer/size`` gauge of each service's client (absent: not bound)."""
    sizes: dict[str, int] = {}
    for key, value in metrics.items():
        if not key.endswith("/loadbalancer/size"):
            continue
        for svc in services:
            if f"/io.l5d.consul/dc1/{svc}/" in key:
                sizes[svc] = int(value)
    return sizes


CONFIG = """\
{workers}admin:
  ip: 127.0.0.1
  port: {admin}
namers:
- kind: io.l5d.consul
  host: 127.0.0.1
  port: {consul}
  blockingWaitMs: {wait_ms}
routers:
- protocol: http
  dtab: |
    /svc => /#/io.l5d.consul/dc1;
  servers:
  - ip: 127.0.0.1
    port: {port}
"""


def run_one(
    n: int, args: argparse.Namespace, consul: Consul, work: Path, services: list[str]
) -> dict[str, Any]:
    port, admin = free_port(), free_port()
    config = work / f"workers{n}.yaml"
    config.write_text(
        CONFIG.format(
            workers=f"workers: {n}\n" if n > 1 else "",
            admin=admin,
            consul=consul.port,
            wait_ms=args.wait_ms,
            port=port,
        )
    )
    env = dict(os.environ)
    proc = Proc(
        [sys.executable, "-m", "turnout", "run", str(config)], work / f"workers{n}.log", env
    )
    try:
        deadline = time.monotonic() + 90
        while http_get(admin, "/admin/ready", timeout=2)[0] != 200:
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"turnout (workers {n}) did not get ready:\n{proc.output()}")
            time.sleep(0.1)
        workers: list[int | None] = list(range(n)) if n > 1 else [None]
        if n > 1:
            status, body = http_get(admin, "/admin/workers.json")
            workers = [int(w["index"]) for w in json.loads(body)]

        # every worker binds every service: requests on new connections until each worker's
        # own metrics show a full balancer for each service (bounded)
        missing = list(services)
        rounds = 0
        failed = 0
        while missing and rounds < 10:
            for svc in missing:
                for _ in range(args.conns):
                    status, _body = http_get(port, "/", host=svc)
                    failed += status != 200
            rounds += 1
            missing = []
            for w in workers:
                sizes = balancer_sizes(worker_metrics(admin, w), services)
                missing += [s for s in services if sizes.get(s) != args.instances]
            missing = sorted(set(missing))
        if missing:
            print(f"  workers {n}: not every worker bound {missing} after {rounds} round(s)")
        if failed:
            print(f"  workers {n}: {failed} request(s) answered non-200 while binding")

        # idle window
        time.sleep(1.0)  # let the binding burst's answers settle
        pids = tree_pids(proc.pid)
        consul.control("clear_requests")
        t0 = time.monotonic()
        ticks0 = tree_ticks(proc.pid)
        time.sleep(args.window)
        ticks1 = tree_ticks(proc.pid)
        elapsed = time.monotonic() - t0
        requests = consul.control("requests", path="/v1/")
        blocked = int(consul.control("blocked"))
        conns = connections_to(consul.port, pids)
        cpu_pct = (ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / elapsed * 100

        # one change: deregister one instance of svc0; time until every worker saw it
        target = services[0]
        consul.control("clear_requests")
        changed_at = time.monotonic()
        consul.control("deregister", service_id=f"{target}-0")
        seen: dict[int | None, float] = {}
        limit = time.monotonic() + 30
        while len(seen) < len(workers) and time.monotonic() < limit:
            for w in workers:
                if w in seen:
                    continue
                size = balancer_sizes(worker_metrics(admin, w), [target]).get(target)
                if size == args.instances - 1:
                    seen[w] = time.monotonic() - changed_at
            time.sleep(0.005)
        wake_until = changed_at + 2.0
        time.sleep(max(0.0, wake_until - time.monotonic()))
        change_requests = len(consul.control("requests", path="/v1/"))
        # put it back for the next row
        consul.control(
            "register",
            name=target,
            port=args.backend_ports[0],
            service_id=f"{target}-0",
            address=HOST,
        )
        return {
            "workers": n,
            "rps": len(requests) / elapsed,
            "requests": len(requests),
            "blocked": blocked,
            "conns": conns,
            "cpu": cpu_pct,
            "propagation_ms": max(seen.values()) * 1000 if len(seen) == len(workers) else None,
            "change_requests": change_requests,
            "processes": len(pids),
        }
    finally:
        proc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--window", type=float, default=20.0, help="idle window, seconds")
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--instances", type=int, default=3, help="instances per service")
    parser.add_argument("--conns", type=int, default=10, help="new connections per service")
    parser.add_argument(
        "--wait-ms", type=int, default=10000, help="the namer's blockingWaitMs (default 10000)"
    )
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    if args.instances < 2:
        parser.error("--instances must be at least 2 (one is deregistered)")

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(CONSUL_PLUGIN_SRC), env.get("PYTHONPATH", "")) if p
    )
    backends = [backend(f"b{i}") for i in range(args.instances)]
    args.backend_ports = [p for _, p in backends]
    services = [f"svc{i}" for i in range(args.services)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="workers-discovery-") as temp:
        work = Path(temp)
        consul_port = free_port()
        double = Proc(
            [
                sys.executable,
                "-m",
                "turnout_namer_consul.testing",
                "--host",
                HOST,
                "--port",
                str(consul_port),
            ],
            work / "consul.log",
            env,
        )
        try:
            deadline = time.monotonic() + 30
            while not port_open(consul_port):
                if double.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"consul double did not start:\n{double.output()}")
                time.sleep(0.05)
            consul = Consul(consul_port)
            for svc in services:
                for i, bport in enumerate(args.backend_ports):
                    consul.control(
                        "register", name=svc, port=bport, service_id=f"{svc}-{i}", address=HOST
                    )
            for n in counts:
                row = run_one(n, args, consul, work, services)
                rows.append(row)
        finally:
            double.stop()
            for server, _ in backends:
                server.shutdown()
                server.server_close()

    print(
        f"\n{args.services} services x {args.instances} instances, io.l5d.consul "
        f"blockingWaitMs {args.wait_ms}, idle window {args.window:g} s, "
        f"{os.cpu_count()} CPUs"
    )
    header = (
        f"{'workers':>7} {'consul req/s':>12} {'blocked':>8} {'conns to consul':>15} "
        f"{'idle CPU %':>10} {'propagation ms':>14} {'req/change':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        prop = f"{r['propagation_ms']:.0f}" if r["propagation_ms"] is not None else "-"
        print(
            f"{r['workers']:>7} {r['rps']:>12.2f} {r['blocked']:>8} {r['conns']:>15} "
            f"{r['cpu']:>10.1f} {prop:>14} {r['change_requests']:>10}"
        )
    print(
        "\nconsul req/s: /v1 requests the double logged in the window / window; blocked: "
        "blocking queries held at its end;\nconns: established TCP connections from the "
        "turnout process tree to the double; idle CPU %: the tree's utime+stime over the "
        "window\n(100 = one core); propagation: deregistration of one instance until the "
        "slowest worker's balancer shrank;\nreq/change: /v1 requests in the 2 s after it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
