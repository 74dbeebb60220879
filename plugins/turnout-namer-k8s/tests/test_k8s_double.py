"""The Kubernetes API double itself (turnout_namer_k8s.testing), against what the Kubernetes API
documentation specifies: object and list shapes, Status errors, resourceVersions, watches
(replay, synthetic ADDED, selector transitions, 410, bookmarks, timeouts) and test controls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from turnout.testing import free_port
from turnout_namer_k8s.testing import KubeApiDouble, KubeApiProcess, endpoint_subset, subsets_for

EP = "/api/v1/namespaces/default/endpoints"


def run(coro_fn: Callable[[aiohttp.ClientSession], Any]) -> Any:
    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            return await coro_fn(session)

    return asyncio.run(main())


async def get(session, url, **params) -> tuple[int, Any]:
    async with session.get(url, params=params) as r:
        return r.status, await r.json()


async def watch_events(session, url, n: int, timeout: float = 5.0, **params) -> list[dict]:
    """The first ``n`` events of a watch (fewer if the stream ends first)."""
    events: list[dict] = []
    async with asyncio.timeout(timeout), session.get(url, params={"watch": "true", **params}) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("application/json")
        async for line in r.content:
            if line.strip():
                events.append(json.loads(line))
            if len(events) >= n:
                break
    return events


def test_get_an_object_and_a_kubernetes_404(kube):
    rv = kube.set_endpoints("default", "web", subsets_for([("10.0.0.1", 80)]), labels={"a": "b"})

    async def main(s):
        status, obj = await get(s, kube.url + EP + "/web")
        assert status == 200
        assert obj["kind"] == "Endpoints" and obj["apiVersion"] == "v1"
        meta = obj["metadata"]
        assert meta["name"] == "web" and meta["namespace"] == "default"
        assert meta["resourceVersion"] == str(rv) and meta["uid"] and meta["creationTimestamp"]
        assert obj["subsets"] == [
            {
                "addresses": [{"ip": "10.0.0.1"}],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            }
        ]
        status, body = await get(s, kube.url + EP + "/nope")
        assert status == 404
        assert body == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'endpoints "nope" not found',
            "reason": "NotFound",
            "details": {"name": "nope", "kind": "endpoints"},
            "code": 404,
        }
        status, body = await get(s, kube.url + "/api/v1/namespaces/default/pods")
        assert status == 404 and body["kind"] == "Status"

    run(main)


def test_lists_with_field_and_label_selectors(kube):
    kube.set_endpoints("default", "web", labels={"version": "v1"})
    kube.set_endpoints("default", "api", labels={"version": "v2"})
    kube.set_endpoints("other", "web")
    kube.set_service("default", "web", [{"name": "http", "port": 80, "targetPort": 8080}])

    async def names(s, path, **params):
        status, body = await get(s, kube.url + path, **params)
        assert status == 200, body
        assert body["kind"] == "EndpointsList" and body["apiVersion"] == "v1"
        assert body["metadata"]["resourceVersion"] == str(kube.resource_version)
        assert all("kind" not in i and "apiVersion" not in i for i in body["items"])
        return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in body["items"]]

    async def main(s):
        assert await names(s, EP) == ["default/api", "default/web"]
        assert await names(s, "/api/v1/endpoints") == ["default/api", "default/web", "other/web"]
        assert await names(s, EP, fieldSelector="metadata.name=web") == ["default/web"]
        assert await names(s, EP, fieldSelector="metadata.name==web") == ["default/web"]
        assert await names(s, EP, fieldSelector="metadata.name!=web") == ["default/api"]
        assert await names(s, EP, labelSelector="version=v2") == ["default/api"]
        assert await names(s, EP, labelSelector="version in (v1,v3)") == ["default/web"]
        assert await names(s, EP, labelSelector="version notin (v1),version") == ["default/api"]
        assert await names(s, EP, labelSelector="!version") == []
        assert await names(s, "/api/v1/endpoints", labelSelector="!version") == ["other/web"]
        assert (
            await names(s, EP, fieldSelector="metadata.name=web", labelSelector="version=v2") == []
        )
        status, body = await get(s, kube.url + EP, fieldSelector="spec.foo=x")
        assert status == 400 and body["reason"] == "BadRequest"
        status, body = await get(s, kube.url + EP, labelSelector="a=b=c")
        assert status == 400
        status, body = await get(s, kube.url + "/api/v1/namespaces/default/services")
        assert body["kind"] == "ServiceList"
        assert body["items"][0]["spec"]["ports"] == [
            {"protocol": "TCP", "name": "http", "port": 80, "targetPort": 8080}
        ]

    run(main)


def test_watch_replays_every_change_after_a_resource_version(kube):
    rv0 = kube.set_endpoints("default", "web", subsets_for([("10.0.0.1", 80)]))
    rv1 = kube.set_endpoints("default", "web", subsets_for([("10.0.0.2", 80)]))
    kube.set_endpoints("default", "other")
    kube.delete_endpoints("default", "web")
    rv4 = kube.set_endpoints("default", "web")

    async def main(s):
        events = await watch_events(
            s, kube.url + EP, 3, fieldSelector="metadata.name=web", resourceVersion=str(rv0)
        )
        assert [e["type"] for e in events] == ["MODIFIED", "DELETED", "ADDED"]
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions[0] == rv1 and versions == sorted(versions) and versions[-1] == rv4
        assert events[0]["object"]["kind"] == "Endpoints"
        assert events[0]["object"]["subsets"][0]["addresses"] == [{"ip": "10.0.0.2"}]
        # the deleted object is shown as it was, with the deletion's resourceVersion
        assert events[1]["object"]["subsets"][0]["addresses"] == [{"ip": "10.0.0.2"}]
        assert int(events[1]["object"]["metadata"]["resourceVersion"]) == rv4 - 1

    run(main)


def test_watch_without_a_version_starts_with_synthetic_added_events(kube):
    kube.set_endpoints("default", "a")
    kube.set_endpoints("default", "b")

    async def main(s):
        events: list[dict] = []

        async def collect():
            events.extend(await watch_events(s, kube.url + EP, 3))

        task = asyncio.create_task(collect())
        await asyncio.to_thread(kube.wait_watches, 1)
        kube.set_endpoints("default", "c")
        await task
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
            ("ADDED", "c"),
        ]

    run(main)


def test_objects_leaving_and_entering_a_label_selector(kube):
    rv = kube.set_endpoints("default", "web", labels={"version": "v1"})
    kube.set_endpoints("default", "web", labels={"version": "v2"})
    kube.set_endpoints("default", "web", labels={"version": "v1"})
    kube.set_endpoints("default", "web", labels={"version": "v1", "x": "y"})

    async def main(s):
        events = await watch_events(
            s, kube.url + EP, 3, labelSelector="version=v1", resourceVersion=str(rv)
        )
        assert [e["type"] for e in events] == ["DELETED", "ADDED", "MODIFIED"]
        # DELETED shows the previous content (still v1) at the change's version
        assert events[0]["object"]["metadata"]["labels"] == {"version": "v1"}
        assert events[0]["object"]["metadata"]["resourceVersion"] == str(rv + 1)

    run(main)


def test_too_old_resource_versions_get_410(kube):
    rv = kube.set_endpoints("default", "web")
    kube.set_endpoints("default", "web", subsets_for([("10.0.0.1", 80)]))
    kube.compact()

    async def main(s):
        events = await watch_events(s, kube.url + EP, 5, resourceVersion=str(rv))
        assert events == [
            {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"too old resource version: {rv} ({rv + 1})",
                    "reason": "Expired",
                    "code": 410,
                },
            }
        ]  # and the stream ended
        kube.gone_as_status = True
        status, body = await get(s, kube.url + EP, watch="true", resourceVersion=str(rv))
        assert status == 410 and body["code"] == 410 and body["reason"] == "Expired"
        # the current version is fine
        events = await watch_events(
            s, kube.url + EP, 1, resourceVersion=str(rv + 1), timeoutSeconds="0.2"
        )
        assert events == []

    run(main)


def test_the_history_keeps_a_bounded_number_of_changes():
    with KubeApiDouble(history=3) as kube:
        first = kube.set_endpoints("default", "web")
        for _ in range(5):
            last = kube.set_endpoints("default", "web")

        async def main(s):
            old = await watch_events(s, kube.url + EP, 1, resourceVersion=str(first))
            assert old[0]["type"] == "ERROR" and old[0]["object"]["code"] == 410
            recent = await watch_events(s, kube.url + EP, 3, resourceVersion=str(last - 3))
            assert [e["type"] for e in recent] == ["MODIFIED"] * 3

        run(main)


def test_timeouts_bookmarks_and_stream_controls():
    with KubeApiDouble(bookmark_interval=0.1) as kube:
        rv = kube.set_endpoints("default", "web")

        async def main(s):
            # timeoutSeconds: a clean end
            loop = asyncio.get_running_loop()
            started = loop.time()
            events = await watch_events(
                s, kube.url + EP, 10, resourceVersion=str(rv), timeoutSeconds="0.3"
            )
            assert events == [] and 0.25 < loop.time() - started < 10
            # bookmarks, only when allowed
            events = await watch_events(
                s, kube.url + EP, 2, resourceVersion=str(rv), allowWatchBookmarks="true"
            )
            assert [e["type"] for e in events] == ["BOOKMARK", "BOOKMARK"]
            assert events[0]["object"] == {
                "kind": "Endpoints",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv)},
            }

            async def one(control: Callable[[], None]) -> tuple[list[dict], BaseException | None]:
                got: list[dict] = []
                error: BaseException | None = None

                async def read():
                    nonlocal error
                    try:
                        got.extend(
                            await watch_events(s, kube.url + EP, 10, resourceVersion=str(rv))
                        )
                    except aiohttp.ClientPayloadError as e:
                        error = e

                for _ in range(500):  # the previous watch's handler ends when it sees the close
                    if kube.active_watches == 0:
                        break
                    await asyncio.sleep(0.01)
                task = asyncio.create_task(read())
                await asyncio.to_thread(kube.wait_watches, 1)
                await asyncio.to_thread(control)
                await task
                return got, error

            assert await one(kube.end_watches) == ([], None)
            got, error = await one(kube.expire_watches)
            assert error is None and [e["object"]["code"] for e in got] == [410]
            got, error = await one(kube.drop_watches)
            assert got == [] and isinstance(error, aiohttp.ClientPayloadError)
            await asyncio.sleep(0.1)
            assert kube.active_watches == 0

        run(main)


def test_injected_failures(kube):
    async def main(s):
        kube.fail(500, count=2)
        for _ in range(2):
            status, body = await get(s, kube.url + EP)
            assert status == 500 and body["reason"] == "InternalError" and body["code"] == 500
        assert (await get(s, kube.url + EP))[0] == 200
        kube.fail(503)
        for _ in range(3):
            assert (await get(s, kube.url + EP))[0] == 503
        kube.fail(None)
        assert (await get(s, kube.url + EP))[0] == 200
        assert [r.status for r in kube.requests("list")] == [500, 500, 200, 503, 503, 503, 200]

    run(main)


def test_stop_refuses_and_start_serves_the_same_objects_and_history(kube):
    rv = kube.set_endpoints("default", "web")
    port = kube.port
    kube.stop()

    async def refused(s):
        with pytest.raises(aiohttp.ClientConnectorError):
            await get(s, kube.url + EP)

    run(refused)
    kube.set_endpoints("default", "web", subsets_for([("10.0.0.1", 80)]))  # while down
    kube.start()
    assert kube.port == port

    async def main(s):
        events = await watch_events(s, kube.url + EP, 1, resourceVersion=str(rv))
        assert events[0]["type"] == "MODIFIED"
        assert events[0]["object"]["subsets"][0]["addresses"] == [{"ip": "10.0.0.1"}]

    run(main)


def test_write_verbs(kube):
    async def main(s):
        body = {"metadata": {"name": "web"}, "subsets": [endpoint_subset(["10.0.0.1"], {"h": 1})]}
        async with s.post(kube.url + EP, json=body) as r:
            assert r.status == 201
            created = await r.json()
            assert created["metadata"]["namespace"] == "default"
        async with s.post(kube.url + EP, json=body) as r:
            assert r.status == 409 and (await r.json())["reason"] == "AlreadyExists"
        async with s.put(kube.url + EP + "/web", json=body) as r:
            assert r.status == 200
            updated = await r.json()
            assert updated["metadata"]["uid"] == created["metadata"]["uid"]
            assert int(updated["metadata"]["resourceVersion"]) > int(
                created["metadata"]["resourceVersion"]
            )
        async with s.put(kube.url + EP + "/new", json={"metadata": {}}) as r:
            assert r.status == 201  # endpoints may be created by PUT
        svc = "/api/v1/namespaces/default/services/web"
        async with s.put(kube.url + svc, json={"spec": {"ports": []}}) as r:
            assert r.status == 404  # services may not
        async with s.delete(kube.url + EP + "/web") as r:
            assert r.status == 200
        async with s.delete(kube.url + EP + "/web") as r:
            assert r.status == 404

    run(main)


def test_the_deprecated_watch_path_of_one_object(kube):
    rv = kube.set_endpoints("default", "web")
    kube.set_endpoints("default", "other")
    kube.set_endpoints("default", "web", subsets_for([("10.0.0.1", 80)]))

    async def main(s):
        async with (
            asyncio.timeout(5),
            s.get(
                kube.url + "/api/v1/watch/namespaces/default/endpoints/web",
                params={"resourceVersion": str(rv)},
            ) as r,
        ):
            line = await r.content.readline()
        event = json.loads(line)
        assert event["type"] == "MODIFIED" and event["object"]["metadata"]["name"] == "web"

    run(main)


@pytest.mark.integration
def test_subprocess_mode_survives_a_kill_with_its_state_but_not_its_history(tmp_path):
    api = KubeApiProcess(free_port(), state_file=tmp_path / "etcd.json")
    try:
        api.start()
        rv = api.set_endpoints("default", "web", subsets_for([("10.0.0.1", 80)]))
        api.kill()
        api.start()

        async def main(s):
            status, body = await get(s, api.url + EP + "/web")
            assert status == 200 and body["metadata"]["resourceVersion"] == str(rv)
            events = await watch_events(s, api.url + EP, 1, resourceVersion=str(rv - 1))
            assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410

        run(main)
        assert api.state()["resourceVersion"] == rv
    finally:
        api.kill()
