"""Routing end to end: identifiers, dstPrefix, absolute-form requests, the status namer.

Each test starts turnout from YAML with an ``io.l5d.fs`` namer over a temporary directory
and sends real requests (curl, urllib, raw sockets) to real backends on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import urllib.request

import pytest
from turnout.testing import RawClient, build_request, http_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--noproxy", "*", *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_curl_with_host_header_reaches_the_fs_service(http_proxy, disco_dir, nginx_backend):
    web = nginx_backend("web")
    disco_dir.write("web", web)
    proxy = http_proxy()
    result = curl("-H", "Host: web", f"http://127.0.0.1:{proxy.port}/hello?x=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "web /hello?x=1\n"


def test_two_services_by_host(http_proxy, disco_dir, nginx_backend):
    disco_dir.write("a", nginx_backend("a"))
    disco_dir.write("b", nginx_backend("b"))
    proxy = http_proxy()
    assert http_request(proxy.port, headers={"Host": "a"}).text == "a /\n"
    assert http_request(proxy.port, headers={"Host": "b"}).text == "b /\n"


def test_header_token_identifier_with_a_custom_header(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy(router={"identifier": {"kind": "io.l5d.header.token", "header": "x-svc"}})
    r = http_request(proxy.port, headers={"Host": "ignored", "x-svc": "web"})
    assert r.status == 200
    [req] = backend.requests
    assert req.header("l5d-dst-service") == "/svc/web"
    assert req.header("Host") == "ignored"  # Host is forwarded untouched
    # without the header the request cannot be named
    r = http_request(proxy.port, headers={"Host": "web"})
    assert r.status == 400
    assert r.has_header("l5d-err")


def test_method_and_host_identifier(http_proxy, disco_dir, recording_backend):
    getter, poster = recording_backend(name="get"), recording_backend(name="post")
    disco_dir.write("get", getter)
    disco_dir.write("post", poster)
    dtab = "/svc/1.1/GET/web => /#/io.l5d.fs/get; /svc/1.1/POST/web => /#/io.l5d.fs/post;"
    proxy = http_proxy(dtab=dtab, router={"identifier": {"kind": "io.l5d.methodAndHost"}})
    assert http_request(proxy.port, "GET", "/a/b", {"Host": "WEB"}).text == "get /a/b\n"
    assert http_request(proxy.port, "POST", "/a", {"Host": "web"}, b"x").text == "post /a\n"
    assert getter.requests[0].header("l5d-dst-service") == "/svc/1.1/GET/web"
    assert poster.requests[0].header("l5d-dst-service") == "/svc/1.1/POST/web"
    assert getter.requests[0].header("l5d-dst-residual") is None


def test_method_and_host_identifier_http10_has_no_host(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web10", backend)
    dtab = "/svc/1.0/GET => /#/io.l5d.fs/web10;"
    proxy = http_proxy(dtab=dtab, router={"identifier": {"kind": "io.l5d.methodAndHost"}})
    r = http_request(proxy.port, "GET", "/x", {"Host": "whatever"}, version="HTTP/1.0")
    assert r.status == 200, r
    assert backend.requests[0].header("l5d-dst-service") == "/svc/1.0/GET"


def test_method_and_host_identifier_with_uri_in_dst(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy(
        dtab="/svc/1.1/GET/web => /#/io.l5d.fs/web;",
        router={"identifier": {"kind": "io.l5d.methodAndHost", "httpUriInDst": True}},
    )
    r = http_request(proxy.port, "GET", "/users/42?full=1", {"Host": "web"})
    assert r.status == 200
    [req] = backend.requests
    assert req.target == "/users/42?full=1"
    assert req.header("l5d-dst-service") == "/svc/1.1/GET/web/users/42"
    assert req.header("l5d-dst-client") == "/#/io.l5d.fs/web"
    assert req.header("l5d-dst-residual") == "/users/42"


def test_path_identifier_with_segments(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("api", backend)
    proxy = http_proxy(
        dtab="/svc/api/v1 => /#/io.l5d.fs/api;",
        router={"identifier": {"kind": "io.l5d.path", "segments": 2}},
    )
    r = http_request(proxy.port, "GET", "/api/v1/users?id=3", {"Host": "x"})
    assert r.status == 200
    [req] = backend.requests
    assert req.target == "/api/v1/users?id=3"  # not consumed
    assert req.header("l5d-dst-service") == "/svc/api/v1"
    # fewer segments than configured: not identifiable
    assert http_request(proxy.port, "GET", "/api", {"Host": "x"}).status == 400


def test_path_identifier_consume_strips_the_segments(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("api", backend)
    proxy = http_proxy(
        dtab="/svc/api/v1 => /#/io.l5d.fs/api;",
        router={"identifier": {"kind": "io.l5d.path", "segments": 2, "consume": True}},
    )
    assert http_request(proxy.port, "GET", "/api/v1/users/7?q=a", {"Host": "x"}).status == 200
    assert http_request(proxy.port, "GET", "/api/v1", {"Host": "x"}).status == 200
    first, second = backend.requests
    assert first.target == "/users/7?q=a"
    assert second.target == "/"
    assert first.header("l5d-dst-service") == "/svc/api/v1"


def test_header_path_identifier(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy(
        dtab="/svc/web/v2 => /#/io.l5d.fs/web;",
        router={"identifier": {"kind": "io.l5d.header", "header": "x-route"}},
    )
    assert http_request(proxy.port, headers={"Host": "h", "x-route": "/web/v2"}).status == 200
    assert backend.requests[0].header("l5d-dst-service") == "/svc/web/v2"
    # a value that is not a path does not identify the request
    bad = http_request(proxy.port, headers={"Host": "h", "x-route": "not a path"})
    assert bad.status == 400
    assert bad.has_header("l5d-err")
    assert backend.request_count == 1


def test_static_identifier(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("fixed", backend)
    proxy = http_proxy(router={"identifier": {"kind": "io.l5d.static", "path": "/fixed"}})
    for host in ("a", "b"):
        assert http_request(proxy.port, headers={"Host": host}).status == 200
    assert [r.header("l5d-dst-service") for r in backend.requests] == ["/svc/fixed"] * 2


def test_identifier_list_is_tried_in_order(http_proxy, disco_dir, recording_backend):
    by_header, by_host = recording_backend(name="hdr"), recording_backend(name="host")
    disco_dir.write("hdr", by_header)
    disco_dir.write("web", by_host)
    proxy = http_proxy(
        router={
            "identifier": [
                {"kind": "io.l5d.header", "header": "x-route"},
                {"kind": "io.l5d.header.token", "header": "Host"},
            ]
        }
    )
    assert http_request(proxy.port, headers={"Host": "web", "x-route": "/hdr"}).text == "hdr /\n"
    assert http_request(proxy.port, headers={"Host": "web"}).text == "host /\n"


def test_dst_prefix(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy(dtab="/http => /#/io.l5d.fs;", router={"dstPrefix": "/http"})
    assert http_request(proxy.port, headers={"Host": "web"}).status == 200
    assert backend.requests[0].header("l5d-dst-service") == "/http/web"


def test_absolute_form_request_through_http_proxy(http_proxy, disco_dir, recording_backend):
    backend = recording_backend()
    disco_dir.write("web", backend)
    proxy = http_proxy()
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy.port}"})
    )
    with opener.open("http://web/some/path?q=1", timeout=5) as r:
        assert r.status == 200
        assert r.read() == b"backend /some/path?q=1\n"
    [req] = backend.requests
    assert req.target == "/some/path?q=1"  # origin-form upstream
    assert req.header("Host") == "web"
    assert req.header("l5d-dst-service") == "/svc/web"


def test_absolute_form_is_routed_by_its_host_not_the_host_header(
    http_proxy, disco_dir, recording_backend
):
    backend, other = recording_backend(name="web"), recording_backend(name="other")
    disco_dir.write("web", backend)
    disco_dir.write("other", other)
    proxy = http_proxy()
    with RawClient("127.0.0.1", proxy.port) as c:
        c.send(build_request("GET", "http://web/p", {"Host": "other"}, close=True))
        r = c.read_final()
    assert r.status == 200
    assert r.text == "web /p\n"
    # documented choice: the value used for routing is the value the backend receives
    assert backend.requests[0].header_all("Host") == ["web"]
    assert other.request_count == 0


def test_status_namer_answers_without_a_backend(http_proxy):
    proxy = http_proxy(dtab="/svc/* => /$/io.buoyant.http.status/418;")
    r = http_request(proxy.port, headers={"Host": "anything"})
    assert r.status == 418
    assert not r.has_header("l5d-err")
    # and keeps the connection usable
    with RawClient("127.0.0.1", proxy.port) as c:
        for _ in range(3):
            c.send(build_request("GET", "/", {"Host": "x"}))
            assert c.read_final().status == 418
