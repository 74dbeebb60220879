"""The namer against the Kubernetes API double: the load balancer address appearing, changing
and disappearing, the Service deleted, ports by name and by number, the label selector, an API
outage (last good set kept), 410 Gone (re-list). The namer runs on an asyncio loop in the
test's thread; the double serves from its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from turnout.metrics import MetricsTree
from turnout.naming import AddrBound, AddrFailed, Neg, Ok, Path, Pending
from turnout_namer_k8s.testing import KubeApiDouble
from turnout_namer_k8s_external.namer import K8sExternalNamer

PREFIX = Path.read("/#/io.l5d.k8s.external")
#: generous bound for what should take milliseconds (a loaded 2-CPU machine)
SLOW = 10.0
PORTS = [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "admin", "port": 9990}]


def fast_backoff():
    return iter(lambda: 0.02, None)


def run(kube: KubeApiDouble, main: Callable[[K8sExternalNamer], Coroutine[Any, Any, None]], **kw):
    """Run ``main(namer)`` on a new loop; the namer is closed however it ends."""

    async def guarded() -> None:
        namer = K8sExternalNamer(
            PREFIX,
            host="127.0.0.1",
            port=kube.port,
            metrics=MetricsTree(),
            backoff=fast_backoff,
            **kw,
        )
        try:
            await main(namer)
        finally:
            await namer.close()

    asyncio.run(guarded())


def current(act) -> Any:
    """What a lookup gives now: "pending", "neg", "failed: ..." or the sorted addresses."""
    state = act.value
    if state is Pending:
        return "pending"
    assert isinstance(state, Ok), state
    if state.value == Neg:
        return "neg"
    addr = state.value.value.addr.value
    if isinstance(addr, AddrBound):
        return sorted(str(a) for a in addr.addresses)
    if isinstance(addr, AddrFailed):
        return f"failed: {addr.cause}"
    return repr(addr)


async def until(predicate: Callable[[], bool], timeout: float = SLOW, what: str = "") -> None:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true after {timeout}s: {what or predicate}")
        await asyncio.sleep(0.005)


def test_the_load_balancer_address_appears_changes_and_disappears(kube):
    kube.set_service("prod", "web", PORTS, load_balancer=[])  # not provisioned yet

    async def main(namer: K8sExternalNamer) -> None:
        act = namer.lookup(Path.read("/prod/http/web/residual"))
        assert current(act) == "pending"  # before the first answer
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == "neg")
        kube.set_service("prod", "web", PORTS, load_balancer=["104.155.170.94"])
        await until(lambda: current(act) == ["104.155.170.94:80"])
        bound = act.value.value.value
        assert str(bound.id) == "/#/io.l5d.k8s.external/prod/http/web"
        assert str(bound.residual) == "/residual"
        assert [str(p) for p in namer.bound_names()] == ["/#/io.l5d.k8s.external/prod/http/web"]
        var = bound.addr
        # the address changes: the same binding's Var follows
        kube.set_service("prod", "web", PORTS, load_balancer=["104.155.170.95", "10.1.1.1"])
        await until(lambda: current(act) == ["10.1.1.1:80", "104.155.170.95:80"])
        assert act.value.value.value.addr is var
        # the load balancer loses its address, then the Service is deleted: Neg
        kube.set_service("prod", "web", PORTS, load_balancer=[])
        await until(lambda: current(act) == "neg")
        kube.set_service("prod", "web", PORTS, load_balancer=["104.155.170.96"])
        await until(lambda: current(act) == ["104.155.170.96:80"])
        kube.delete_service("prod", "web")
        await until(lambda: current(act) == "neg")
        state = namer.state()["watches"]["prod/http/web"]
        assert state["kubernetes"]["services"]["lists"] == 1  # one list, then the watch only
        assert state["kubernetes"]["services"]["exists"] is False
        assert len(kube.requests("list")) == 1
        assert kube.requests("list")[0].path == "/api/v1/namespaces/prod/services"
        assert kube.requests("list")[0].query["fieldSelector"] == "metadata.name=web"
        assert not kube.requests(resource="endpoints")  # the Service only
        obs.close()

    run(kube, main)


def test_ports_by_name_and_by_number(kube):
    kube.set_service("prod", "web", PORTS, load_balancer=["10.0.0.1"])

    async def main(namer: K8sExternalNamer) -> None:
        acts = {
            p: namer.lookup(Path.read(f"/prod/{p}/web")) for p in ("http", "80", "admin", "9990")
        }
        missing = namer.lookup(Path.read("/prod/8080/web"))  # a target port is not a port
        observers = [a.observe(lambda _: None) for a in (*acts.values(), missing)]
        await until(lambda: current(acts["http"]) == ["10.0.0.1:80"])
        await until(lambda: current(acts["80"]) == ["10.0.0.1:80"])
        await until(lambda: current(acts["admin"]) == ["10.0.0.1:9990"])
        await until(lambda: current(acts["9990"]) == ["10.0.0.1:9990"])
        await until(lambda: current(missing) == "neg")
        # the port is renumbered and "admin" removed
        kube.set_service(
            "prod", "web", [{"name": "http", "port": 8000}], load_balancer=["10.0.0.1"]
        )
        await until(lambda: current(acts["http"]) == ["10.0.0.1:8000"])
        await until(lambda: current(acts["80"]) == "neg")
        await until(lambda: current(acts["admin"]) == "neg")
        for o in observers:
            o.close()

    run(kube, main)


def test_the_label_selector_is_the_services_label(kube):
    kube.set_service("prod", "web", PORTS, labels={"version": "v1"}, load_balancer=["10.0.0.1"])

    async def main(namer: K8sExternalNamer) -> None:
        v1 = namer.lookup(Path.read("/prod/http/web/v1"))
        v2 = namer.lookup(Path.read("/prod/http/web/v2"))
        obs = [v1.observe(lambda _: None), v2.observe(lambda _: None)]
        await until(lambda: current(v1) == ["10.0.0.1:80"])
        await until(lambda: current(v2) == "neg")
        assert str(v1.value.value.value.id) == "/#/io.l5d.k8s.external/prod/http/web/v1"
        selectors = {r.query.get("labelSelector") for r in kube.requests("list")}
        assert selectors == {"version=v1", "version=v2"}
        kube.set_service("prod", "web", PORTS, labels={"version": "v2"}, load_balancer=["10.0.0.1"])
        await until(lambda: current(v2) == ["10.0.0.1:80"])
        await until(lambda: current(v1) == "neg")
        assert namer.lookup(Path.read("/prod/http/web")).value == Ok(Neg)  # no label value
        for o in obs:
            o.close()

    run(kube, main, label_selector="version")


def test_an_api_outage_keeps_the_last_good_set_and_410_re_lists(kube):
    kube.set_service("prod", "web", PORTS, load_balancer=["10.0.0.1"])

    async def main(namer: K8sExternalNamer) -> None:
        act = namer.lookup(Path.read("/prod/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: current(act) == ["10.0.0.1:80"])
        await until(lambda: kube.active_watches == 1)
        kube.stop()
        await until(lambda: namer.state()["watches"]["prod/http/web"]["lastError"] is not None)
        await asyncio.sleep(0.2)  # several failed reconnections
        assert current(act) == ["10.0.0.1:80"]  # still serving
        # changed while the API server is down; picked up when it is back
        kube.set_service("prod", "web", PORTS, load_balancer=["10.0.0.2"])
        kube.compact()  # and the history is gone: the watch gets 410 and re-lists
        kube.start()
        await until(lambda: current(act) == ["10.0.0.2:80"])
        await until(lambda: namer.state()["watches"]["prod/http/web"]["errorSince"] is None)
        lists = namer.state()["watches"]["prod/http/web"]["kubernetes"]["services"]["lists"]
        assert (
            lists >= 2
            or namer.state()["watches"]["prod/http/web"]["kubernetes"]["services"]["expired"] >= 1
        )
        # an ERROR 410 event on the open watch: re-listed, then watched again
        await until(lambda: kube.active_watches == 1)
        expired = namer.state()["watches"]["prod/http/web"]["kubernetes"]["services"]["expired"]
        kube.expire_watches()
        await until(
            lambda: (
                namer.state()["watches"]["prod/http/web"]["kubernetes"]["services"]["expired"]
                > expired
            )
        )
        kube.set_service("prod", "web", PORTS, load_balancer=["10.0.0.3"])
        await until(lambda: current(act) == ["10.0.0.3:80"])
        obs.close()

    run(kube, main)


def test_api_down_before_any_answer_fails_then_binds(kube):
    kube.set_service("prod", "web", PORTS, load_balancer=["10.0.0.1"])
    kube.stop()

    async def main(namer: K8sExternalNamer) -> None:
        act = namer.lookup(Path.read("/prod/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: str(current(act)).startswith("failed: io.l5d.k8s.external"))
        kube.start()
        await until(lambda: current(act) == ["10.0.0.1:80"])
        obs.close()

    run(kube, main)


def test_nothing_is_watched_once_nobody_routes(kube):
    kube.set_service("prod", "web", PORTS, load_balancer=["10.0.0.1"])

    async def main(namer: K8sExternalNamer) -> None:
        act = namer.lookup(Path.read("/prod/http/web"))
        obs = act.observe(lambda _: None)
        await until(lambda: kube.active_watches == 1)
        obs.close()
        await until(lambda: kube.active_watches == 0)
        assert namer.active_watches() == 0

    run(kube, main)
