"""Path parsing: which names the k8s namers accept, their keys, ids and residuals."""

from __future__ import annotations

import pytest
from turnout.naming import Neg, Ok, Path, Pending
from turnout_namer_k8s.model import ServiceKey, parse_port
from turnout_namer_k8s.namer import K8sNamer, K8sNsNamer

PREFIX = Path.read("/#/io.l5d.k8s")


def namer(**kw) -> K8sNamer:
    return K8sNamer(PREFIX, host="127.0.0.1", port=1, **kw)


def key(path: str, **kw):
    return namer(**kw).key_of(Path.read(path))


def test_namespace_port_service_and_residual():
    assert key("/default/http/web") == (ServiceKey("default", "http", "web"), 3)
    assert key("/prod/8080/users/api/v1") == (ServiceKey("prod", "8080", "users"), 3)


@pytest.mark.parametrize(
    "path",
    [
        "/default/http",  # too short
        "/default",
        "/",
        "/Default_ns/http/web",  # not an RFC 1123 label
        "/default/http/web.example",  # service names have no dots
        "/default/http/-web",
        "/default/0/web",  # port numbers are 1..65535
        "/default/65536/web",
        "/default/a-very-long-port-name/web",  # port names have at most 15 characters
        "/default/ht_tp/web",
        "/default/http/" + "w" * 64,
    ],
)
def test_names_that_cannot_be_kubernetes_services_are_neg(path):
    assert key(path) is None
    assert namer().lookup(Path.read(path)).value == Ok(Neg)


def test_names_are_lowercased_as_linkerd_does_but_not_the_residual():
    n = namer()
    act = n.lookup(Path.read("/Default/HTTP/Web/Rest/Of/Path"))
    assert act.value is Pending  # a valid name: waiting for the API (no loop runs here)
    assert n.lookup(Path.read("/default/http/web/Rest/Of/Path")) is act
    assert list(n.watches) == [ServiceKey("default", "http", "web")]


def test_ids_and_residuals_of_bound_names():
    # The id is the prefix plus the (lowercased) labels the namer consumed; the rest is the
    # residual. Checked on a bound leaf by forcing the watch's address set.
    from turnout.naming import AddrBound, Address, Leaf

    n = namer()
    act = n.lookup(Path.read("/Default/http/web/a/B"))
    n.watches[ServiceKey("default", "http", "web")].var.update(AddrBound([Address("10.0.0.1", 80)]))
    leaf = act.value.value
    assert isinstance(leaf, Leaf)
    assert str(leaf.value.id) == "/#/io.l5d.k8s/default/http/web"
    assert str(leaf.value.residual) == "/a/B"
    assert [str(p) for p in n.bound_names()] == ["/#/io.l5d.k8s/default/http/web"]


def test_label_selector_takes_one_more_label():
    assert key("/default/http/web/v1", label_selector="version") == (
        ServiceKey("default", "http", "web", "version=v1"),
        4,
    )
    assert key("/default/http/web/V1/rest", label_selector="version") == (
        ServiceKey("default", "http", "web", "version=v1"),  # lowercased, as Linkerd does
        4,
    )
    # without the label value the name is Neg (Linkerd: "label value segment missing")
    assert key("/default/http/web", label_selector="version") is None


@pytest.mark.parametrize("value", ["a,b", "x!=y", "v 1", "-v1", "v" * 64, "a=b"])
def test_label_values_that_would_change_the_selector_are_neg(value):
    path = Path.of("default", "http", "web", value)  # (some are not writable as /a/b text)
    assert namer(label_selector="version").key_of(path) is None


def test_io_l5d_k8s_ns_takes_the_namespace_from_its_config():
    ns = K8sNsNamer(Path.read("/#/io.l5d.k8s.ns"), host="h", port=1, namespace="prod")
    assert ns.key_of(Path.read("/http/web/x")) == (ServiceKey("prod", "http", "web"), 2)
    assert ns.key_of(Path.read("/http")) is None
    labelled = K8sNsNamer(
        Path.read("/#/io.l5d.k8s.ns"), host="h", port=1, namespace="prod", label_selector="v"
    )
    assert labelled.key_of(Path.read("/HTTP/web/Canary/x")) == (
        ServiceKey("prod", "http", "web", "v=canary"),
        3,
    )
    assert labelled.key_of(Path.read("/http/web")) is None


def test_non_utf8_labels_are_neg():
    path = Path(b"default", b"http", b"\xff\xfe")
    assert namer().key_of(path) is None
    assert namer().lookup(path).value == Ok(Neg)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("http", "http"),
        ("8080", 8080),
        ("1", 1),
        ("65535", 65535),
        ("080", 80),
        ("grpc-web", "grpc-web"),
        ("0", None),
        ("99999", None),
        ("-1", None),
        ("123-456", None),  # a port name needs a letter
        ("", None),
        ("٣", None),  # a non-ASCII digit
    ],
)
def test_port_labels(text, parsed):
    assert parse_port(text) == parsed


def test_the_watch_label_shown_in_namer_state():
    assert str(ServiceKey("default", "http", "web")) == "default/http/web"
    assert str(ServiceKey("default", "80", "web", "version=v1")) == "default/80/web:version=v1"
