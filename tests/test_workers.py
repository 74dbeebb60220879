"""``workers: N`` end to end, real processes only (a supervisor, its workers, HTTP backends on
127.0.0.1): two workers serve one port and both take requests; the admin totals equal the
requests sent; a worker killed loses only its in-flight requests and is back within seconds;
SIGTERM drains every worker with no failed request; a worker that cannot start is given up
after a bounded number of tries; ``--workers 1`` is a single turnout; what workers cannot run
is refused at start.

Every worker is stopped by PID at teardown too (besides dying with its supervisor)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from turnout.testing import DiscoDir, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]


def config(disco: DiscoDir, port: int, admin: int, workers: int | str = 2) -> str:
    return f"""
admin:
  port: {admin}
  shutdownGraceMs: 10000
workers: {workers}
namers:
- kind: io.l5d.fs
  rootDir: {disco.root}
routers:
- protocol: http
  dtab: /svc => /#/io.l5d.fs
  servers:
  - port: {port}
"""


def admin_json(proc: Any, path: str) -> Any:
    with urllib.request.urlopen(proc.admin_url + path, timeout=10) as r:
        return json.loads(r.read())


def ready(proc: Any) -> bool:
    try:
        with urllib.request.urlopen(proc.admin_url + "/admin/ready", timeout=5) as r:
            return r.status == 200
    except urllib.error.HTTPError as e:  # 503 while starting: close its socket now
        e.close()
        return False
    except (OSError, urllib.error.URLError):
        return False


def get(port: int, *, close: bool = True, timeout: float = 15.0) -> int:
    """One GET / with ``Host: web`` on a new connection: the status (0 when it failed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    response = None
    try:
        conn.request("GET", "/", headers={"Host": "web", "Connection": "close" if close else ""})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        # (a response cut by a killed worker still holds the socket through its file: close
        # it too, or the socket is only closed by the garbage collector, with a warning)
        if response is not None:
            response.close()
        conn.close()


@pytest.fixture
def worker_pids() -> Iterator[set[int]]:
    """Worker pids seen by a test: each is killed at teardown if it is still there."""
    seen: set[int] = set()
    yield seen
    for pid in seen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def workers(proc: Any, seen: set[int]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = admin_json(proc, "/admin/workers.json")
    seen.update(w["pid"] for w in found if w["pid"])
    return found


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_two_workers_serve_one_port_and_the_admin_sums_them(
    loop, turnout_process, recording_backend, disco_dir, worker_pids
):
    disco_dir.write("web", recording_backend(name="web"))
    port, admin = free_port(), free_port()
    env = {"TURNOUT_LOOP": "asyncio"} if loop == "asyncio" else {}
    proc = turnout_process(config(disco_dir, port, admin), env=env)
    assert wait_until(lambda: ready(proc), timeout=30), proc.log()
    found = workers(proc, worker_pids)
    assert [w["index"] for w in found] == [0, 1] and all(w["state"] == "ready" for w in found)
    assert len({w["pid"] for w in found} | {proc.pid}) == 3  # two workers, one supervisor
    for pid in [proc.pid, *(w["pid"] for w in found)]:  # (no web framework anywhere: 16 MB)
        with open(f"/proc/{pid}/maps") as f:
            assert "/aiohttp/" not in f.read(), f"pid {pid} has aiohttp loaded"

    sent = 300
    statuses = [get(port) for _ in range(sent)]  # new connections: the kernel spreads them
    assert statuses == [200] * sent

    key = f"rt/http/server/127.0.0.1/{port}/requests"
    per_worker = [admin_json(proc, f"/admin/metrics.json?worker={i}")[key] for i in (0, 1)]
    assert all(n > 0 for n in per_worker), per_worker  # both processes took requests
    assert sum(per_worker) == sent
    total = admin_json(proc, "/admin/metrics.json")
    one = admin_json(proc, "/admin/metrics.json?worker=1&q=rt/http/server&pretty=1")
    assert one[key] == per_worker[1] and all(k.startswith("rt/http/server/") for k in one)
    assert total[key] == sent  # counters added
    assert total[f"rt/http/server/127.0.0.1/{port}/request_latency_ms.count"] == sent  # merged
    assert total["rt/http/client/#/io.l5d.fs/web/requests"] == sent
    assert total["rt/http/client/#/io.l5d.fs/web/loadbalancer/size"] == 1  # (the highest)
    assert total["workers/running"] == 2 and total["workers/restarts"] == 0
    tree = admin_json(proc, "/admin/metrics.json?tree=1&q=rt/http/server")
    assert tree["127.0.0.1"][str(port)]["requests"]["counter"] == sent
    # the rest of the admin is answered by a worker: the dashboard, the config
    with urllib.request.urlopen(proc.admin_url + "/", timeout=10) as r:
        assert b"turnout" in r.read()
    assert admin_json(proc, "/config.json")["workers"] == 2
    assert proc.stop() == 0, proc.log()
    assert wait_until(lambda: not any(_alive(pid) for pid in worker_pids), timeout=30), (
        "workers left behind"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def test_a_killed_worker_loses_only_its_in_flight_requests_and_is_back(
    turnout_process, recording_backend, disco_dir, worker_pids
):
    disco_dir.write("web", recording_backend(name="web"))
    port, admin = free_port(), free_port()
    proc = turnout_process(config(disco_dir, port, admin))
    assert wait_until(lambda: ready(proc), timeout=30), proc.log()
    victim = workers(proc, worker_pids)[0]

    clients, failures, done = 4, [], threading.Event()
    counts = [0] * clients

    def load(i: int) -> None:  # each client: one request at a time, new connections
        while not done.is_set():
            status = get(port)
            counts[i] += 1
            if status != 200:
                failures.append(status)

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os.kill(victim["pid"], signal.SIGKILL)
    back = wait_until(
        lambda: any(
            w["index"] == 0 and w["pid"] not in (None, victim["pid"]) and w["state"] == "ready"
            for w in workers(proc, worker_pids)
        ),
        timeout=30,
    )
    time.sleep(1.0)
    done.set()
    for t in threads:
        t.join(30)
    assert back, proc.log()
    # at most one request in flight per client when the worker died
    assert len(failures) <= clients, (failures, sum(counts))
    assert sum(counts) > 20
    assert admin_json(proc, "/admin/metrics.json")["workers/restarts"] == 1
    assert "worker 0 (pid" in proc.log() and "exited with status -9" in proc.log()
    assert [get(port) for _ in range(20)] == [200] * 20


def test_sigterm_drains_every_worker_with_no_failed_request(
    turnout_process, recording_backend, disco_dir, worker_pids
):
    slow = recording_backend(name="slow", delay=1.5)
    disco_dir.write("web", slow)
    port, admin = free_port(), free_port()
    proc = turnout_process(config(disco_dir, port, admin))
    assert wait_until(lambda: ready(proc), timeout=30), proc.log()
    workers(proc, worker_pids)

    results: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        status = get(port, timeout=30)
        with lock:
            results.append(status)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(12)]
    for t in threads:
        t.start()
    assert wait_until(lambda: slow.request_count >= 12, timeout=30)  # all in flight
    proc.signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    assert results == [200] * 12, (results, proc.log())
    assert proc.wait(60) == 0, proc.log()
    assert "draining 2 workers" in proc.log()
    with socket.socket() as s:  # the port is closed: every worker is gone
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_worker_that_cannot_start_is_given_up(turnout_process, disco_dir, worker_pids):
    """The router's port is held by a socket without SO_REUSEPORT: every worker fails to
    listen; after 5 deaths in a minute (backoff 0.5 s, doubling) the supervisor stops
    trying and exits 1, instead of restarting them forever."""
    port, admin = free_port(), free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        # (it looks ready: the holder accepts connections, the supervisor answers pings)
        proc = turnout_process(config(disco_dir, port, admin))
        assert proc.wait(90) == 1, proc.log()
    log = proc.log()
    assert "cannot listen" in log
    assert "worker 0 died 5 times within 60s: not starting it again" in log
    assert "every worker failed: the supervisor stops" in log
    assert log.count("worker 0 started (pid") == 5


def test_one_worker_is_a_single_turnout(turnout_process, recording_backend, disco_dir):
    disco_dir.write("web", recording_backend(name="web"))
    port, admin = free_port(), free_port()
    proc = turnout_process(config(disco_dir, port, admin, workers=4), args=["--workers", "1"])
    assert get(port) == 200
    assert "supervisor" not in proc.log()
    with pytest.raises(urllib.error.HTTPError):  # no supervisor admin
        admin_json(proc, "/admin/workers.json")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "workers: must be a number of processes from 1 to 256, or auto"),
        ("-1", "workers: must be a number of processes from 1 to 256, or auto"),
        ("many", "workers: expected integer or 'auto', got 'many'"),
        ("aut", "(did you mean 'auto'?)"),
    ],
)
def test_bad_workers_values_are_located_errors(value, message, tmp_path, disco_dir):
    path = tmp_path / "turnout.yaml"
    path.write_text(config(disco_dir, free_port(), free_port(), workers=value))
    r = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert f"turnout.yaml:5:10: {message}" in r.stderr or message in r.stderr, r.stderr
    assert "turnout.yaml:5:10: workers" in r.stderr, r.stderr


