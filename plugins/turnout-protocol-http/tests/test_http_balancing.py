"""Traffic distribution end to end: weighted dtab unions, and fs namer updates under load."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter

import pytest
from turnout.testing import http_request, wait_until

pytestmark = [pytest.mark.integration]


class KeepAliveClient:
    """Sequential requests on one keep-alive connection (reconnects when closed)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def get(self, host: str, path: str = "/") -> tuple[int, bytes]:
        self.conn.request("GET", path, headers={"Host": host})
        r = self.conn.getresponse()
        return r.status, r.read()

    def close(self) -> None:
        self.conn.close()


def served_by(port: int, n: int) -> Counter[str]:
    """Send ``n`` requests for ``web``: how many each backend answered (all must be 200)."""
    client = KeepAliveClient(port)
    counts: Counter[str] = Counter()
    try:
        for _ in range(n):
            status, body = client.get("web")
            assert status == 200
            counts[body.split()[0].decode()] += 1
    finally:
        client.close()
    return counts


@pytest.mark.timeout(60)
def test_weighted_union_splits_traffic(http_proxy, disco_dir, nginx_backend):
    disco_dir.write("a", nginx_backend("a"))
    disco_dir.write("b", nginx_backend("b"))
    proxy = http_proxy(
        dtab="/svc => /#/io.l5d.fs; /svc/web => 1 * /#/io.l5d.fs/a & 3 * /#/io.l5d.fs/b;"
    )
    counts = served_by(proxy.port, 2000)
    assert set(counts) == {"a", "b"}
    share_a = counts["a"] / 2000
    assert 0.20 <= share_a <= 0.30, counts  # 25% +- 5 points (5 standard deviations)


@pytest.mark.timeout(60)
def test_fs_namer_update_moves_traffic_without_failures(http_proxy, disco_dir, nginx_backend):
    a, b = nginx_backend("a"), nginx_backend("b")
    disco_dir.write("web", a)
    proxy = http_proxy()
    seen: list[str] = []
    failures: list[object] = []
    done = threading.Event()

    def load() -> None:
        client = KeepAliveClient(proxy.port)
        try:
            for _ in range(400):
                time.sleep(0.005)  # pace the load over ~2 s, so the update lands mid-way
                try:
                    status, body = client.get("web")
                except OSError as e:
                    failures.append(e)
                    continue
                if status != 200:
                    failures.append((status, body))
                else:
                    seen.append(body.split()[0].decode())
        finally:
            client.close()
            done.set()

    thread = threading.Thread(target=load)
    thread.start()
    try:
        assert wait_until(lambda: len(seen) >= 100, 20), "the load did not start"
        disco_dir.write("web", b)  # move the service from A to B
        assert done.wait(40), "the load did not finish"
    finally:
        thread.join(40)
    assert failures == []
    assert len(seen) == 400
    assert seen[0] == "a"
    switch = seen.index("b")
    assert set(seen[switch:]) == {"b"}, "traffic went back to A after the update"
    assert switch < 350  # the update took effect well before the end


@pytest.mark.timeout(60)
def test_fs_endpoint_weights_set_the_share(http_proxy, disco_dir, nginx_backend):
    """``host port * weight`` lines in an fs file: weight 3 takes three times weight 1."""
    a, b = nginx_backend("a"), nginx_backend("b")
    disco_dir.write("web", (a, 1.0), (b, 3.0))
    proxy = http_proxy()
    counts = served_by(proxy.port, 2000)
    assert 0.20 <= counts["a"] / 2000 <= 0.30, counts


@pytest.mark.timeout(60)
def test_removed_endpoint_finishes_in_flight_requests_then_drains(
    http_proxy, disco_dir, recording_backend
):
    slow = recording_backend(name="slow", delay=1.0)
    fast = recording_backend(name="fast")
    disco_dir.write("web", slow)
    proxy = http_proxy()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(http_request(proxy.port, headers={"Host": "web"}).status)
    )
    thread.start()
    assert wait_until(lambda: slow.request_count == 1, 5)
    disco_dir.write("web", fast)  # `slow` leaves the address set with a request in flight
    assert wait_until(
        lambda: http_request(proxy.port, headers={"Host": "web"}).body.startswith(b"fast"), 5
    )
    thread.join(10)
    assert result == [200]  # the in-flight request was not dropped
    # and its connection closed once it was done (the pool drained)
    assert wait_until(lambda: slow.connections and all(c.closed for c in slow.connections), 5)


@pytest.mark.timeout(60)
def test_ewma_routes_around_a_slow_endpoint(http_proxy, disco_dir, recording_backend):
    slow = recording_backend(name="slow", delay=0.05)
    fast = [recording_backend(name=f"fast{i}") for i in range(2)]
    disco_dir.write("web", slow, *fast)
    proxy = http_proxy(router={"client": {"loadBalancer": {"kind": "ewma"}}})
    client = KeepAliveClient(proxy.port)
    try:
        for _ in range(300):
            assert client.get("web")[0] == 200
    finally:
        client.close()
    assert slow.request_count < 300 * 0.1, slow.request_count
