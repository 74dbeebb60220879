"""The testing kit for turnout's own tests and for plugins' tests: turnout started from YAML,
nginx and recording Python backends, raw HTTP/1.1 clients, ports and bounded waits
(``from turnout.testing import ...``); one config entry read as ``turnout check`` does
(:mod:`turnout.testing.config`); an aiohttp application on its own thread
(:mod:`turnout.testing.loop`); the protocol-neutral base of span collector doubles
(:mod:`turnout.testing.collector`); pytest fixtures (:mod:`turnout.testing.pytest_plugin`).

The rule: a double of an outside system lives in the plugin that talks to that system, as
``<package>.testing``; ``turnout.testing`` holds only what every plugin author needs. So the
Consul, Kubernetes and Marathon API doubles, the BIND 9 and ZooKeeper servers, the Zipkin
and OTLP collector doubles and the statsd listener are in ``turnout_namer_consul.testing``,
``turnout_namer_k8s.testing``, ``turnout_namer_marathon.testing``,
``turnout_namer_dnssrv.testing``, ``turnout_namer_zk.testing``,
``turnout_telemeter_zipkin.testing``, ``turnout_telemeter_opentelemetry.testing`` and
``turnout_telemeter_statsd.testing`` (core/tests/test_testing_kit.py keeps it so).

Everything listens on and talks to 127.0.0.1, and every wait is bounded.
"""

from .backend import (
    CLOSE,
    RecordedConnection,
    RecordedRequest,
    RecordingBackend,
    chunked_body,
    http_response,
)
from .fs import DiscoDir
from .net import (
    RawClient,
    Response,
    build_request,
    free_port,
    http_request,
    parse_response,
    parse_responses,
    port_open,
    raw_request,
    wait_port,
    wait_until,
)
from .nginx import NginxBackend
from .process import (
    NamerdProcess,
    RssSampler,
    TurnoutProcess,
    die_with_parent,
    open_fds,
    proc_kib,
    proc_status,
)

__all__ = [
    "CLOSE",
    "DiscoDir",
    "NamerdProcess",
    "NginxBackend",
    "RawClient",
    "RecordedConnection",
    "RecordedRequest",
    "RecordingBackend",
    "Response",
    "RssSampler",
    "TurnoutProcess",
    "build_request",
    "chunked_body",
    "die_with_parent",
    "free_port",
    "http_request",
    "http_response",
    "open_fds",
    "parse_response",
    "parse_responses",
    "port_open",
    "proc_kib",
    "proc_status",
    "raw_request",
    "wait_port",
    "wait_until",
]
