"""Memory stays bounded while bodies stream (B11 L7/L9): 1 GiB up, 1 GiB down, and a client
that never reads. turnout's resident memory is sampled from /proc/<pid>/status."""

from __future__ import annotations

import hashlib
import socket
import time

import pytest
from turnout.testing import RawClient, RssSampler, build_request, proc_kib

pytestmark = [pytest.mark.integration]

MIB = 1 << 20
GIB = 1 << 30
LIMIT_KIB = 64 * 1024  # 64 MiB


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(GIB)  # sparse: costs no disk
    return path


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_one_gib_chunked_upload_keeps_memory_bounded(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(record_limit=4096)
    disco_dir.write("web", backend)
    proxy = http_proxy()
    block = bytes(range(256)) * (MIB // 256)
    frame = b"%x\r\n" % len(block) + block + b"\r\n"
    expected = hashlib.sha256()
    with RssSampler(proxy.pid) as rss, RawClient("127.0.0.1", proxy.port, timeout=120) as c:
        head = {"Host": "web", "Transfer-Encoding": "chunked"}
        c.send(build_request("POST", "/upload", head))
        for _ in range(GIB // MIB):
            c.send(frame)
            expected.update(block)
        c.send(b"0\r\n\r\n")
        r = c.read_final(timeout=120)
    assert r.status == 200
    [req] = backend.requests
    assert req.body_size == GIB
    assert req.body_sha256 == expected.hexdigest()
    peak = max(rss.peak_kib, proc_kib(proxy.pid, "VmHWM"))
    print(f"turnout peak RSS {peak / 1024:.1f} MiB")
    assert peak < LIMIT_KIB, f"turnout peaked at {peak / 1024:.1f} MiB"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_one_gib_download_keeps_memory_bounded(http_proxy, disco_dir, nginx_backend, big_file):
    nginx = nginx_backend("big", locations=[f"location = /big {{ alias {big_file}; }}"])
    disco_dir.write("web", nginx)
    proxy = http_proxy()
    buf = bytearray(MIB)
    view = memoryview(buf)
    with RssSampler(proxy.pid) as rss, socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.settimeout(30)
        s.sendall(build_request("GET", "/big", {"Host": "web"}, close=True))
        first = b""
        while b"\r\n\r\n" not in first:
            first += s.recv(4096)
        head, _, rest = first.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Content-Length: %d" % GIB in head
        received = len(rest)
        while n := s.recv_into(view):
            received += n
    assert received == GIB
    peak = max(rss.peak_kib, proc_kib(proxy.pid, "VmHWM"))
    print(f"turnout peak RSS {peak / 1024:.1f} MiB")
    assert peak < LIMIT_KIB, f"turnout peaked at {peak / 1024:.1f} MiB"


@pytest.mark.timeout(30)
def test_a_client_that_never_reads_does_not_grow_memory(
    http_proxy, disco_dir, nginx_backend, big_file
):
    nginx = nginx_backend("big", locations=[f"location = /big {{ alias {big_file}; }}"])
    disco_dir.write("web", nginx)
    proxy = http_proxy()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.connect(("127.0.0.1", proxy.port))
        s.sendall(build_request("GET", "/big", {"Host": "web"}))
        samples = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            samples.append(proc_kib(proxy.pid, "VmRSS"))
            time.sleep(0.1)
        # still alive and bounded; the upstream read was paused, not buffered
        assert max(samples) < LIMIT_KIB, f"RSS reached {max(samples) / 1024:.1f} MiB"
        assert samples[-1] - samples[len(samples) // 2] < 8 * 1024  # not growing
