"""Errors turnout answers itself: 400 (unidentifiable, bad l5d-dtab), 502 (no route,
connect failure, binding timeout), 503 (maxConcurrentRequests)."""

from __future__ import annotations

import threading
import time
from urllib.parse import unquote

import pytest
from turnout.testing import free_port, http_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def test_unidentifiable_request_is_400_with_l5d_err(http_proxy, disco_dir):
    proxy = http_proxy(router={"identifier": {"kind": "io.l5d.header.token", "header": "x-svc"}})
    r = http_request(proxy.port, headers={"Host": "web"})
    assert r.status == 400
    assert r.has_header("l5d-err")
    assert r.header("Content-Type").startswith("text/plain")


def test_invalid_l5d_dtab_is_400(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    r = http_request(proxy.port, headers={"Host": "web", "l5d-dtab": "/svc/web => =>;;"})
    assert r.status == 400
    assert "dtab" in unquote(r.header("l5d-err")).lower()
    assert backend.request_count == 0


def test_no_route_is_502_with_the_name_and_the_dtabs(http_proxy, disco_dir):
    proxy = http_proxy(dtab="/svc => /#/io.l5d.fs;")
    r = http_request(
        proxy.port, headers={"Host": "nothere", "l5d-dtab": "/svc/x => /#/io.l5d.fs/y"}
    )
    assert r.status == 502
    assert r.has_header("l5d-err")
    assert unquote(r.header("l5d-err")).startswith("Unable to route request!")
    text = r.text
    assert text.startswith("Unable to route request!")
    assert "/svc/nothere" in text
    assert "/svc=>/#/io.l5d.fs" in text.replace(" ", "")  # base dtab
    assert "/svc/x=>/#/io.l5d.fs/y" in text.replace(" ", "")  # override dtab


def test_service_with_no_endpoints_is_502(http_proxy, disco_dir):
    disco_dir.write("empty")
    proxy = http_proxy()
    r = http_request(proxy.port, headers={"Host": "empty"})
    assert r.status == 502
    assert r.has_header("l5d-err")


def test_connect_failure_is_502(http_proxy, disco_dir):
    disco_dir.write("web", f"127.0.0.1 {free_port()}")  # nothing listens there
    proxy = http_proxy()
    start = time.monotonic()
    r = http_request(proxy.port, headers={"Host": "web"})
    assert r.status == 502
    assert r.has_header("l5d-err")
    assert time.monotonic() - start < 4


def test_binding_timeout_is_502(http_proxy):
    proxy = http_proxy(
        test_namers=True,
        namers=[{"kind": "test.pending", "prefix": "/pending"}],
        dtab="/svc => /#/pending;",
        router={"bindingTimeoutMs": 400},
    )
    start = time.monotonic()
    r = http_request(proxy.port, headers={"Host": "web"})
    elapsed = time.monotonic() - start
    assert r.status == 502
    assert "binding timeout" in unquote(r.header("l5d-err") or "").lower() + r.text.lower()
    assert 0.35 <= elapsed < 5.0, elapsed  # (a loaded machine may answer late, never early)


def test_pending_address_set_times_out_at_the_binding_timeout(http_proxy):
    proxy = http_proxy(
        test_namers=True,
        namers=[{"kind": "test.pendingAddr", "prefix": "/pa"}],
        dtab="/svc => /#/pa;",
        router={"bindingTimeoutMs": 400},
    )
    start = time.monotonic()
    r = http_request(proxy.port, headers={"Host": "web"})
    elapsed = time.monotonic() - start
    assert r.status == 502
    assert r.has_header("l5d-err")
    assert 0.35 <= elapsed < 5.0, elapsed


def test_max_concurrent_requests_rejects_at_once(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(delay=5.0)
    disco_dir.write("web", backend)
    proxy = http_proxy(server={"maxConcurrentRequests": 1})
    results = {}

    def slow() -> None:
        results["slow"] = http_request(proxy.port, headers={"Host": "web"}, timeout=15)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        backend.wait_requests(1, timeout=5)  # the first request is in flight
        start = time.monotonic()
        r = http_request(proxy.port, headers={"Host": "web"})
        assert r.status == 503
        assert r.has_header("l5d-err")
        assert time.monotonic() - start < 3.0  # not queued behind the 5 s request
    finally:
        thread.join(20)
    assert results["slow"].status == 200
    assert backend.request_count == 1
    # once the first is done, requests are accepted again
    assert http_request(proxy.port, headers={"Host": "web"}, timeout=15).status == 200
