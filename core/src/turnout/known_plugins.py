"""Kinds that live in separately installed plugins, for ``pip install`` hints.

When a configuration names a kind that is not installed but is provided by one of turnout's
own plugin distributions (first-party in ``plugins/``, community-grade in ``plugins-contrib/``),
the error says which one to install. A test checks that every distribution named here exists
in its folder and registers the kinds listed for it.
"""

from __future__ import annotations

#: (family, kind) → distribution name
FIRST_PARTY_KINDS: dict[tuple[str, str], str] = {
    ("router", "http"): "turnout-protocol-http",
    ("router", "h2"): "turnout-protocol-h2",
    ("h2 identifier", "io.l5d.header.token"): "turnout-protocol-h2",
    ("h2 identifier", "io.l5d.header.path"): "turnout-protocol-h2",
    ("h2 identifier", "io.l5d.header"): "turnout-protocol-h2",
    ("h2 identifier", "io.l5d.static"): "turnout-protocol-h2",
    ("response classifier", "io.l5d.h2.grpc.default"): "turnout-protocol-h2",
    ("http identifier", "io.l5d.header.token"): "turnout-protocol-http",
    ("http identifier", "io.l5d.methodAndHost"): "turnout-protocol-http",
    ("http identifier", "io.l5d.path"): "turnout-protocol-http",
    ("http identifier", "io.l5d.header"): "turnout-protocol-http",
    ("http identifier", "io.l5d.static"): "turnout-protocol-http",
    ("telemeter", "io.l5d.zipkin"): "turnout-telemeter-zipkin",
    ("telemeter", "io.l5d.prometheus"): "turnout-telemeter-prometheus",
    ("telemeter", "io.l5d.statsd"): "turnout-telemeter-statsd",
    ("telemeter", "io.l5d.opentelemetry"): "turnout-telemeter-opentelemetry",
    ("namer", "io.l5d.marathon"): "turnout-namer-marathon",
    ("namer", "io.l5d.dnssrv"): "turnout-namer-dnssrv",
    ("namer", "io.l5d.consul"): "turnout-namer-consul",
    ("namer", "io.l5d.serversets"): "turnout-namer-zk",
    ("namer", "io.l5d.zkLeader"): "turnout-namer-zk",
    ("namer", "io.l5d.k8s"): "turnout-namer-k8s",
    ("namer", "io.l5d.k8s.ns"): "turnout-namer-k8s",
    ("transformer", "io.l5d.k8s.daemonset"): "turnout-namer-k8s",
    ("transformer", "io.l5d.k8s.localnode"): "turnout-namer-k8s",
    ("namerd interface", "io.l5d.mesh"): "turnout-namerd-mesh",
    ("interpreter", "io.l5d.mesh"): "turnout-namerd-mesh",
    ("dtab store", "io.l5d.etcd"): "turnout-namerd-etcd",
}

#: (family, kind) → distribution name, for the community-grade plugins of ``plugins-contrib/``
CONTRIB_KINDS: dict[tuple[str, str], str] = {
    ("router", "thrift"): "turnout-protocol-thrift",
    ("telemeter", "io.l5d.influxdb"): "turnout-telemeter-influxdb",
    ("interpreter", "io.l5d.consul.interpreter"): "turnout-interpreter-consul",
    ("namer", "io.l5d.curator"): "turnout-namer-curator",
    ("namer", "io.l5d.k8s.external"): "turnout-namer-k8s-external",
    ("http identifier", "io.l5d.ingress"): "turnout-identifier-k8s-ingress",
}

_THRIFTMUX = (
    "turnout does not provide it: it speaks ThriftMux, which turnout does not implement "
    "(plugins-contrib/README.md says why)"
)
_ISTIO = (
    "turnout does not provide it: the Istio 0.x Mixer and istio-manager APIs it used no longer "
    "exist (plugins-contrib/README.md)"
)

#: (family, kind) → why a Linkerd kind is not available and what to use instead
NOT_PROVIDED: dict[tuple[str, str], str] = {
    ("namerd interface", "io.l5d.thriftNameInterpreter"): (
        f"{_THRIFTMUX}; linkers reach namerd through io.l5d.httpController, with the "
        "io.l5d.namerd.http interpreter"
    ),
    ("namerd interface", "io.l5d.destination"): (
        "turnout does not provide it: it is the destination API of Linkerd 2's proxies"
    ),
    ("interpreter", "io.l5d.namerd"): (
        f"{_THRIFTMUX}; use 'kind: io.l5d.namerd.http' (with experimental: true) against "
        "namerd's io.l5d.httpController"
    ),
    ("h2 identifier", "io.l5d.k8s.istio"): _ISTIO,
    ("h2 identifier", "io.l5d.ingress"): (
        "not yet for protocol h2: the Kubernetes ingress identifier is an http identifier "
        "(turnout-identifier-k8s-ingress)"
    ),
    ("router", "thriftmux"): f"{_THRIFTMUX}; protocol thrift serves Finagle Thrift clients",
    ("router", "mux"): _THRIFTMUX.replace("ThriftMux", "Mux"),
    ("http identifier", "io.l5d.k8s.istio"): _ISTIO,
    ("http identifier", "io.l5d.k8s.istio-ingress"): _ISTIO,
    ("namer", "io.l5d.k8s.istio"): _ISTIO,
    ("interpreter", "io.l5d.k8s.istio"): _ISTIO,
}
