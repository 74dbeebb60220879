"""The h2 router under a reload (SIGHUP: a new runtime takes over the listening socket and the
open connections) and under ``workers: 2`` (SO_REUSEPORT), with real grpcio traffic."""

from __future__ import annotations

import json
import signal
import threading
import urllib.request
from typing import Any

import grpc
import pytest
import yaml
from turnout.testing import free_port, wait_until
from turnout_h2_grpc import GrpcClient
from turnout_h2_proxy import h2_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GRPC = {"identifier": {"kind": "io.l5d.header.path", "segments": 1}}


def admin(proc: Any, path: str) -> Any:
    with urllib.request.urlopen(proc.admin_url + path, timeout=10) as r:
        return json.load(r)


class Load:
    """grpcio calls in a loop until stopped (bounded: at most ``limit``): a kept channel
    (its connection moves to the new runtime on a reload) and a new channel every 20 calls."""

    def __init__(self, port: int, limit: int = 20_000) -> None:
        self.port = port
        self.limit = limit
        self.answers: list[bytes] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        kept = GrpcClient(self.port)
        fresh = GrpcClient(self.port)
        try:
            for i in range(self.limit):
                if self.stop.is_set():
                    return
                if i % 20 == 19:
                    fresh.close()
                    fresh = GrpcClient(self.port)
                client = kept if i % 2 else fresh
                try:
                    self.answers.append(client.unary("Unary", b"x", timeout=10))
                except grpc.RpcError as e:
                    self.failures.append(f"{e.code()}: {e.details()}")
        finally:
            kept.close()
            fresh.close()

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_sighup_reroutes_grpc_calls_with_no_failure(turnout_process, grpc_backend):
    a, b = grpc_backend("A"), grpc_backend("B")
    port, admin_port = free_port(), free_port()
    text = h2_config(f"/svc/test.Echo => /$/inet/127.0.0.1/{a.port}", admin_port, port, **GRPC)
    proc = turnout_process(text)
    config = yaml.safe_load(text)
    with Load(port) as load:
        assert wait_until(lambda: len(load.answers) >= 50, timeout=20)
        config["routers"][0]["dtab"] = f"/svc/test.Echo => /$/inet/127.0.0.1/{b.port}"
        # and a changed client policy (a new client is built for the bound name)
        config["routers"][0]["client"] = {"failureAccrual": {"kind": "none"}}
        before = admin(proc, "/admin/config/status")["lastAttempt"]
        proc.config_path.write_text(yaml.safe_dump(config))
        proc.signal(signal.SIGHUP)
        assert wait_until(
            lambda: admin(proc, "/admin/config/status")["lastAttempt"] != before, timeout=15
        )
        assert admin(proc, "/admin/config/status")["status"] == "ok", proc.log()
        n = len(load.answers)
        assert wait_until(lambda: len(load.answers) >= n + 100, timeout=20)
    assert load.failures == [], load.failures[:5]
    after = load.answers[n + 20 :]  # (a few in flight at the switch may still be A's)
    assert after and set(after) == {b"B:x"}, set(after)
    assert b"A:x" in load.answers[:n]
    assert proc.stop() == 0
    assert "Traceback" not in proc.log()


def test_two_workers_serve_grpc_on_one_port(turnout_process, grpc_backend):
    backend = grpc_backend("cat")
    port, admin_port = free_port(), free_port()
    text = h2_config(
        f"/svc/test.Echo => /$/inet/127.0.0.1/{backend.port}", admin_port, port, **GRPC
    )
    proc = turnout_process(text, args=["--workers", "2"], timeout=40)
    assert wait_until(
        lambda: len([w for w in admin(proc, "/admin/workers.json") if w["state"] == "ready"]) == 2,
        timeout=30,
    ), proc.log()
    sent = 0
    for _ in range(40):  # new connections: the kernel spreads them over the workers
        with GrpcClient(port) as client:
            for _ in range(5):
                assert client.unary("Unary", b"x", timeout=10) == b"cat:x"
                sent += 1
    key = f"rt/h2/server/127.0.0.1/{port}/requests"
    per_worker = [admin(proc, f"/admin/metrics.json?worker={i}").get(key, 0) for i in (0, 1)]
    assert all(n > 0 for n in per_worker), per_worker
    assert sum(per_worker) == sent
    assert admin(proc, "/admin/metrics.json")[key] == sent
    assert proc.stop() == 0, proc.log()
