"""namerd's io.l5d.k8s dtab store against the Kubernetes API double: the store contract, CAS
conflicts between writers (409), 410 Gone re-lists, API outages, and the DTab resources it
writes (Linkerd's l5d.io/v1alpha1 shape)."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from turnout.api import (
    Dtab,
    DtabStoreForbidden,
    InvalidNamespace,
    NamespaceExists,
    VersionMismatch,
)
from turnout.namerd.store_contract import (
    DtabStoreContract,
    MakeStore,
    next_matching,
    next_of,
    run,
)
from turnout_namer_k8s.dtab_store import K8sDtabStore, K8sStoreError
from turnout_namer_k8s.testing import KubeApiDouble, dtab_object

pytestmark = pytest.mark.timeout(120)

A = Dtab.read("/svc=>/#/io.l5d.fs/a")
B = Dtab.read("/svc=>/#/io.l5d.fs/b;/host=>/svc")
DTABS = "/apis/l5d.io/v1alpha1/namespaces/linkerd/dtabs"


def store_for(kube: KubeApiDouble, namespace: str = "linkerd") -> K8sDtabStore:
    return K8sDtabStore("127.0.0.1", kube.port, namespace, backoff=lambda: iter(lambda: 0.05, None))


class TestK8sDtabStoreContract(DtabStoreContract):
    @pytest.fixture
    def make_store(self, kube: KubeApiDouble) -> MakeStore:
        return lambda: store_for(kube)


def get_json(kube: KubeApiDouble, path: str) -> Any:
    with urllib.request.urlopen(kube.url + path, timeout=10) as r:
        return json.loads(r.read())


def test_one_dtab_resource_per_namespace(kube: KubeApiDouble) -> None:
    async def scenario(store: Any) -> None:
        v1 = await store.create("default", B)
        obj = await asyncio.to_thread(get_json, kube, f"{DTABS}/default")
        assert obj["apiVersion"] == "l5d.io/v1alpha1" and obj["kind"] == "DTab"
        assert obj["metadata"]["namespace"] == "linkerd"
        assert obj["dentries"] == [
            {"prefix": "/svc", "dst": "/#/io.l5d.fs/b"},
            {"prefix": "/host", "dst": "/svc"},
        ]
        assert v1 == obj["metadata"]["resourceVersion"].encode()  # Linkerd: Buf.Utf8(rv)
        # a DTab written by someone else (kubectl apply) is read the same way
        kube.put_object("dtabs", dtab_object("linkerd", "other", "/a=>/b;/c=>/d"))
        kube.put_object("dtabs", dtab_object("elsewhere", "ignored", "/a=>/b"))
        assert await store.list() == ["default", "other"]
        found = await store.get("other")
        assert found is not None and found[0] == Dtab.read("/a=>/b;/c=>/d")

    run(lambda: store_for(kube), scenario)
    writes = list(kube.requests("write"))
    assert [(r.method, r.path) for r in writes][:1] == [("POST", DTABS)]


def answer(req: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def test_a_second_writer_makes_a_stale_version_fail(kube: KubeApiDouble) -> None:
    async def scenario(store: Any) -> None:
        other = store_for(kube)
        try:
            v1 = await store.create("default", A)
            with pytest.raises(NamespaceExists):
                await other.create("default", B)
            v2 = await other.put("default", B, v1)
            with pytest.raises(VersionMismatch):
                await store.put("default", A, v1)
            assert await store.get("default") == (B, v2)
            v3 = await store.put("default", A, v2)
            assert await other.get("default") == (A, v3)
            assert await other.put("default", B) not in (v1, v2, v3)  # the upsert reads first
        finally:
            await other.close()

    run(lambda: store_for(kube), scenario)
    conflicts = [r for r in kube.requests("write") if r.status == 409]
    assert {r.method for r in conflicts} == {"POST", "PUT"}


def test_the_double_refuses_a_stale_resource_version(kube: KubeApiDouble) -> None:
    kube.put_object("dtabs", dtab_object("linkerd", "default", "/a=>/b"))
    obj = get_json(kube, f"{DTABS}/default")
    stale = dict(obj, metadata=dict(obj["metadata"], resourceVersion="1"))
    req = urllib.request.Request(
        kube.url + f"{DTABS}/default",
        data=json.dumps(stale).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    code, body = answer(req)
    assert code == 409
    assert body["reason"] == "Conflict"
    req = urllib.request.Request(
        kube.url + f"{DTABS}/missing",
        data=json.dumps(dtab_object("linkerd", "missing", "/a=>/b")).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    assert answer(req)[0] == 404  # a custom resource is not created by a PUT


def test_namespace_names_are_kubernetes_names(kube: KubeApiDouble) -> None:
    async def scenario(store: Any) -> None:
        with pytest.raises(InvalidNamespace, match=r"io\.l5d\.k8s"):
            await store.create("Upper_case", A)

    run(lambda: store_for(kube), scenario)
    assert base64.b64encode(b"42") == b"NDI="


def test_410_gone_re_lists(kube: KubeApiDouble) -> None:
    async def scenario(store: K8sDtabStore) -> None:
        await store.create("default", A)
        it = store.watch("default")
        assert (await next_of(it))[0] == A
        assert await asyncio.to_thread(kube.wait_watches, 1)
        kube.compact()
        await asyncio.to_thread(kube.expire_watches)  # ERROR 410 on the open watch
        v2 = await store.put("default", B)
        assert await next_matching(it, lambda s: s[1] == v2) == (B, v2)
        assert store.relists >= 2
        # and as an HTTP 410 status, resuming after an outage that outlived the history
        kube.gone_as_status = True
        await asyncio.to_thread(kube.stop)
        kube.put_object("dtabs", dtab_object("linkerd", "default", A.show))
        kube.compact()
        await asyncio.to_thread(kube.start)
        state = await next_matching(it, lambda s: s[0] == A)
        obj = await asyncio.to_thread(get_json, kube, f"{DTABS}/default")
        assert state[1] == obj["metadata"]["resourceVersion"].encode()
        assert store.relists >= 3
        assert any(r.status == 410 for r in kube.requests("watch"))
        await it.aclose()  # type: ignore[attr-defined]

    run(lambda: store_for(kube), scenario)


def test_api_down_then_back(kube: KubeApiDouble) -> None:
    async def scenario(store: K8sDtabStore) -> None:
        v1 = await store.create("default", A)
        it = store.watch("default")
        names = store.watch_list()
        assert await next_of(it) == (A, v1)
        assert await next_of(names) == ["default"]
        await asyncio.to_thread(kube.stop)
        with pytest.raises(K8sStoreError, match="failed"):
            await store.get("default")
        with pytest.raises(K8sStoreError):
            await store.put("default", B)
        # changed while the API server was down (another writer, through etcd)
        kube.put_object("dtabs", dtab_object("linkerd", "default", B.show))
        kube.put_object("dtabs", dtab_object("linkerd", "other", A.show))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(kube.start)
        state = await next_matching(it, lambda s: s[0] == B)
        obj = await asyncio.to_thread(get_json, kube, f"{DTABS}/default")
        assert state[1] == obj["metadata"]["resourceVersion"].encode()
        assert await next_matching(names, lambda s: s != ["default"]) == ["default", "other"]
        v3 = await store.put("default", A, state[1])
        assert await next_matching(it, lambda s: s[1] == v3) == (A, v3)
        await it.aclose()  # type: ignore[attr-defined]
        await names.aclose()  # type: ignore[attr-defined]

    run(lambda: store_for(kube), scenario)


def test_forbidden_is_reported_as_such(kube: KubeApiDouble) -> None:
    async def scenario(store: Any) -> None:
        kube.fail(403, count=1)
        with pytest.raises(DtabStoreForbidden, match="403 Forbidden"):
            await store.get("default")
        assert await store.get("default") is None

    run(lambda: store_for(kube), scenario)


def test_close_ends_watches(kube: KubeApiDouble) -> None:
    async def main() -> None:
        store = store_for(kube)
        it = store.watch("default")
        assert await next_of(it) == (None, None)
        pending = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0.2)
        await store.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, 10)

    asyncio.run(main())
