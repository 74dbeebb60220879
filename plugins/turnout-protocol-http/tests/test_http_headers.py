"""Linkerd headers end to end: l5d-dtab / l5d-ctx-dtab, l5d-dst-*, l5d-reqid, Via and
maxCallDepth, clearContext, hop-by-hop removal both ways, timestampHeader.

What the backend receives is checked in the RecordingBackend's raw bytes; what the client
receives in the raw response.
"""

from __future__ import annotations

import re
import time

import pytest
from turnout.naming import Dtab
from turnout.testing import RawClient, build_request, http_request, http_response

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def header_names(head: bytes) -> list[str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [line.split(":", 1)[0].lower() for line in lines if line]


@pytest.fixture
def two_services(disco_dir, recording_backend):
    a, b, c = (recording_backend(name=n) for n in "abc")
    for backend in (a, b, c):
        disco_dir.write(backend.name, backend)
    return a, b, c


def test_l5d_dtab_overrides_routing_and_is_not_forwarded(http_proxy, two_services):
    a, b, _ = two_services
    proxy = http_proxy()
    r = http_request(proxy.port, headers={"Host": "a", "l5d-dtab": "/svc/a => /#/io.l5d.fs/b"})
    assert r.status == 200
    assert r.text == "b /\n"
    assert a.request_count == 0
    [req] = b.requests
    assert req.header("l5d-dtab") is None
    assert Dtab.read(req.header("l5d-ctx-dtab")) == Dtab.read("/svc/a => /#/io.l5d.fs/b")
    assert req.header("l5d-dst-service") == "/svc/a"
    assert req.header("l5d-dst-client") == "/#/io.l5d.fs/b"


def test_l5d_ctx_dtab_is_read_and_re_emitted(http_proxy, two_services):
    a, b, c = two_services
    proxy = http_proxy()
    ctx = "/svc/a => /#/io.l5d.fs/c"
    r = http_request(proxy.port, headers={"Host": "a", "l5d-ctx-dtab": ctx})
    assert r.text == "c /\n"
    [req] = c.requests
    assert Dtab.read(req.header("l5d-ctx-dtab")) == Dtab.read(ctx)
    assert len(req.header_all("l5d-ctx-dtab")) == 1
    assert a.request_count == b.request_count == 0


def test_l5d_dtab_is_appended_after_l5d_ctx_dtab_and_wins(http_proxy, two_services):
    a, b, c = two_services
    proxy = http_proxy()
    ctx, user = "/svc/a => /#/io.l5d.fs/c", "/svc/a => /#/io.l5d.fs/b"
    # header order on the wire does not matter: the user's l5d-dtab always comes last
    r = http_request(proxy.port, headers=[("Host", "a"), ("l5d-dtab", user), ("l5d-ctx-dtab", ctx)])
    assert r.text == "b /\n"
    [req] = b.requests
    assert Dtab.read(req.header("l5d-ctx-dtab")) == Dtab.read(f"{ctx};{user}")
    assert a.request_count == c.request_count == 0


def test_l5d_dtab_with_a_base_dtab_entry_for_the_same_prefix(http_proxy, two_services):
    a, b, _ = two_services
    proxy = http_proxy(dtab="/svc => /#/io.l5d.fs; /svc/web => /#/io.l5d.fs/a;")
    assert http_request(proxy.port, headers={"Host": "web"}).text == "a /\n"
    r = http_request(proxy.port, headers={"Host": "web", "l5d-dtab": "/svc/web=>/#/io.l5d.fs/b"})
    assert r.text == "b /\n"
    assert a.request_count == b.request_count == 1


def test_dst_headers_and_request_id_are_written(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy(dtab="/svc => /#/io.l5d.fs; /svc/web => /#/io.l5d.fs/web/extra/part;")
    forged = {
        "Host": "web",
        "l5d-dst-service": "/evil",
        "l5d-dst-client": "/evil",
        "l5d-dst-residual": "/evil",
        "l5d-reqid": "evil",
    }
    assert http_request(proxy.port, headers=forged).status == 200
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    first, second = backend.requests
    for req in (first, second):
        assert req.header_all("l5d-dst-service") == ["/svc/web"]
        assert req.header_all("l5d-dst-client") == ["/#/io.l5d.fs/web"]
        assert req.header_all("l5d-dst-residual") == ["/extra/part"]
        [reqid] = req.header_all("l5d-reqid")
        assert re.fullmatch(r"[0-9a-f]{16}", reqid), reqid
    assert first.header("l5d-reqid") != second.header("l5d-reqid")


def test_no_residual_header_when_the_residual_is_empty(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    http_request(proxy.port, headers={"Host": "web"})
    assert "l5d-dst-residual" not in header_names(backend.requests[0].head)
    assert "l5d-ctx-dtab" not in header_names(backend.requests[0].head)


def test_via_is_appended_on_requests_and_responses(http_proxy, disco_dir, recording_backend):
    backend = recording_backend(http_response(200, b"ok", [("Via", "1.1 upstream-proxy")]))
    disco_dir.write("web", backend)
    proxy = http_proxy()
    r = http_request(proxy.port, headers=[("Host", "web"), ("Via", "1.0 client-proxy")])
    assert ", ".join(r.header_all("Via")) == "1.1 upstream-proxy, 1.1 turnout"
    assert ", ".join(backend.requests[0].header_all("Via")) == "1.0 client-proxy, 1.1 turnout"
    r = http_request(proxy.port, headers={"Host": "web"})
    assert backend.requests[1].header_all("Via") == ["1.1 turnout"]


def test_max_call_depth_counts_via_hops(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy(server={"maxCallDepth": 3})
    ok = http_request(proxy.port, headers=[("Host", "web"), ("Via", "1.1 a, 1.1 b")])
    assert ok.status == 200
    too_deep = http_request(proxy.port, headers=[("Host", "web"), ("Via", "1.1 a, 1.1 b, 1.1 c")])
    assert too_deep.status == 400
    assert too_deep.has_header("l5d-err")
    split = http_request(proxy.port, headers=[("Host", "web"), ("Via", "1.1 a"), ("Via", "b, c")])
    assert split.status == 400
    assert backend.request_count == 1


def test_clear_context_strips_l5d_headers_both_ways(http_proxy, disco_dir, recording_backend):
    response = http_response(
        200, b"ok", [("l5d-success-class", "1.0"), ("l5d-whatever", "x"), ("X-Keep", "1")]
    )
    a, b = recording_backend(response, name="a"), recording_backend(name="b")
    disco_dir.write("a", a)
    disco_dir.write("b", b)
    proxy = http_proxy(server={"clearContext": True})
    r = http_request(
        proxy.port,
        headers={
            "Host": "a",
            "l5d-dtab": "/svc/a => /#/io.l5d.fs/b",
            "l5d-ctx-dtab": "/svc/a => /#/io.l5d.fs/b",
            "l5d-ctx-trace": "AAAA",
            "l5d-sample": "1",
            "l5d-custom": "x",
        },
    )
    assert r.status == 200
    assert b.request_count == 0  # the dtab overrides were ignored
    [req] = a.requests
    names = header_names(req.head)
    assert {"l5d-dtab", "l5d-ctx-dtab", "l5d-ctx-trace", "l5d-sample", "l5d-custom"}.isdisjoint(
        names
    )
    assert not [n for n, _ in r.headers if n.lower().startswith("l5d-")]
    assert r.header("X-Keep") == "1"


def test_clear_context_errors_carry_no_l5d_err(http_proxy, disco_dir):
    proxy = http_proxy(server={"clearContext": True})
    r = http_request(proxy.port, headers={"Host": "nowhere"})
    assert r.status == 502
    assert not [n for n, _ in r.headers if n.lower().startswith("l5d-")]
    assert b"Unable to route" not in r.body
    assert b"io.l5d.fs" not in r.raw_head + r.body


def test_hop_by_hop_request_headers_are_removed(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    headers = [
        ("Host", "web"),
        ("Connection", "x-foo, keep-alive"),
        ("Connection", "X-Bar"),
        ("X-Foo", "1"),
        ("x-bar", "2"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("X-End-To-End", "kept"),
    ]
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", headers))
        assert c.read_final().status == 200
    names = header_names(backend.requests[0].head)
    for hop in ("connection", "x-foo", "x-bar", "keep-alive", "te", "trailer", "proxy-connection"):
        assert hop not in names, (hop, backend.requests[0].head)
    assert "proxy-authorization" not in names
    assert backend.requests[0].header("X-End-To-End") == "kept"


def test_upgrade_request_headers_are_removed(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    headers = [
        ("Host", "web"),
        ("Connection", "Upgrade, HTTP2-Settings"),
        ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
    ]
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", headers))
        r = c.read_final()
    assert r.status == 200
    names = header_names(backend.requests[0].head)
    assert {"connection", "upgrade", "http2-settings"}.isdisjoint(names), names


def test_hop_by_hop_response_headers_are_removed(http_proxy, disco_dir, recording_backend):
    response = http_response(
        200,
        b"body",
        [
            ("Connection", "x-foo, keep-alive"),
            ("X-Foo", "1"),
            ("Keep-Alive", "timeout=5, max=100"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Connection", "keep-alive"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "foo"),
            ("TE", "trailers"),
            ("X-End-To-End", "kept"),
        ],
    )
    backend = recording_backend(response)
    disco_dir.write("web", backend)
    proxy = http_proxy()
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "/", {"Host": "web"}))
        r = c.read_final()
        # the keep-alive connection still works afterwards
        c.send(build_request("GET", "/", {"Host": "web"}))
        assert c.read_final().body == b"body"
    assert r.body == b"body"
    names = [n.lower() for n, _ in r.headers]
    for hop in ("x-foo", "keep-alive", "proxy-authenticate", "proxy-connection", "trailer"):
        assert hop not in names, (hop, r.raw_head)
    assert "upgrade" not in names
    assert "te" not in names
    assert "connection" not in names
    assert r.header("X-End-To-End") == "kept"


def test_trailing_whitespace_is_not_part_of_a_header_value(
    http_proxy, disco_dir, recording_backend
):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: web \r\nX-A:  spaced\t \r\n\r\n")
        r = c.read_final()
    assert r.status == 200, r.text
    assert b"X-A: spaced\r\n" in backend.requests[0].head


def test_dtab_local_header_is_ignored_and_passed_through(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    dtab_local = "/svc/web => /$/io.buoyant.http.status/500"
    r = http_request(proxy.port, headers={"Host": "web", "dtab-local": dtab_local})
    assert r.status == 200
    assert backend.requests[0].header("dtab-local") == dtab_local


def test_timestamp_header(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy(server={"timestampHeader": "x-arrived"})
    before = time.time() * 1000
    http_request(proxy.port, headers={"Host": "web"})
    after = time.time() * 1000
    stamp = int(backend.requests[0].header("x-arrived"))
    assert before - 1000 <= stamp <= after + 1000
