"""Traffic distribution end to end: weighted dtab unions, and fs namer updates under load."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter

import pytest
from turnout.testing import wait_until

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


@pytest.mark.timeout(60)
def test_weighted_union_splits_traffic(http_proxy, disco_dir, nginx_backend):
    disco_dir.write("a", nginx_backend("a"))
    disco_dir.write("b", nginx_backend("b"))
    proxy = http_proxy(
        dtab="/svc => /#/io.l5d.fs; /svc/web => 1 * /#/io.l5d.fs/a & 3 * /#/io.l5d.fs/b;"
    )
    client = KeepAliveClient(proxy.port)
    counts: Counter[str] = Counter()
    try:
        for _ in range(2000):
            status, body = client.get("web")
            assert status == 200
            counts[body.split()[0].decode()] += 1
    finally:
        client.close()
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