def test_what_workers_cannot_run_is_refused_at_start(tmp_path, disco_dir):
    path = tmp_path / "turnout.yaml"
    path.write_text(config(disco_dir, 0, free_port(), workers=2))
    r = subprocess.run(
        [sys.executable, "-m", "turnout", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert (
        "workers: 2 cannot run this configuration: router 'http': a server on port 0 would "
        "get a different port in each worker; give it a port"
    ) in r.stderr, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "turnout", "run", "--workers", "zero", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "expected a number or auto, got 'zero'" in r.stderr


def test_sighup_reloads_every_worker_under_load(
    turnout_process, recording_backend, disco_dir, worker_pids
):
    """SIGHUP to the supervisor: every worker reloads (a dtab change) with no failed request
    meanwhile; a broken file then changes nothing, in any worker, and says why."""
    a, b = recording_backend(name="A"), recording_backend(name="B")
    disco_dir.write("a", a)
    disco_dir.write("b", b)
    port, admin = free_port(), free_port()
    text = config(disco_dir, port, admin).replace(
        "/svc => /#/io.l5d.fs", "/svc/web => /#/io.l5d.fs/a"
    )
    proc = turnout_process(text)
    assert wait_until(lambda: ready(proc), timeout=30), proc.log()
    workers(proc, worker_pids)
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        for _ in range(5000):  # (bounded)
            if stop.is_set():
                return
            statuses.append(get(port))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: len(statuses) >= 50, timeout=20)
        proc.config_path.write_text(text.replace("/#/io.l5d.fs/a", "/#/io.l5d.fs/b"))
        proc.signal(signal.SIGHUP)
        assert wait_until(
            lambda: all(
                w["generation"] == 1 and w["status"] == "ok"
                for w in admin_json(proc, "/admin/config/status")["workers"]
            ),
            timeout=30,
        ), admin_json(proc, "/admin/config/status")
        served_by_b = len(b.requests)
        assert wait_until(lambda: len(b.requests) >= served_by_b + 40, timeout=20)
        a_count = len(a.requests)
        time.sleep(0.5)
        assert len(a.requests) == a_count  # both workers route to B now
    finally:
        stop.set()
        thread.join(30)
    assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
    # a broken file: nothing changes in any worker, the errors are reported
    proc.config_path.write_text(text + "routers: [\n")
    request = urllib.request.Request(proc.admin_url + "/admin/reload", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 400
    body = json.loads(err.value.read())
    assert [w["status"] for w in body["workers"]] == ["failed", "failed"]
    assert all("turnout.yaml:" in " ".join(w["errors"]) for w in body["workers"]), body
    assert get(port) == 200 and len(b.requests) > served_by_b
    assert proc.stop() == 0, proc.log()


def test_the_supervisor_admin_serves_admin_tls(
    turnout_process, recording_backend, disco_dir, worker_pids, tmp_path
):
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    key_path, cert_path, ca_path = (tmp_path / n for n in ("key.pem", "cert.pem", "ca.pem"))
    cert.private_key_pem.write_to_path(key_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    ca.cert_pem.write_to_path(ca_path)
    disco_dir.write("web", recording_backend(name="web"))
    port, admin = free_port(), free_port()
    text = config(disco_dir, port, admin).replace(
        "  shutdownGraceMs: 10000\n",
        f"  shutdownGraceMs: 10000\n  tls: {{certPath: {cert_path}, keyPath: {key_path}}}\n",
    )
    proc = turnout_process(text, start=False)
    proc.admin_port = None  # (TurnoutProcess pings the admin in plain HTTP: not this one)
    proc.start(timeout=40)
    context = ssl.create_default_context(cafile=str(ca_path))

    def https(path: str) -> Any:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{admin}{path}", timeout=10, context=context
        ) as r:
            return json.loads(r.read()) if path.endswith(".json") else r.read()

    def ready_tls() -> bool:
        try:
            return https("/admin/ready") == b"ready"
        except OSError:
            return False

    assert wait_until(ready_tls, timeout=30), proc.log()
    worker_pids.update(w["pid"] for w in https("/admin/workers.json") if w["pid"])
    assert [get(port) for _ in range(20)] == [200] * 20
    assert https("/admin/metrics.json")[f"rt/http/server/127.0.0.1/{port}/requests"] == 20
    with pytest.raises((OSError, http.client.HTTPException)):  # no plain HTTP on the port
        urllib.request.urlopen(f"http://127.0.0.1:{admin}/admin/ping", timeout=5).read()
    assert proc.stop() == 0, proc.log()


def test_watch_config_reloads_every_worker(
    turnout_process, recording_backend, disco_dir, worker_pids
):
    a, b = recording_backend(name="A"), recording_backend(name="B")
    disco_dir.write("a", a)
    disco_dir.write("b", b)
    port, admin = free_port(), free_port()
    text = config(disco_dir, port, admin).replace(
        "/svc => /#/io.l5d.fs", "/svc/web => /#/io.l5d.fs/a"
    )
    proc = turnout_process(text, args=["--watch-config", "0.2"])
    assert wait_until(lambda: ready(proc), timeout=30), proc.log()
    workers(proc, worker_pids)
    assert get(port) == 200 and len(a.requests) == 1
    proc.config_path.write_text(text.replace("/#/io.l5d.fs/a", "/#/io.l5d.fs/b"))
    assert wait_until(
        lambda: all(
            w["generation"] == 1 for w in admin_json(proc, "/admin/config/status")["workers"]
        ),
        timeout=30,
    ), admin_json(proc, "/admin/config/status")
    assert [get(port) for _ in range(10)] == [200] * 10
    assert len(b.requests) == 10 and len(a.requests) == 1
    assert proc.stop() == 0, proc.log()
