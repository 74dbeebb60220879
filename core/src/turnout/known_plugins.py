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
