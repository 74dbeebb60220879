"""End to end: a real turnout process whose HTTP router names requests with ``io.l5d.ingress``
and binds them with ``io.l5d.k8s``, both against the Kubernetes API double, routes to
backends whose addresses are the services' endpoints; editing the Ingress moves the traffic;
a request no rule matches gets the router's "cannot identify" answer (400)."""

from __future__ import annotations

import json
import urllib.request

import pytest
import yaml
from turnout.testing import RecordingBackend, free_port, http_request, wait_until
from turnout_namer_k8s.testing import (
    KubeApiDouble,
    ingress_backend,
    ingress_rule,
    subsets_for,
)

pytestmark = pytest.mark.integration

SLOW = 20.0
ENV = {"TURNOUT_PLUGINS": "turnout-identifier-k8s-ingress,turnout-namer-k8s,turnout-protocol-http"}


def config(kube: KubeApiDouble, **identifier: object) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port(), "ip": "127.0.0.1"},
            "namers": [{"kind": "io.l5d.k8s", "host": "127.0.0.1", "port": kube.port}],
            "routers": [
                {
                    "protocol": "http",
                    "identifier": {
                        "kind": "io.l5d.ingress",
                        "host": "127.0.0.1",
                        "port": kube.port,
                        **identifier,
                    },
                    "dtab": "/svc => /#/io.l5d.k8s;",
                    "servers": [{"port": free_port(), "ip": "127.0.0.1"}],
                }
            ],
        },
        sort_keys=False,
    )


def endpoints(kube: KubeApiDouble, service: str, backend: RecordingBackend) -> None:
    kube.set_endpoints("prod", service, subsets_for([(backend.host, backend.port)]))


def ask(proc, host: str = "shop.example", path: str = "/") -> str:
    """The answering backend's name, or the status and body."""
    try:
        r = http_request(proc.port, "GET", path, {"Host": host}, timeout=5)
    except OSError as e:
        return f"error {e}"
    return r.text.split(" ", 1)[0] if r.status == 200 else f"status {r.status} {r.text.strip()}"


def test_requests_are_routed_by_the_ingress_and_follow_its_edits(
    turnout_process, recording_backend, kube
):
    web, api = recording_backend(name="web"), recording_backend(name="api")
    endpoints(kube, "web", web)
    endpoints(kube, "api", api)
    kube.set_ingress(
        "prod",
        "shop",
        [
            ingress_rule(
                "shop.example",
                [
                    ("/api", "Prefix", ingress_backend("api", "http")),
                    ("/", "Prefix", ingress_backend("web", "http")),
                ],
            )
        ],
    )
    proc = turnout_process(config(kube), env=ENV)

    assert wait_until(lambda: ask(proc, path="/api/users") == "api", timeout=SLOW)
    assert api.requests[-1].target == "/api/users"
    assert ask(proc, path="/index.html") == "web"
    assert ask(proc, host="shop.example:4140", path="/") == "web"
    with urllib.request.urlopen(
        proc.admin_url + "/identifier_state/io.l5d.ingress.json", timeout=5
    ) as r:
        (state,) = json.loads(r.read())
    assert state["loaded"] and state["errors"] == 0
    assert [rule["name"] for rule in state["ingresses"][0]["rules"]] == [
        "/svc/prod/http/api",
        "/svc/prod/http/web",
    ]
    # no rule for this host: not identified
    answer = ask(proc, host="other.example")
    assert answer.startswith("status 400"), answer

    # the Ingress is edited: everything to the api service
    kube.set_ingress(
        "prod",
        "shop",
        [ingress_rule("shop.example", [("/", "Prefix", ingress_backend("api", "http"))])],
    )
    assert wait_until(lambda: ask(proc, path="/index.html") == "api", timeout=SLOW)
    # a default backend catches the rest
    kube.set_ingress(
        "prod",
        "shop",
        [ingress_rule("shop.example", [("/", "Prefix", ingress_backend("api", "http"))])],
        default_backend=ingress_backend("web", "http"),
    )
    assert wait_until(lambda: ask(proc, host="other.example") == "web", timeout=SLOW)
    # deleted: nothing is identified any more
    kube.delete_ingress("prod", "shop")
    assert wait_until(lambda: ask(proc).startswith("status 400"), timeout=SLOW)


def test_ignore_default_backends_and_the_namespace_option(turnout_process, recording_backend, kube):
    web = recording_backend(name="web")
    endpoints(kube, "web", web)
    kube.set_ingress(
        "prod",
        "shop",
        [ingress_rule("shop.example", [("/", "Prefix", ingress_backend("web", "http"))])],
        default_backend=ingress_backend("web", "http"),
    )
    # the same host in another namespace, listed first: not watched with namespace: prod
    kube.set_ingress(
        "aaa",
        "shop",
        [ingress_rule("shop.example", [("/", "Prefix", ingress_backend("nothing", "http"))])],
    )
    proc = turnout_process(config(kube, namespace="prod", ignoreDefaultBackends=True), env=ENV)
    assert wait_until(lambda: ask(proc) == "web", timeout=SLOW)
    assert ask(proc, host="other.example").startswith("status 400")
