"""Reload without restart, end to end: a real turnout process, traffic on 127.0.0.1 only.

Under a continuous bounded load (one kept-alive connection and one new connection per
round), SIGHUP applies a dtab change, a new namer and a changed client policy with no failed
request; a broken config changes nothing and is reported; a new port opens and a removed one
drains; ``POST /admin/reload`` works and is refused cross-site.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.testing import RecordingBackend, free_port, wait_until
from turnout.testing.pytest_plugin import turnout_process  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def admin(proc: Any, path: str, data: bytes | None = None, **headers: str) -> tuple[int, Any]:
    req = urllib.request.Request(proc.admin_url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


def metrics(proc: Any) -> dict[str, Any]:
    return admin(proc, "/admin/metrics.json")[1]  # type: ignore[no-any-return]


def get(port: int, host: str = "web", timeout: float = 5.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/x", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class Load:
    """A thread sending requests until stopped (bounded by ``limit`` seconds): each round one
    request on a kept-alive connection and one on a new connection. Failures are kept."""

    def __init__(self, port: int, limit: float = 60.0) -> None:
        self.port = port
        self.limit = limit
        self.stop_event = threading.Event()
        self.failures: list[str] = []
        self.bodies: list[tuple[float, str]] = []
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(15)

    def _one(self, conn: http.client.HTTPConnection) -> None:
        conn.request("GET", "/x", headers={"Host": "web"})
        resp = conn.getresponse()
        body = resp.read().decode()
        self.count += 1
        if resp.status != 200:
            self.failures.append(f"{resp.status} {body.strip()}")
        else:
            self.bodies.append((time.monotonic(), body.split()[0]))

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        kept = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                self._one(kept)
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(f"kept-alive: {type(e).__name__}: {e}")
                kept.close()
                kept = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            fresh = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self._one(fresh)
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(f"new connection: {type(e).__name__}: {e}")
            finally:
                fresh.close()
        kept.close()

    def served_by(self, since: float) -> set[str]:
        return {name for t, name in list(self.bodies) if t >= since}


def write(proc: Any, config: dict[str, Any]) -> None:
    proc.config_path.write_text(yaml.safe_dump(config))


def generation(proc: Any) -> int:
    return int(admin(proc, "/admin/config/status")[1]["generation"])


def reload_by_signal(proc: Any, config: dict[str, Any], expect_ok: bool = True) -> dict[str, Any]:
    before = admin(proc, "/admin/config/status")[1]
    write(proc, config)
    proc.signal(signal.SIGHUP)
    assert wait_until(
        lambda: admin(proc, "/admin/config/status")[1]["lastAttempt"] != before["lastAttempt"],
        timeout=15,
    ), proc.log()
    status = admin(proc, "/admin/config/status")[1]
    assert (status["status"] == "ok") is expect_ok, status
    return status  # type: ignore[no-any-return]


@pytest.fixture
def backends() -> Any:
    a = RecordingBackend(name="A").start()
    b = RecordingBackend(name="B").start()
    c = RecordingBackend(name="C").start()
    try:
        yield a, b, c
    finally:
        for backend in (a, b, c):
            backend.stop()


def base_config(tmp: Path, a: RecordingBackend, c: RecordingBackend) -> dict[str, Any]:
    disco = tmp / "disco"
    disco.mkdir(exist_ok=True)
    (disco / "web").write_text(f"127.0.0.1 {a.port}\n")
    disco2 = tmp / "disco2"
    disco2.mkdir(exist_ok=True)
    (disco2 / "web").write_text(f"127.0.0.1 {c.port}\n")
    return {
        "admin": {"ip": "127.0.0.1", "port": free_port(), "shutdownGraceMs": 5000},
        "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco)}],
        "routers": [
            {
                "protocol": "http",
                "dtab": "/svc => /#/io.l5d.fs",
                "servers": [{"ip": "127.0.0.1", "port": free_port()}],
            }
        ],
    }


@pytest.mark.parametrize("loop", ["default", "asyncio"])
def test_sighup_applies_dtab_namer_and_client_policy_without_failures(
    turnout_process: Any,  # noqa: F811
    backends: Any,
    tmp_path: Path,
    loop: str,
) -> None:
    a, b, c = backends
    config = base_config(tmp_path, a, c)
    env = {"TURNOUT_LOOP": "asyncio"} if loop == "asyncio" else {}
    proc = turnout_process(yaml.safe_dump(config), env=env)
    port = config["routers"][0]["servers"][0]["port"]
    assert get(port) == (200, "A /x\n")
    status = admin(proc, "/admin/config/status")[1]
    assert status["generation"] == 0 and status["file"].endswith("turnout.yaml")
    with Load(port) as load:
        assert wait_until(lambda: load.count > 20, timeout=20)
        # (1) a dtab change: /svc/web now goes to B
        config["routers"][0]["dtab"] = f"/svc/web => /$/inet/127.0.0.1/{b.port}"
        reload_by_signal(proc, config)
        assert generation(proc) == 1
        assert get(port) == (200, "B /x\n")  # at once, on a new connection
        since = time.monotonic()
        assert wait_until(lambda: load.served_by(since) == {"B"} and load.count > 60, 20)
        # (2) a new namer (a second io.l5d.fs) used by the new dtab
        config["namers"].append(
            {"kind": "io.l5d.fs", "prefix": "/io.l5d.fs2", "rootDir": str(tmp_path / "disco2")}
        )
        config["routers"][0]["dtab"] = "/svc => /#/io.l5d.fs2"
        reload_by_signal(proc, config)
        assert generation(proc) == 2
        assert get(port) == (200, "C /x\n")
        since = time.monotonic()
        count = load.count
        assert wait_until(lambda: load.count > count + 40, 20)
        assert load.served_by(since) == {"C"}
        # (3) a changed client policy (another balancer, a timeout)
        config["routers"][0]["client"] = {
            "loadBalancer": {"kind": "roundRobin"},
            "requestAttemptTimeoutMs": 5000,
        }
        reload_by_signal(proc, config)
        assert generation(proc) == 3
        count = load.count
        assert wait_until(lambda: load.count > count + 40, 20)
    assert load.failures == [], load.failures[:5]
    assert get(port) == (200, "C /x\n")
    m = metrics(proc)
    assert m["reload/successes"] == 3
    assert m["reload/failures"] == 0
    assert m["reload/generation"] == 3
    # the old A namer is still configured (reused) and the router answers on the same port
    assert proc.running()


def test_broken_config_changes_nothing_and_is_reported(
    turnout_process: Any,  # noqa: F811
    backends: Any,
    tmp_path: Path,
) -> None:
    a, _, c = backends
    config = base_config(tmp_path, a, c)
    proc = turnout_process(yaml.safe_dump(config))
    port = config["routers"][0]["servers"][0]["port"]
    with Load(port) as load:
        assert wait_until(lambda: load.count > 10, timeout=20)
        # a bad key
        bad = json.loads(json.dumps(config))
        bad["routers"][0]["dtabb"] = "/svc => /$/inet/127.0.0.1/1"
        status = reload_by_signal(proc, bad, expect_ok=False)
        assert status["generation"] == 0
        assert any("turnout.yaml:" in e and "dtabb" in e for e in status["errors"]), status
        assert any(e.split("turnout.yaml:")[1].split(":")[0].isdigit() for e in status["errors"])
        assert get(port) == (200, "A /x\n")
        # a YAML syntax error
        proc.config_path.write_text(yaml.safe_dump(config) + "routers: [\n  - {protocol: http\n")
        before = admin(proc, "/admin/config/status")[1]["lastAttempt"]
        proc.signal(signal.SIGHUP)
        assert wait_until(
            lambda: admin(proc, "/admin/config/status")[1]["lastAttempt"] != before, timeout=15
        )
        status = admin(proc, "/admin/config/status")[1]
        assert status["status"] == "failed" and status["generation"] == 0
        line_col = [e for e in status["errors"] if "turnout.yaml:" in e]
        assert line_col, status
        assert get(port) == (200, "A /x\n")
        count = load.count
        assert wait_until(lambda: load.count > count + 10, timeout=20)
    assert load.failures == []
    m = metrics(proc)
    assert m["reload/failures"] == 2
    assert m["reload/successes"] == 0
    assert m["reload/generation"] == 0
    assert "reload refused" in proc.log() and "dtabb" in proc.log()


def test_new_port_opens_and_removed_port_drains(
    turnout_process: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    slow = RecordingBackend(name="slow", delay=2.0).start()
    try:
        old_port, new_port = free_port(), free_port()
        config = {
            "admin": {"ip": "127.0.0.1", "port": free_port(), "shutdownGraceMs": 10000},
            "routers": [
                {
                    "protocol": "http",
                    "dtab": f"/svc/* => /$/inet/127.0.0.1/{slow.port}",
                    "servers": [{"ip": "127.0.0.1", "port": old_port}],
                }
            ],
        }
        proc = turnout_process(yaml.safe_dump(config))
        # a request in flight on the port about to be removed
        result: list[tuple[int, str]] = []
        t = threading.Thread(target=lambda: result.append(get(old_port, timeout=15)))
        t.start()
        assert wait_until(lambda: slow.request_count >= 1, timeout=10)
        config["routers"][0]["servers"] = [{"ip": "127.0.0.1", "port": new_port}]
        reload_by_signal(proc, config)
        # the new port serves; the old one accepts no new connection
        assert get(new_port, timeout=15) == (200, "slow /x\n")
        assert wait_until(lambda: not _accepts(old_port), timeout=10)
        t.join(15)
        assert result == [(200, "slow /x\n")]  # the in-flight request finished
        assert not _accepts(old_port)
        m = metrics(proc)
        assert not any(f"/server/127.0.0.1/{old_port}/" in k for k in m) or wait_until(
            lambda: not any(f"/server/127.0.0.1/{old_port}/" in k for k in metrics(proc)), 10
        )
    finally:
        slow.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_post_admin_reload_and_cross_site_refusal(
    turnout_process: Any,  # noqa: F811
    backends: Any,
    tmp_path: Path,
) -> None:
    a, b, c = backends
    config = base_config(tmp_path, a, c)
    proc = turnout_process(yaml.safe_dump(config), env={"TURNOUT_LOOP": "asyncio"})
    port = config["routers"][0]["servers"][0]["port"]
    config["routers"][0]["dtab"] = f"/svc/web => /$/inet/127.0.0.1/{b.port}"
    write(proc, config)
    # a cross-site request (a browser on another page): refused, nothing reloaded
    status, body = admin(proc, "/admin/reload", data=b"", **{"Sec-Fetch-Site": "cross-site"})
    assert status == 403, body
    status, body = admin(proc, "/admin/reload", data=b"", Origin="http://evil.example")
    assert status == 403, body
    assert get(port) == (200, "A /x\n")
    assert admin(proc, "/admin/reload")[0] == 405  # (GET)
    status, body = admin(proc, "/admin/reload", data=b"")
    assert status == 200 and body["status"] == "ok" and body["generation"] == 1, body
    assert get(port) == (200, "B /x\n")
    # a refused change: admin
    bad = json.loads(json.dumps(config))
    bad["admin"]["shutdownGraceMs"] = 1234
    write(proc, bad)
    status, body = admin(proc, "/admin/reload", data=b"")
    assert status == 400 and body["status"] == "failed", body
    assert any("'admin' changed" in e for e in body["errors"]), body
    assert body["generation"] == 1
    assert get(port) == (200, "B /x\n")
