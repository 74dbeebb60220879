"""What a route leaves behind: an expired name's service stats and metrics go with it, and a
routing error raised per request does not keep the request's frames alive."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path as FsPath
from typing import Any

from turnout.config import load_text
from turnout.linker import Linker
from turnout.metrics import MetricsTree
from turnout.naming import Dtab, Path
from turnout.plugin_manager import load_plugins
from turnout.router import RouteError, Router, accrual_for, balancer_for

FAKE_HTTP = FsPath(__file__).parents[1] / "plugins" / "turnout_fake_http.py"

CONFIG = """
admin: {port: 0}
routers:
- protocol: http
  dtab: /svc => /$/fail;
  bindingCache: {idleTtlSecs: 5}
  servers: [{port: 0}]
"""


def fake_http() -> Any:
    name = "turnout_fake_http"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FAKE_HTTP)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def router() -> Router:
    plugins = load_plugins({}, autoload=False, extra=[fake_http()])
    linker = Linker.build(load_text(CONFIG, registry=plugins.registry), plugins, routers=False)
    config = linker.config.routers[0]
    return Router(
        config,
        linker.interpreters[config.effective_label],
        MetricsTree(),
        new_pool=lambda address, client: None,
        balancer_factory=balancer_for,
        accrual_factory=accrual_for,
    )


def service_keys(r: Router, *name: str) -> list[tuple[str, ...]]:
    scope = ("rt", "http", "service", *name)
    return [k for k, _ in r.metrics.items() if k[: len(scope)] == scope]


def test_an_expired_name_takes_its_service_stats_and_metrics_along() -> None:
    async def run() -> None:
        r = router()
        a = r.route(Path.read("/svc/a"), Dtab.empty)
        ab = r.route(Path.read("/svc/a/b"), Dtab.empty)
        await a.wait(2)
        await ab.wait(2)
        r.metrics.counter(*a.service.scope, "failures", "no_route").incr()
        assert service_keys(r, "svc", "a", "b")
        nested = service_keys(r, "svc", "a", "b")
        ab.last_used = time.monotonic() + 60  # only /svc/a goes idle
        r.expire_idle(time.monotonic() + 6)
        assert service_keys(r, "svc", "a") == nested  # the nested name keeps its metrics
        assert Path.read("/svc/a") not in r._services
        again = r.route(Path.read("/svc/a"), Dtab.empty)  # a new route: new stats
        assert again.service is not a.service
        assert service_keys(r, "svc", "a", "requests")
        r.close()

    asyncio.run(run())


def test_names_evicted_past_the_cache_size_lose_their_stats_at_the_next_sweep() -> None:
    async def run() -> None:
        r = router()
        r.max_routes = 2
        for name in ("x", "y", "z"):
            r.route(Path.read(f"/svc/{name}"), Dtab.empty)
        assert service_keys(r, "svc", "x")  # evicted, pruned by the next expire_idle
        r.expire_idle()
        assert not service_keys(r, "svc", "x")
        assert service_keys(r, "svc", "y") and service_keys(r, "svc", "z")
        r.close()

    asyncio.run(run())


def test_a_routing_error_is_raised_fresh_each_time() -> None:
    async def run() -> None:
        r = router()
        route = r.route(Path.read("/svc/web"), Dtab.empty)
        await route.wait(2)
        errors = []
        for _ in range(2):
            try:
                route.choose()
            except RouteError as e:
                errors.append(e)
        assert errors[0] is not errors[1]
        assert errors[0].kind == "fail"
        kept = [t for t in route._targets if isinstance(t, RouteError)] + [route.error]
        assert all(e is None or e.__traceback__ is None for e in kept)
        r.close()

    asyncio.run(run())


def test_prune_scopes_keeps_longer_scopes_it_is_told_to() -> None:
    m = MetricsTree()
    for key in (("s", "a", "n"), ("s", "a", "b", "n"), ("s", "a", "c", "n"), ("s", "d", "n")):
        m.counter(*key)
    assert m.prune_scopes([("s", "a")], keep=[("s", "a", "b")]) == 2
    assert sorted(k for k, _ in m.items()) == [("s", "a", "b", "n"), ("s", "d", "n")]
