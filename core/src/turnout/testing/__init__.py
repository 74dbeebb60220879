"""Helpers for end-to-end tests that run real processes: turnout started from YAML, nginx
and recording Python backends, raw HTTP/1.1 clients. For turnout's own tests and for
plugins' tests (``from turnout.testing import ...``); the pytest fixtures are in
:mod:`turnout.testing.pytest_plugin`.

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
