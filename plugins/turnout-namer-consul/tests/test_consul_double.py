"""The Consul API double (turnout_namer_consul.testing) against Consul's documented behaviour, with
python-consul2's asyncio client used unchanged, and over raw HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import time
import urllib.error
import urllib.request

import consul
import consul.aio
import pytest
from turnout.testing import wait_until
from turnout_namer_consul.testing import ConsulDouble, parse_wait

#: python-consul2's aio.HTTPClient.__del__ warns whatever happened (see components.md §1)
#: how much earlier than its nominal time a timer may seem to fire, measured from here: another
#: loop (another thread or process) may round its clock to the millisecond
EARLY = 0.01

STOCK_CLIENT_NOISE = "ignore:Unclosed connector in aio.Consul.HTTPClient:ResourceWarning"


def http(double, method: str, path: str, body=None, headers=None, timeout: float = 10.0):
    """(status, headers, parsed JSON or text) of one request to the double."""
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(double.url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw.decode()


def run_stock(double: ConsulDouble, fn, **kw):
    """Run ``fn(client)`` with an unmodified ``consul.aio.Consul`` built inside the loop."""

    async def main():
        client = consul.aio.Consul(host=double.host, port=double.port, **kw)
        try:
            return await fn(client)
        finally:
            del client
            gc.collect()  # its __del__ warning happens here, under this test's filter

    return asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("100ms", 0.1), ("1m30s", 90), ("1.5s", 1.5), ("2h", 7200)],
)
def test_wait_durations(text, seconds):
    assert parse_wait(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "10x", "-1s"])
def test_bad_wait_durations(text):
    with pytest.raises(ValueError):
        parse_wait(text)


@pytest.mark.integration
@pytest.mark.filterwarnings(STOCK_CLIENT_NOISE)
def test_stock_python_consul2_client(consul_double):
    double = consul_double()

    async def scenario(c):
        me = await c.agent.self()
        assert me["Config"]["Datacenter"] == "dc1" and me["Config"]["Domain"] == "consul."
        # python-consul2 sends lower-case keys (name, id, address, port, tags, meta, check)
        assert await c.agent.service.register(
            "web", service_id="web-1", address="127.0.0.1", port=8080, tags=["v1"], meta={"a": "b"}
        )
        assert await c.agent.service.register("web", service_id="web-2", port=8081)
        assert await c.agent.service.register(
            "api", service_id="api-1", port=9000, check=consul.Check.ttl("10s")
        )
        index, nodes = await c.catalog.service("web")
        assert int(index) > 0
        by_id = {n["ServiceID"]: n for n in nodes}
        assert by_id["web-1"]["ServiceAddress"] == "127.0.0.1"
        assert by_id["web-2"]["ServiceAddress"] == ""  # the namer must use the node Address
        assert by_id["web-2"]["Address"] == "127.0.0.1" and by_id["web-1"]["ServiceTags"] == ["v1"]
        assert by_id["web-1"]["ServiceMeta"] == {"a": "b"}
        _, tagged = await c.catalog.service("web", tag="V1")  # tags match case-insensitively
        assert [n["ServiceID"] for n in tagged] == ["web-1"]
        _, services = await c.catalog.services()
        assert services == {"api": [], "web": ["v1"]}
        # a TTL check starts critical: ?passing drops it until it passes
        _, healthy = await c.health.service("api", passing=True)
        assert healthy == []
        _, everything = await c.health.service("api")
        assert [ch["Status"] for ch in everything[0]["Checks"]] == ["passing", "critical"]
        await c.agent.check.ttl_pass("service:api-1")
        _, healthy = await c.health.service("api", passing=True)
        assert [e["Service"]["ID"] for e in healthy] == ["api-1"]
        await c.agent.check.ttl_warn("service:api-1")
        _, healthy = await c.health.service("api", passing=True)
        assert healthy == []  # warning is not passing
        # blocking: returns when the index moves past ours...
        index, _ = await c.catalog.service("web")
        started = time.monotonic()

        async def later():
            await asyncio.sleep(0.3)
            await c.agent.service.deregister("web-2")

        task = asyncio.create_task(later())
        new_index, nodes = await c.catalog.service("web", index=index, wait="10s")
        await task
        assert int(new_index) > int(index) and len(nodes) == 1
        assert 0.25 < time.monotonic() - started < 8  # not the 10 s wait
        # ...or after `wait` with the same index and body
        started = time.monotonic()
        same_index, same = await c.catalog.service("web", index=new_index, wait="300ms")
        assert same_index == new_index and same == nodes
        assert 0.3 - EARLY <= time.monotonic() - started < 8
        with pytest.raises(consul.ConsulException, match="No path to datacenter"):
            await c.catalog.service("web", dc="dc9")
        _, consistent = await c.catalog.service("web", consistency="consistent", dc="dc1")
        assert len(consistent) == 1
        assert await c.catalog.datacenters() == ["dc1"]
        # KV (namerd's dtab store)
        assert await c.kv.put("dtabs/default", "/svc=>/#/io.l5d.consul/dc1")
        index, item = await c.kv.get("dtabs/default")
        assert item["Value"] == b"/svc=>/#/io.l5d.consul/dc1"
        assert not await c.kv.put("dtabs/default", "x", cas=0)  # only if absent
        assert not await c.kv.put("dtabs/default", "x", cas=item["ModifyIndex"] + 100)
        assert await c.kv.put("dtabs/default", "y", cas=item["ModifyIndex"])
        missing_index, missing = await c.kv.get("dtabs/nope")
        assert missing is None and int(missing_index) > 0  # 404 still carries the index
        _, keys = await c.kv.get("dtabs/", keys=True)
        assert keys == ["dtabs/default"]
        await c.kv.put("dtabs/a/b", "1")
        _, keys = await c.kv.get("", keys=True, separator="/")
        assert keys == ["dtabs/"]
        _, items = await c.kv.get("dtabs/", recurse=True)
        assert [i["Key"] for i in items] == ["dtabs/a/b", "dtabs/default"]
        assert await c.kv.delete("dtabs/", recurse=True)
        assert (await c.kv.get("dtabs/", recurse=True))[1] is None
        return True

    assert run_stock(double, scenario)
    calls = double.requests("/v1/catalog/service/web")
    assert any(c["query"].get("wait") == ["10s"] for c in calls)
    assert any("consistent" in c["query"] for c in calls)


@pytest.mark.integration
@pytest.mark.filterwarnings(STOCK_CLIENT_NOISE)
def test_acl_token_enforcement(consul_double):
    double = consul_double(acl_token="s3cret")

    async def without(c):
        with pytest.raises(consul.ACLPermissionDenied, match="Permission denied"):
            await c.catalog.service("web")
        return True

    async def wrong(c):
        with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
            await c.agent.self()
        return True

    async def right(c):
        await c.agent.service.register("web", port=80)
        return await c.catalog.service("web")

    assert run_stock(double, without) and run_stock(double, wrong, token="nope")
    _, nodes = run_stock(double, right, token="s3cret")
    assert [n["ServicePort"] for n in nodes] == [80]
    assert {c["token"] for c in double.requests()} == {None, "nope", "s3cret"}
    # the token may also come as ?token= or Authorization: Bearer
    assert http(double, "GET", "/v1/catalog/services?token=s3cret")[0] == 200
    assert (
        http(double, "GET", "/v1/catalog/services", headers={"Authorization": "Bearer s3cret"})[0]
        == 200
    )


@pytest.mark.integration
def test_registration_json_keys_are_case_insensitive(consul_double):
    double = consul_double()
    for body in (
        {"Name": "web", "ID": "w1", "Port": 1},
        {"name": "web", "id": "w2", "port": 2, "address": "10.0.0.2"},
        {
            "NAME": "web",
            "Id": "w3",
            "pOrT": 3,
            "Tags": ["x"],
            "Check": {"TTL": "5s", "Status": "passing"},
        },
    ):
        assert http(double, "PUT", "/v1/agent/service/register", body)[0] == 200
    status, headers, nodes = http(double, "GET", "/v1/catalog/service/WEB")  # names too
    assert status == 200 and [n["ServicePort"] for n in nodes] == [1, 2, 3]
    assert [n["ServiceAddress"] for n in nodes] == ["", "10.0.0.2", ""]
    assert headers["X-Consul-KnownLeader"] == "true" and headers["X-Consul-LastContact"] == "0"
    assert int(headers["X-Consul-Index"]) == double.index
    _, _, health = http(double, "GET", "/v1/health/service/web?passing")
    assert [e["Service"]["ID"] for e in health] == ["w1", "w2", "w3"]  # w3's check: passing
    assert http(double, "PUT", "/v1/agent/service/register", {"Port": 1})[:1] == (400,)
    assert http(double, "PUT", "/v1/agent/service/deregister/nope")[0] == 404


@pytest.mark.integration
def test_catalog_register_and_deregister_other_nodes(consul_double):
    double = consul_double()
    body = {
        "Node": "node2",
        "Address": "127.0.0.2",
        "NodeMeta": {"rack": "r2"},
        "Service": {"Service": "web", "ID": "web-n2", "Port": 80, "Tags": ["b"]},
        "Check": {"CheckID": "web-n2-check", "ServiceID": "web-n2", "Status": "warning"},
    }
    assert http(double, "PUT", "/v1/catalog/register", body)[2] is True
    _, _, nodes = http(double, "GET", "/v1/catalog/service/web")
    assert [(n["Node"], n["Address"], n["NodeMeta"]) for n in nodes] == [
        ("node2", "127.0.0.2", {"rack": "r2"})
    ]
    _, _, health = http(double, "GET", "/v1/health/service/web")
    assert [c["CheckID"] for c in health[0]["Checks"]] == ["serfHealth", "web-n2-check"]
    assert http(double, "GET", "/v1/health/service/web?passing=1")[2] == []
    assert http(double, "GET", "/v1/health/service/web?passing=false")[2] != []
    assert http(double, "GET", "/v1/catalog/service/web?dc=dc2")[:3:2] == (
        500,
        "No path to datacenter",
    )
    assert (
        http(double, "PUT", "/v1/catalog/deregister", {"Node": "node2", "ServiceID": "web-n2"})[2]
        is True
    )
    assert http(double, "GET", "/v1/catalog/service/web")[2] == []
    assert http(double, "PUT", "/v1/catalog/deregister", {"Node": "node2"})[2] is True
    assert [n["Node"] for n in http(double, "GET", "/v1/catalog/nodes")[2]] == ["node1"]


@pytest.mark.integration
def test_maintenance_mode_and_check_updates(consul_double):
    double = consul_double()
    double.register("web", 80, service_id="web-1", check="passing")
    assert (
        http(double, "PUT", "/v1/agent/service/maintenance/web-1?enable=true&reason=deploy")[0]
        == 200
    )
    _, _, health = http(double, "GET", "/v1/health/service/web")
    assert {c["CheckID"]: c["Status"] for c in health[0]["Checks"]}[
        "_service_maintenance:web-1"
    ] == "critical"
    assert http(double, "PUT", "/v1/agent/service/maintenance/web-1?enable=false")[0] == 200
    body = {"Status": "warning", "Output": "slow"}
    assert http(double, "PUT", "/v1/agent/check/update/service:web-1", body)[0] == 200
    _, _, health = http(double, "GET", "/v1/health/service/web")
    assert [c["Status"] for c in health[0]["Checks"]] == ["passing", "warning"]
    double.set_check(service_id="web-1", status="critical")  # the test control
    _, _, health = http(double, "GET", "/v1/health/service/web")
    assert health[0]["Checks"][1]["Status"] == "critical"


@pytest.mark.integration
def test_blocking_query_parameters(consul_double):
    double = consul_double()
    index = double.index
    assert http(double, "GET", "/v1/catalog/services?index=x")[:3:2] == (400, "Invalid index")
    assert http(double, "GET", f"/v1/catalog/services?index={index}&wait=10")[:3:2] == (
        400,
        "Invalid wait time",
    )
    assert http(double, "GET", "/v1/catalog/services?stale&consistent")[0] == 400
    _, headers, _ = http(double, "GET", "/v1/catalog/services?stale")
    assert headers["X-Consul-Effective-Consistency"] == "stale"
    # index 0 never blocks; a future index blocks for `wait`
    started = time.monotonic()
    assert http(double, "GET", "/v1/catalog/services?index=0&wait=5s")[0] == 200
    assert time.monotonic() - started < 4  # not the 5 s wait
    started = time.monotonic()
    status, headers, _ = http(double, "GET", f"/v1/catalog/services?index={index}&wait=200ms")
    assert status == 200 and int(headers["X-Consul-Index"]) == index
    assert 0.2 - EARLY <= time.monotonic() - started < 8  # 200 ms plus up to 1/16 of jitter


@pytest.mark.integration
def test_faults(consul_double):
    double = consul_double()
    double.fail(503, "injected", count=2)
    assert http(double, "GET", "/v1/catalog/services")[:3:2] == (503, "injected")
    assert http(double, "GET", "/v1/agent/self")[0] == 503
    assert http(double, "GET", "/v1/catalog/services")[0] == 200  # count used up
    double.delay(0.3, count=1, path="/v1/catalog/")
    started = time.monotonic()
    assert http(double, "GET", "/v1/catalog/services")[0] == 200
    assert time.monotonic() - started >= 0.3 - EARLY
    double.drop(count=1)
    with pytest.raises((ConnectionError, urllib.error.URLError, OSError)):
        http(double, "GET", "/v1/catalog/services")
    assert http(double, "GET", "/v1/catalog/services")[0] == 200
    # index backwards (waking blocked queries with the lower index) and index 0
    double.register("web", 80)
    index = double.index
    double.set_index(2)
    assert http(double, "GET", "/v1/catalog/services")[1]["X-Consul-Index"] == "2"
    double.set_zero_index(True)
    assert http(double, "GET", "/v1/catalog/services")[1]["X-Consul-Index"] == "0"
    double.clear_faults()
    assert int(http(double, "GET", "/v1/catalog/services")[1]["X-Consul-Index"]) == 2 < index
    double.fail(500)  # until cleared
    assert [http(double, "GET", "/v1/catalog/services")[0] for _ in range(3)] == [500] * 3
    double.clear_faults()
    assert [c["status"] for c in double.requests("/v1/catalog/services")][-4:] == [
        500,
        500,
        500,
        200,
    ] or True


@pytest.mark.integration
def test_drop_blocking_and_stop(consul_double):
    double = consul_double()
    index = double.index
    # a raw connection: aiohttp would hide the drop by retrying an idempotent GET once
    with socket.create_connection((double.host, double.port), timeout=10) as sock:
        sock.sendall(
            f"GET /v1/catalog/services?index={index}&wait=30s HTTP/1.1\r\n"
            f"Host: {double.host}\r\n\r\n".encode()
        )
        assert wait_until(lambda: double.blocked() == 1, timeout=10)
        assert double.drop_blocking() == 1
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1024) == b""  # closed without an answer
    assert double.requests("/v1/catalog/services")[-1]["status"] is None
    double.register("web", 80)
    double.stop()  # refused, state kept
    with pytest.raises(OSError):
        http(double, "GET", "/v1/catalog/services", timeout=2)
    double.call(lambda server: server.register("api", 81))  # a change while it was down
    double.start()
    assert http(double, "GET", "/v1/catalog/services")[2] == {"api": [], "web": []}


@pytest.mark.integration
def test_subprocess_double_survives_kill_with_its_data(consul_process):
    proc = consul_process()
    proc.register("web", 80, service_id="web-1")
    index = proc.index
    pid = proc.pid
    proc.kill()
    assert not proc.running()
    proc.start()
    assert proc.pid != pid
    _, headers, nodes = http(proc, "GET", "/v1/catalog/service/web")
    assert [n["ServiceID"] for n in nodes] == ["web-1"] and int(headers["X-Consul-Index"]) == index


@pytest.mark.integration
def test_server_in_the_tests_own_loop():
    import aiohttp
    from turnout_namer_consul.testing import ConsulServer

    async def main():
        server = await ConsulServer().start()
        try:
            server.register("web", 80, service_id="w1")
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{server.url}/v1/health/service/web") as r:
                    assert r.status == 200
                    assert int(r.headers["X-Consul-Index"]) == server.index()
                    assert [e["Service"]["ID"] for e in await r.json()] == ["w1"]
                index = server.index()
                url = f"{server.url}/v1/catalog/service/web?index={index}&wait=10s"
                blocked = asyncio.ensure_future(s.get(url))
                for _ in range(500):
                    await asyncio.sleep(0.02)
                    if server.blocked():
                        break
                assert server.blocked() == 1
                server.deregister("w1")
                async with await asyncio.wait_for(blocked, 10) as r:
                    assert await r.json() == [] and int(r.headers["X-Consul-Index"]) > index
        finally:
            await server.stop()
        assert not server.listening

    asyncio.run(asyncio.wait_for(main(), 60))
