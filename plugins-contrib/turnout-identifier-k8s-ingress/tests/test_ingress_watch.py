"""The Ingress cache against the Kubernetes API double (``networking.k8s.io/v1`` list and
watch, which this plugin added to the double): Ingresses added, edited and deleted, one
namespace or all, 410 Gone (re-list), an API outage (last good rules kept), the API down at
first. The cache runs on an asyncio loop in the test's thread; the double in its own."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from turnout.api import Path
from turnout_identifier_k8s_ingress.cache import IngressCache
from turnout_namer_k8s.testing import (
    KubeApiDouble,
    api_path,
    ingress_backend,
    ingress_object,
    ingress_rule,
)

PREFIX = Path.read("/svc")
SLOW = 10.0


def fast_backoff():
    return iter(lambda: 0.02, None)


def web_rules(service: str = "web", host: str = "web.example", port: int = 80):
    return [ingress_rule(host, [("/", "Prefix", ingress_backend(service, port))])]


def run(kube: KubeApiDouble, main: Callable[[IngressCache], Coroutine[Any, Any, None]], **kw):
    async def guarded() -> None:
        cache = IngressCache(
            PREFIX,
            host="127.0.0.1",
            port=kube.port,
            namespace=kw.pop("namespace", None),
            ingress_class=kw.pop("ingress_class", "linkerd"),
            ignore_default_backends=kw.pop("ignore_default_backends", False),
            backoff=fast_backoff,
            **kw,
        )
        cache.start()
        try:
            await main(cache)
        finally:
            await cache.close()

    asyncio.run(guarded())


def named(cache: IngressCache, host: str, target: str = "/") -> str | None:
    name = cache.matcher.match(host.encode(), target.encode())
    return None if name is None else name.show


async def until(predicate: Callable[[], bool], timeout: float = SLOW, what: str = "") -> None:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true after {timeout}s: {what or predicate}")
        await asyncio.sleep(0.005)


def test_the_double_serves_ingresses_under_their_api_group(kube):
    kube.set_ingress("prod", "web", web_rules())
    with urllib.request.urlopen(kube.url + api_path("ingresses"), timeout=5) as r:
        body = json.loads(r.read())
    assert body["kind"] == "IngressList" and body["apiVersion"] == "networking.k8s.io/v1"
    assert [i["metadata"]["name"] for i in body["items"]] == ["web"]
    with urllib.request.urlopen(kube.url + api_path("ingresses", "prod", "web"), timeout=5) as r:
        obj = json.loads(r.read())
    assert obj["kind"] == "Ingress" and obj["apiVersion"] == "networking.k8s.io/v1"
    assert obj["spec"]["rules"][0]["host"] == "web.example"
    # not under the core group, and no Endpoints under networking.k8s.io
    for path in ("/api/v1/ingresses", "/apis/networking.k8s.io/v1/endpoints"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(kube.url + path, timeout=5)
        info.value.close()  # (its response)
        assert info.value.code == 404, path


def test_ingresses_added_edited_and_deleted_are_followed(kube):
    kube.set_ingress("prod", "web", web_rules())

    async def main(cache: IngressCache) -> None:
        await asyncio.wait_for(cache.loaded.wait(), SLOW)
        assert named(cache, "web.example") == "/svc/prod/80/web"
        assert kube.requests("list")[0].path == "/apis/networking.k8s.io/v1/ingresses"
        await until(lambda: kube.active_watches == 1)
        # added
        kube.set_ingress("prod", "api", web_rules("api", "api.example", 8080))
        await until(lambda: named(cache, "api.example") == "/svc/prod/8080/api")
        # edited: another backend, then another class
        kube.set_ingress("prod", "web", web_rules("web-v2"))
        await until(lambda: named(cache, "web.example") == "/svc/prod/80/web-v2")
        kube.set_ingress(
            "prod", "web", web_rules(), annotations={"kubernetes.io/ingress.class": "nginx"}
        )
        await until(lambda: named(cache, "web.example") is None)
        # deleted
        kube.delete_ingress("prod", "api")
        await until(lambda: named(cache, "api.example") is None)
        assert cache.lists == 1 and len(kube.requests("list")) == 1  # the watch did the rest
        state = cache.state()
        assert state["loaded"] and state["errors"] == 0 and state["ingresses"] == []

    run(kube, main)


def test_one_namespace_only(kube):
    kube.set_ingress("prod", "web", web_rules())
    kube.set_ingress("test", "web", web_rules(host="test.example"))

    async def main(cache: IngressCache) -> None:
        await asyncio.wait_for(cache.loaded.wait(), SLOW)
        assert named(cache, "web.example") == "/svc/prod/80/web"
        assert named(cache, "test.example") is None
        assert (
            kube.requests("list")[0].path == "/apis/networking.k8s.io/v1/namespaces/prod/ingresses"
        )
        await until(lambda: kube.active_watches == 1)
        kube.set_ingress("test", "other", web_rules(host="other.example"))
        kube.set_ingress("prod", "other", web_rules(host="other.example", service="o"))
        await until(lambda: named(cache, "other.example") == "/svc/prod/80/o")

    run(kube, main, namespace="prod")


def test_extensions_v1beta1_objects_are_read_too(kube):
    kube.put_object(
        "ingresses",
        {
            "metadata": {"name": "old", "namespace": "default"},
            "spec": {
                "backend": {"serviceName": "fallback", "servicePort": 8080},
                "rules": [
                    {"http": {"paths": [{"path": "/old/.*", "backend": {
                        "serviceName": "old", "servicePort": "http"}}]}}
                ],
            },
        },
    )  # fmt: skip

    async def main(cache: IngressCache) -> None:
        await asyncio.wait_for(cache.loaded.wait(), SLOW)
        assert named(cache, "any", "/old/x") == "/svc/default/http/old"
        assert named(cache, "any", "/new") == "/svc/default/8080/fallback"

    run(kube, main)
    run(kube, lambda cache: _no_fallback(cache), ignore_default_backends=True)


async def _no_fallback(cache: IngressCache) -> None:
    await asyncio.wait_for(cache.loaded.wait(), SLOW)
    assert named(cache, "any", "/old/x") == "/svc/default/http/old"
    assert named(cache, "any", "/new") is None


def test_an_outage_keeps_the_rules_and_410_re_lists(kube):
    kube.set_ingress("prod", "web", web_rules())

    async def main(cache: IngressCache) -> None:
        await asyncio.wait_for(cache.loaded.wait(), SLOW)
        await until(lambda: kube.active_watches == 1)
        kube.stop()
        await until(lambda: cache.last_error is not None and cache.error_since is not None)
        await asyncio.sleep(0.2)  # several failed reconnections
        assert named(cache, "web.example") == "/svc/prod/80/web"  # still identified
        kube.set_ingress("prod", "web", web_rules("web-v2"))
        kube.compact()  # the history is gone too: the watch gets 410 and re-lists
        kube.start()
        await until(lambda: named(cache, "web.example") == "/svc/prod/80/web-v2")
        await until(lambda: cache.error_since is None)
        assert cache.expired >= 1 and cache.lists >= 2
        # an ERROR 410 event on an open watch: re-listed and watched again
        await until(lambda: kube.active_watches == 1)
        lists = cache.lists
        kube.expire_watches()
        await until(lambda: cache.lists > lists)
        kube.set_ingress("prod", "web", web_rules("web-v3"))
        await until(lambda: named(cache, "web.example") == "/svc/prod/80/web-v3")

    run(kube, main)


def test_api_down_at_first_then_loaded(kube):
    kube.set_ingress("prod", "web", web_rules())
    kube.stop()

    async def main(cache: IngressCache) -> None:
        await until(lambda: cache.errors >= 2)
        assert not cache.loaded.is_set() and named(cache, "web.example") is None
        kube.start()
        await asyncio.wait_for(cache.loaded.wait(), SLOW)
        assert named(cache, "web.example") == "/svc/prod/80/web"

    run(kube, main)


def test_close_ends_the_watch(kube):
    kube.set_ingress("prod", "web", web_rules())

    async def main(cache: IngressCache) -> None:
        await until(lambda: kube.active_watches == 1)
        await cache.close()
        await until(lambda: kube.active_watches == 0)

    run(kube, main)


def test_ingress_object_helper_shape():
    obj = ingress_object(
        "prod",
        "web",
        web_rules(),
        default_backend=ingress_backend("d", "http"),
        ingress_class_name="linkerd",
    )
    assert obj["spec"]["defaultBackend"] == {"service": {"name": "d", "port": {"name": "http"}}}
    assert obj["spec"]["ingressClassName"] == "linkerd"
    assert obj["spec"]["rules"][0]["http"]["paths"][0] == {
        "backend": {"service": {"name": "web", "port": {"number": 80}}},
        "path": "/",
        "pathType": "Prefix",
    }
