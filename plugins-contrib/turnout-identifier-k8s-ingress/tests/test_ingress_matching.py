"""Matching requests against Ingress rules, without an API server: Linkerd's IngressCacheTest
cases, and what ``networking.k8s.io/v1`` adds (pathType, wildcard hosts, ingressClassName,
service port names)."""

from __future__ import annotations

from typing import Any

import pytest
from turnout.api import Path
from turnout_identifier_k8s_ingress.identifier import IngressIdentifier
from turnout_identifier_k8s_ingress.model import compile_ingresses, ingress_spec, request_host
from turnout_namer_k8s.testing import ingress_backend, ingress_object, ingress_rule

PREFIX = Path.read("/svc")


def match(objects: list[dict[str, Any]], host: str | None, target: str, **kw: Any) -> str | None:
    matcher = compile_ingresses(
        {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects},
        PREFIX,
        kw.pop("ingress_class", "linkerd"),
        kw.pop("ignore_default_backends", False),
    )
    name = matcher.match(None if host is None else host.encode(), target.encode())
    return None if name is None else name.show


def v1beta1(
    name: str,
    paths: list[tuple[str | None, str, int | str]],
    *,
    host: str | None = None,
    namespace: str = "default",
    ingress_class: str | None = None,
    backend: tuple[str, int | str] | None = None,
) -> dict[str, Any]:
    """An ``extensions/v1beta1`` Ingress (Linkerd's test data): ``(path, service, port)``s."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if ingress_class is not None:
        meta["annotations"] = {"kubernetes.io/ingress.class": ingress_class}
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    **({"path": p} if p is not None else {}),
                    "backend": {"serviceName": s, "servicePort": port},
                }
                for p, s, port in paths
            ]
        }
    }
    if host is not None:
        rule["host"] = host
    spec: dict[str, Any] = {"rules": [rule]}
    if backend is not None:
        spec["backend"] = {"serviceName": backend[0], "servicePort": backend[1]}
    return {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": meta, "spec": spec}


MANY_CLASSES = [
    v1beta1("istio-ingress", [("/istio-only", "httpbin", 6060), ("/shared", "httpbin", 6061)],
            ingress_class="istio"),
    v1beta1("linkerd-ingress", [("/linkerd-only", "echo", 7070), ("/shared", "echo", 7071)],
            ingress_class="linkerd"),
    v1beta1("nginx-ingress", [("/nginx-only", "nginx", 8080), ("/shared", "nginx", 8081)],
            ingress_class="nginx"),
]  # fmt: skip


def test_only_ingresses_of_the_class_are_used():
    assert match(MANY_CLASSES, "myhost", "/istio-only") is None
    assert match(MANY_CLASSES, "myhost", "/nginx-only") is None
    assert match(MANY_CLASSES, "myhost", "/non-existing-path") is None
    assert match(MANY_CLASSES, "myhost", "/linkerd-only") == "/svc/default/7070/echo"
    assert match(MANY_CLASSES, "myhost", "/shared") == "/svc/default/7071/echo"
    # another class asked for
    assert match(MANY_CLASSES, "myhost", "/shared", ingress_class="nginx") == (
        "/svc/default/8081/nginx"
    )


def test_several_ingresses_of_the_class_first_match_in_name_order():
    two = [
        v1beta1("linkerd-ingress-2", [("/linkerd-2", "echo2", 7070), ("/shared", "shared2", 7071)]),
        v1beta1("linkerd-ingress", [("/linkerd-1", "echo1", 6060), ("/shared", "shared1", 6061)]),
    ]
    assert match(two, "myhost", "/linkerd-1") == "/svc/default/6060/echo1"
    assert match(two, "myhost", "/linkerd-2") == "/svc/default/7070/echo2"
    assert match(two, "myhost", "/shared") == "/svc/default/6061/shared1"  # (namespace, name)


def test_an_ingress_without_annotation_is_used_and_the_host_port_is_ignored():
    one = [v1beta1("the-ingress", [("/some-path", "echo", 1010), ("/other-path", "echo", 2021)])]
    assert match(one, "myhost", "/some-path") == "/svc/default/1010/echo"
    assert match(one, "myhost:80", "/some-path") == "/svc/default/1010/echo"
    assert match(one, "myhost", "/non-existing-path") is None


def test_default_backends_and_ignore_default_backends():
    one = [
        v1beta1(
            "the-ingress",
            [("/some-path", "echo", 1010), ("/other-path", "echo", 2021)],
            backend=("fallback", 2022),
        )
    ]
    assert match(one, "myhost", "/some-path") == "/svc/default/1010/echo"
    assert match(one, "myhost", "/unknown-path") == "/svc/default/2022/fallback"
    assert match(one, "myhost", "/unknown-path", ignore_default_backends=True) is None
    assert match(one, "myhost", "/some-path", ignore_default_backends=True) == (
        "/svc/default/1010/echo"
    )


def test_every_ingress_is_tried_before_a_default_backend():
    # "don't return default backend before checking all resources for matches"
    first = v1beta1("a", [(None, "svc1", 80)], host="other host", backend=("fallback", 80))
    second = v1beta1("b", [(None, "svc2", 80)], host="myhost")
    assert match([first, second], "myhost", "/path") == "/svc/default/80/svc2"
    # "on no host/path matches, return first default backend"
    assert match([first, second], "unknown", "/path") == "/svc/default/80/fallback"
    third = v1beta1("c", [(None, "svc3", 80)], host="x", backend=("fallback3", 80))
    assert match([third, first], "unknown", "/path") == "/svc/default/80/fallback"


def test_first_path_and_first_host_match_win():
    paths = [v1beta1("i", [("/path", "primary-svc", 80), ("/path", "secondary-svc", 80)])]
    assert match(paths, "myhost", "/path") == "/svc/default/80/primary-svc"
    hosts = [
        v1beta1("polar-bear1", [(None, "svc1", 80)], host="myhost"),
        v1beta1("polar-bear2", [(None, "svc2", 80)], host="myhost"),
    ]
    assert match(hosts, "myhost", "/path") == "/svc/default/80/svc1"
    assert match(hosts, "unknown host", "/path") is None


@pytest.mark.parametrize(
    ("path", "target", "matches"),
    [
        ("/prefix/.*", "/prefix/and-other-stuff", True),  # "match on path regex"
        ("/", "/", True),  # "match / with reqs that have empty paths only"
        ("/", "/foo", False),
        ("", "/", True),  # "match empty string with all reqs"
        ("", "/foo", True),
        (None, "/foo", True),  # "match omitted path with all reqs"
        ("/foo", "/foo/bar", False),  # the whole path must match
        ("/foo", "/foo?x=1", True),  # (the query is not part of the path)
        ("/a b", "/a%20b", True),  # (the path is percent-decoded)
        ("/api/v[12]/.*", "/api/v2/users", True),
        ("/api/v[12]/.*", "/api/v3/users", False),
    ],
)
def test_linkerds_path_rule_is_a_whole_regex(path, target, matches):
    ingress = [v1beta1("i", [(path, "svc", 80)], host="myhost")]
    assert (match(ingress, "myhost", target) is not None) is matches
    assert match(ingress, "otherhost", target) is None  # the host must match too


def v1(
    name: str,
    rules: list[dict[str, Any]],
    namespace: str = "default",
    **kw: Any,
) -> dict[str, Any]:
    return ingress_object(namespace, name, rules, **kw)


@pytest.mark.parametrize(
    ("path_type", "path", "target", "matches"),
    [
        ("Prefix", "/foo", "/foo", True),
        ("Prefix", "/foo", "/foo/", True),
        ("Prefix", "/foo", "/foo/bar", True),
        ("Prefix", "/foo/", "/foo", True),  # a trailing "/" is ignored
        ("Prefix", "/foo", "/foobar", False),
        ("Prefix", "/", "/anything", True),
        ("Prefix", "/foo", "/bar?q=/foo", False),
        ("Exact", "/foo", "/foo", True),
        ("Exact", "/foo", "/foo?x", True),
        ("Exact", "/foo", "/foo/", False),
        ("ImplementationSpecific", "/foo/.*", "/foo/bar", True),
        ("ImplementationSpecific", "/foo/.*", "/foo", False),
    ],
)
def test_v1_path_types(path_type, path, target, matches):
    ingress = [v1("i", [ingress_rule(None, [(path, path_type, ingress_backend("web", 80))])])]
    assert (match(ingress, "h", target) == "/svc/default/80/web") is matches


def test_absolute_form_targets_match_by_their_path():
    ingress = [v1("i", [ingress_rule(None, [("/api", "Prefix", ingress_backend("web", 80))])])]
    assert match(ingress, "h", "http://h:4140/api/x?y") == "/svc/default/80/web"
    assert match(ingress, "h", "http://h:4140") is None


def test_v1_backends_by_port_number_and_name_in_the_ingress_namespace():
    ingress = [
        v1(
            "i",
            [
                ingress_rule(
                    "web.example.com",
                    [
                        ("/api", "Prefix", ingress_backend("api", "grpc")),
                        ("/", "Prefix", ingress_backend("web", 8080)),
                    ],
                )
            ],
            namespace="prod",
            default_backend=ingress_backend("default-http", 80),
        )
    ]
    assert match(ingress, "web.example.com", "/api/v1") == "/svc/prod/grpc/api"
    assert match(ingress, "WEB.example.com:4140", "/") == "/svc/prod/8080/web"
    assert match(ingress, "other.example.com", "/") == "/svc/prod/80/default-http"


def test_hosts_exact_and_wildcard():
    wild = [(None, "ImplementationSpecific", ingress_backend("wild", 80))]
    apex = [("/", "Prefix", ingress_backend("apex", 80))]
    ingress = [v1("i", [ingress_rule("*.example.com", wild), ingress_rule("example.com", apex)])]
    assert match(ingress, "a.example.com", "/") == "/svc/default/80/wild"
    assert match(ingress, "example.com", "/") == "/svc/default/80/apex"
    assert match(ingress, "a.b.example.com", "/") is None  # one label only
    assert match(ingress, "example.org", "/") is None
    assert match(ingress, None, "/") is None  # no Host: only rules without a host


def test_rules_without_host_match_requests_without_host():
    ingress = [v1("i", [ingress_rule(None, [("/", "Prefix", ingress_backend("web", 80))])])]
    assert match(ingress, None, "/x") == "/svc/default/80/web"


def test_ingress_class_name_is_a_class_too_and_the_annotation_wins():
    rules = [ingress_rule(None, [("/", "Prefix", ingress_backend("web", 80))])]
    assert match([v1("i", rules, ingress_class_name="nginx")], "h", "/") is None
    assert match([v1("i", rules, ingress_class_name="linkerd")], "h", "/") is not None
    annotated = v1(
        "i",
        rules,
        ingress_class_name="nginx",
        annotations={"kubernetes.io/ingress.class": "linkerd"},
    )
    assert match([annotated], "h", "/") is not None


def test_unusable_rules_are_left_out_and_said_so():
    obj = v1(
        "i",
        [
            ingress_rule(
                None,
                [
                    ("/a", "Prefix", {"resource": {"kind": "StorageBucket", "name": "b"}}),
                    ("/b(", "ImplementationSpecific", ingress_backend("web", 80)),
                    ("relative", "Exact", ingress_backend("web", 80)),
                    ("/c", "Regex", ingress_backend("web", 80)),
                    ("/d", "Prefix", {"service": {"name": "web"}}),
                    ("/e", "Prefix", ingress_backend("web", 80)),
                ],
            )
        ],
    )
    spec = ingress_spec(obj, "linkerd", False)
    assert spec is not None
    assert [p.path for p in spec.rules] == ["/e"]
    assert len(spec.skipped) == 5
    assert "resource backend" in spec.skipped[0]
    assert "not a regular expression" in spec.skipped[1]
    assert "unknown pathType 'Regex'" in spec.skipped[3]
    assert match([obj], "h", "/e") == "/svc/default/80/web"
    assert match([obj], "h", "/a") is None


def test_namespaces_name_the_service_in_its_own_namespace():
    objects = [
        v1("a", [ingress_rule("a.example", [("/", "Prefix", ingress_backend("web", 80))])], "ns-a"),
        v1("a", [ingress_rule("b.example", [("/", "Prefix", ingress_backend("web", 80))])], "ns-b"),
    ]
    assert match(objects, "a.example", "/") == "/svc/ns-a/80/web"
    assert match(objects, "b.example", "/") == "/svc/ns-b/80/web"


def test_request_host():
    assert request_host(b"Web.Example.com:4140") == "web.example.com"
    assert request_host(b"web") == "web"
    assert request_host(b"[::1]:80") == "[::1]"


class FakeRequest:
    def __init__(self, host: str | None, target: bytes) -> None:
        self.method, self.target, self.version = b"GET", target, b"1.1"
        self.headers = {} if host is None else {b"host": host.encode()}

    def header(self, lname: bytes) -> bytes | None:
        return self.headers.get(lname)


def test_the_identifier_reads_the_current_snapshot():
    from turnout_identifier_k8s_ingress.cache import IngressCache

    cache = IngressCache(
        PREFIX,
        host="127.0.0.1",
        port=1,
        namespace=None,
        ingress_class="linkerd",
        ignore_default_backends=False,
    )
    identifier = IngressIdentifier(cache)
    assert identifier.identify(FakeRequest("web", b"/")) is None  # nothing listed yet
    cache.objects = {
        ("default", "i"): v1(
            "i", [ingress_rule("web", [("/", "Prefix", ingress_backend("web", 80))])]
        )
    }
    cache._changed()
    name = identifier.identify(FakeRequest("web", b"/x"))
    assert name == Path.read("/svc/default/80/web")
    # the same name object every time (precompiled: nothing built per request)
    assert identifier.identify(FakeRequest("web", b"/y")) is name
    assert identifier.identify(FakeRequest("api", b"/x")) is None
