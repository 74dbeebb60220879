"""io.l5d.httpController: every /api/1 endpoint and error code of a real `turnout namerd`,
and the watch streams (one JSON document or dtab text per change)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.testing import DiscoDir, RawClient, build_request, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

V1, V2 = "AAAAAAAAAAE=", "AAAAAAAAAAI="


def namerd_config(disco: Path, admin: int, api: int, **storage: Any) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": admin},
            "storage": {
                "kind": "io.l5d.inMemory",
                "namespaces": {"default": "/svc => /#/io.l5d.fs;"},
                **storage,
            },
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco), "pollIntervalMs": 50}],
            "interfaces": [{"kind": "io.l5d.httpController", "port": api}],
        }
    )


@pytest.fixture
def namerd(namerd_process, disco_dir: DiscoDir):  # type: ignore[no-untyped-def]
    disco_dir.write("web", "127.0.0.1 8081")
    disco_dir.write("other", "127.0.0.1 8082")
    admin, api = free_port(), free_port()
    proc = namerd_process(namerd_config(disco_dir.root, admin, api), admin, api)
    proc.disco = disco_dir
    return proc


def watch(namerd: Any, target: str, headers: dict[str, str] | None = None) -> RawClient:
    client = RawClient("127.0.0.1", namerd.api_port, timeout=20)
    hdrs = {"Host": "namerd", **(headers or {})}
    client.send(build_request("GET", target, hdrs))
    return client


def chunks_seen(client: RawClient) -> bytes:
    return bytes(client.buffer)


# ---------------------------------------------------------------------------------------------
# dtabs
# ---------------------------------------------------------------------------------------------


def test_dtab_crud(namerd: Any) -> None:
    r = namerd.request("GET", "/api/1/dtabs")
    assert r.status == 200 and r.body == b'["default"]\n'
    assert r.header("content-type").startswith("application/json")

    r = namerd.request("GET", "/api/1/dtabs/default")
    assert r.status == 200 and r.header("etag") == V1
    assert json.loads(r.body) == [{"prefix": "/svc", "dst": "/#/io.l5d.fs"}]
    r = namerd.request("GET", "/api/1/dtabs/default", headers={"Accept": "application/dtab"})
    assert r.body == b"/svc=>/#/io.l5d.fs\n"
    assert r.header("content-type").startswith("application/dtab")
    r = namerd.request("HEAD", "/api/1/dtabs/default")
    assert r.status == 200 and r.header("etag") == V1
    assert namerd.request("GET", "/api/1/dtabs/nope").status == 404
    assert namerd.request("HEAD", "/api/1/dtabs/nope").status == 404

    # POST creates (204), twice is a conflict (409)
    body = json.dumps([{"prefix": "/svc", "dst": "/$/inet/127.0.0.1/1"}]).encode()
    json_ct = {"Content-Type": "application/json"}
    assert namerd.request("POST", "/api/1/dtabs/new", body, json_ct).status == 204
    assert namerd.request("POST", "/api/1/dtabs/new", body, json_ct).status == 409
    assert namerd.json("/api/1/dtabs") == ["default", "new"]

    # PUT without If-Match: upsert; with the current version: 204; stale: 412; missing: 404
    assert namerd.put("fresh", "/a=>/b").status == 204
    assert namerd.put("default", "/svc=>/#/io.l5d.fs/web", if_match=V1).status == 204
    r = namerd.put("default", "/svc=>/$/nil", if_match=V1)
    assert r.status == 412
    r = namerd.request("GET", "/api/1/dtabs/default", headers={"Accept": "text/plain"})
    assert r.header("etag") == V2 and r.body == b"/svc=>/#/io.l5d.fs/web\n"  # unchanged by 412
    assert namerd.put("missing", "/a=>/b", if_match=V1).status == 404
    assert namerd.put("default", "/a=>/b", if_match="garbage!").status == 412

    # DELETE: 204, then 404
    assert namerd.request("DELETE", "/api/1/dtabs/fresh").status == 204
    assert namerd.request("DELETE", "/api/1/dtabs/fresh").status == 404
    assert namerd.json("/api/1/dtabs") == ["default", "new"]


def test_dtab_bad_requests(namerd: Any) -> None:
    # a dtab that does not parse: 400 naming the position
    r = namerd.put("default", "/svc=>/#/io.l5d.fs;;")
    assert r.status == 400
    assert r.text == "Invalid dtab: '/' expected but ';' found at '/svc=>/#/io.l5d.fs;[;]'"
    r = namerd.request(
        "POST", "/api/1/dtabs/x", b'[{"prefix": "/svc"}]', {"Content-Type": "application/json"}
    )
    assert r.status == 400 and "invalid dentries" in r.text
    r = namerd.request("POST", "/api/1/dtabs/x", b"[null]", {"Content-Type": "application/json"})
    assert r.status == 400 and "invalid dentries" in r.text
    r = namerd.request("PUT", "/api/1/dtabs/x", b"{", {"Content-Type": "application/json"})
    assert r.status == 400 and "Invalid JSON dtab" in r.text
    # a content type namerd does not read
    r = namerd.request("PUT", "/api/1/dtabs/x", b"/a=>/b", {"Content-Type": "image/png"})
    assert r.status == 400 and "Invalid Content-Type" in r.text
    r = namerd.request("POST", "/api/1/dtabs/x", b"/a=>/b", {"Content-Type": "image/png"})
    assert r.status == 400
    # namespace names that could escape a store's layout
    for bad in ("a%2Fb", "..", "%2E%2E", "a/b"):
        r = namerd.put(bad, "/a=>/b")
        assert r.status == 400, (bad, r.status)
        assert "invalid dtab namespace" in r.text
    assert namerd.json("/api/1/dtabs") == ["default"]
    # other methods and paths: 404 as in Linkerd
    assert namerd.request("PATCH", "/api/1/dtabs/default").status == 404
    assert namerd.request("POST", "/api/1/dtabs").status == 404
    assert namerd.request("GET", "/api/1/nothing").status == 404
    assert namerd.request("GET", "/").status == 404


def test_dtab_watch_streams_and_reconnecting_sees_the_current_version(namerd: Any) -> None:
    one = watch(namerd, "/api/1/dtabs/default?watch=true", {"Accept": "application/dtab"})
    listing = watch(namerd, "/api/1/dtabs?watch=1")
    try:
        assert one.wait_for(b"/svc=>/#/io.l5d.fs\n", timeout=10)
        assert b"chunked" in chunks_seen(one).lower()
        assert listing.wait_for(b'["default"]\n', timeout=10)
        assert namerd.put("default", "/svc=>/#/io.l5d.fs/other").status == 204
        assert one.wait_for(b"/svc=>/#/io.l5d.fs/other\n", timeout=10)
        assert namerd.put("b", "/x=>/y").status == 204
        assert listing.wait_for(b'["b", "default"]\n', timeout=10)
    finally:
        one.close()  # the client drops
        listing.close()
    # while nobody watches, the dtab changes; a new watch starts with the current state
    assert namerd.put("default", "/svc=>/#/io.l5d.fs/web").status == 204
    again = watch(namerd, "/api/1/dtabs/default?watch=true")
    try:
        assert again.wait_for(b'[{"prefix": "/svc", "dst": "/#/io.l5d.fs/web"}]\n', timeout=10)
        assert b"other" not in chunks_seen(again)
    finally:
        again.close()
    r = namerd.request("HEAD", "/api/1/dtabs/default")
    assert r.header("etag") == "AAAAAAAAAAM="


# ---------------------------------------------------------------------------------------------
# bind, addr, resolve, delegate, bound-names
# ---------------------------------------------------------------------------------------------


def test_bind_addr_resolve_delegate(namerd: Any) -> None:
    web = {
        "type": "bound",
        "addrs": [{"ip": "127.0.0.1", "port": 8081, "meta": {}}],
        "meta": {},
    }
    tree = namerd.json("/api/1/bind/default?path=/svc/web")
    assert tree == {
        "type": "leaf",
        "bound": {"addr": web, "id": "/#/io.l5d.fs/web", "path": "/"},
    }
    tree = namerd.json("/api/1/bind/default?path=/svc/web/x&dtab=/svc/web=>/svc/other")
    assert tree["bound"]["id"] == "/#/io.l5d.fs/other"
    assert tree["bound"]["path"] == "/x"
    assert namerd.json("/api/1/bind/default?path=/nothing") == {"type": "neg"}

    assert namerd.json("/api/1/addr/default?path=/%23/io.l5d.fs/web") == web
    assert namerd.json("/api/1/addr/default?path=/%23/io.l5d.fs/missing") == {"type": "neg"}
    assert namerd.json("/api/1/resolve/default?path=/svc/web") == web
    assert namerd.json("/api/1/resolve/default?path=/nothing") == {"type": "neg"}

    delegated = namerd.json("/api/1/delegate/default?path=/svc/web")
    assert delegated["type"] == "delegate" and delegated["path"] == "/svc/web"
    assert delegated["delegate"]["dentry"] == {"prefix": "/svc", "dst": "/#/io.l5d.fs"}
    assert delegated["delegate"]["bound"]["id"] == "/#/io.l5d.fs/web"
    # without a namespace: the given dtab against the namers only
    plain = namerd.json("/api/1/delegate?path=/svc/web")
    assert plain["type"] == "neg"
    plain = namerd.json("/api/1/delegate?path=/s/web&dtab=/s=>/%23/io.l5d.fs")
    assert plain["delegate"]["bound"]["id"] == "/#/io.l5d.fs/web"

    assert namerd.json("/api/1/bound-names") == ["/#/io.l5d.fs/other", "/#/io.l5d.fs/web"]

    # errors: a missing or invalid path, an invalid dtab, other methods
    r = namerd.request("GET", "/api/1/bind/default")
    assert r.status == 400 and r.text.startswith("Invalid path: None / ")
    r = namerd.request("GET", "/api/1/bind/default?path=svc")
    assert r.status == 400 and r.text.startswith("Invalid path: svc / ")
    r = namerd.request("GET", "/api/1/addr/default?path=")
    assert r.status == 400 and r.text.startswith("Invalid path:  / ")
    r = namerd.request("GET", "/api/1/resolve/default?path=/svc/web&dtab=/a=>")
    assert r.status == 400 and r.text.startswith("Invalid dtab: ")
    assert namerd.request("POST", "/api/1/bind/default?path=/svc/web").status == 404
    assert namerd.request("GET", "/api/1/bind/..?path=/svc/web").status == 400


def test_bind_and_addr_watches(namerd: Any) -> None:
    bind = watch(namerd, "/api/1/bind/default?path=/svc/web&watch=true")
    addr = watch(namerd, "/api/1/addr/default?path=/%23/io.l5d.fs/web&watch=true")
    resolve = watch(namerd, "/api/1/resolve/default?path=/svc/web&watch=true")
    try:
        assert bind.wait_for(b'"id": "/#/io.l5d.fs/web"', timeout=10)
        assert addr.wait_for(b'"port": 8081', timeout=10)
        assert resolve.wait_for(b'"port": 8081', timeout=10)
        # a dtab change re-binds
        assert namerd.put("default", "/svc=>/#/io.l5d.fs;/svc/web=>/svc/other").status == 204
        assert bind.wait_for(b'"id": "/#/io.l5d.fs/other"', timeout=10)
        assert resolve.wait_for(b'"port": 8082', timeout=10)
        # a discovery change reaches the addr stream
        namerd.disco.write("web", "127.0.0.1 9091")
        assert addr.wait_for(b'"port": 9091', timeout=10)
        # each document is one line
        docs = [json.loads(x) for x in _ndjson(bytes(addr.buffer))]
        assert [d["addrs"][0]["port"] for d in docs] == [8081, 9091]
    finally:
        bind.close()
        addr.close()
        resolve.close()


def _ndjson(raw: bytes) -> list[bytes]:
    """The JSON documents of a chunked NDJSON response."""
    body = raw.split(b"\r\n\r\n", 1)[1]
    data = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        data += rest[:size]
        body = rest[size + 2 :]
    return [line for line in data.split(b"\n") if line.strip()]


def test_namerd_admin(namerd: Any) -> None:
    import urllib.error
    import urllib.parse
    import urllib.request

    def admin(path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{namerd.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    assert admin("/admin/ping") == (200, "pong")
    status, body = admin("/dtabs.json")
    assert status == 200 and json.loads(body) == {"default": "/svc=>/#/io.l5d.fs"}
    query = urllib.parse.urlencode({"path": "/svc/web", "dtab": "/svc=>/#/io.l5d.fs"})
    status, body = admin(f"/dtab/delegator.json?{query}")
    assert status == 200
    tree = json.loads(body)
    assert tree["delegate"]["bound"]["id"] == "/#/io.l5d.fs/web"
    status, body = admin("/dtab/delegator.json?path=/svc/web&dtab=/svc=>")
    assert status == 400 and body.startswith("Invalid dtab: ")
