"""Graceful shutdown (B8, B11 D*): SIGTERM and POST /admin/shutdown drain in-flight requests,
refuse new connections and exit 0 within admin.shutdownGraceMs."""

from __future__ import annotations

import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
from turnout.testing import RawClient, build_request, http_request, port_open, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

GRACE_MS = 5000


@pytest.fixture
def slow_web(http_proxy, disco_dir, recording_backend):
    """turnout in front of a backend that answers after 1 s."""
    backend = recording_backend(delay=1.0)
    disco_dir.write("web", backend)
    proxy = http_proxy(admin={"shutdownGraceMs": GRACE_MS})
    return proxy, backend


def in_flight(proxy, backend) -> tuple[threading.Thread, dict]:
    """Start a request in a thread; return when the backend has received it."""
    result: dict = {}

    def run() -> None:
        try:
            result["response"] = http_request(proxy.port, headers={"Host": "web"}, timeout=10)
        except Exception as e:
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    backend.wait_requests(1, timeout=5)
    return thread, result


def admin_post(proxy, path: str) -> int:
    req = urllib.request.Request(proxy.admin_url + path, method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def assert_drains(proxy, backend, trigger) -> None:
    thread, result = in_flight(proxy, backend)
    start = time.monotonic()
    trigger()
    try:
        # new connections are refused soon, while the request is still in flight
        assert wait_until(lambda: not port_open("127.0.0.1", proxy.port), 0.8)
        code = proxy.wait(GRACE_MS / 1000 + 2)
        elapsed = time.monotonic() - start
    finally:
        thread.join(10)
    assert code == 0, proxy.log()
    assert "error" not in result, result
    assert result["response"].status == 200
    assert elapsed < GRACE_MS / 1000, elapsed  # exited when drained, not at the grace limit


def test_sigterm_drains_in_flight_requests(slow_web):
    proxy, backend = slow_web
    assert_drains(proxy, backend, lambda: proxy.signal(signal.SIGTERM))


def test_post_admin_shutdown_drains_in_flight_requests(slow_web):
    proxy, backend = slow_web
    assert_drains(proxy, backend, lambda: admin_post(proxy, "/admin/shutdown"))


def test_get_admin_shutdown_is_405_and_does_nothing(http_proxy):
    proxy = http_proxy()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(proxy.admin_url + "/admin/shutdown", timeout=5)
    assert info.value.code == 405
    info.value.close()
    time.sleep(0.3)
    assert proxy.running()
    assert port_open("127.0.0.1", proxy.port)


def test_sigterm_without_traffic_exits_at_once(http_proxy):
    proxy = http_proxy()
    start = time.monotonic()
    assert proxy.stop(signal.SIGTERM, timeout=5) == 0
    assert time.monotonic() - start < 4.0  # (not the 10 s default grace)


def test_request_longer_than_the_grace_period_is_cut(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(delay=10.0)
    disco_dir.write("web", backend)
    proxy = http_proxy(admin={"shutdownGraceMs": 500})
    with RawClient("127.0.0.1", proxy.port, timeout=10) as c:
        c.send(build_request("GET", "/", {"Host": "web"}))
        backend.wait_requests(1, timeout=5)
        start = time.monotonic()
        proxy.signal(signal.SIGTERM)
        code = proxy.wait(5)
        elapsed = time.monotonic() - start
        data, closed = c.read_until_close(2)
    assert code == 0
    assert 0.4 <= elapsed < 5.0, elapsed  # the 500 ms grace, not the 10 s request
    assert closed
    assert not data.startswith(b"HTTP/1.1 200")


def test_keep_alive_response_during_drain_says_connection_close(slow_web):
    proxy, backend = slow_web
    with RawClient("127.0.0.1", proxy.port, timeout=10) as c:
        c.send(build_request("GET", "/", {"Host": "web"}))
        backend.wait_requests(1, timeout=5)
        proxy.signal(signal.SIGTERM)
        r = c.read_final(timeout=5)
        assert r.status == 200
        assert r.header("Connection") == "close"
        assert c.is_closed(2)
    assert proxy.wait(5) == 0


def test_idle_keep_alive_connections_are_closed_at_shutdown(
    http_proxy, disco_dir, recording_backend
):
    disco_dir.write("web", recording_backend())
    proxy = http_proxy(admin={"shutdownGraceMs": GRACE_MS})
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", {"Host": "web"}))
        assert c.read_final().status == 200
        start = time.monotonic()
        proxy.signal(signal.SIGTERM)
        assert c.is_closed(4)
        assert proxy.wait(5) == 0
    assert time.monotonic() - start < 4.5  # not the 5 s grace
