"""The h2 router's configuration (``turnout check`` in a subprocess: located errors), and the
pieces that need no sockets: identifiers, classifiers, grpc-timeout."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from turnout.api import FAILURE, RETRYABLE, SUCCESS
from turnout.api import Path as Name
from turnout_protocol_h2.classifiers import GrpcClassifier, StatusClassifier
from turnout_protocol_h2.config import (
    GrpcAlwaysRetryableConfig,
    GrpcCompliantConfig,
    GrpcDefaultConfig,
    GrpcRetryableStatusCodesConfig,
    RetryableRead5XXConfig,
)
from turnout_protocol_h2.identifiers import (
    FirstOf,
    HeaderNameIdentifier,
    HeaderPathIdentifier,
    HeaderTokenIdentifier,
    Unidentified,
)
from turnout_protocol_h2.runtime import grpc_timeout


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


ROUTER = """\
admin: {port: 9999}
routers:
- protocol: h2
  dtab: /svc => /$/inet/127.0.0.1/1
  servers: [{port: 4142}]
"""


def test_a_full_h2_config_is_accepted(tmp_path):
    done = check(
        tmp_path,
        ROUTER
        + """\
  identifier:
  - {kind: io.l5d.header.path, segments: 1}
  - {kind: io.l5d.header.token}
  h2AccessLog: logs/access.log
  h2AccessLogRollPolicy: 100.megabytes
  h2AccessLogRotateCount: 3
  client:
    kind: io.l5d.static
    configs:
    - prefix: /$/inet/*
      initialStreamWindowBytes: 1048576
      maxConcurrentStreamsPerConnection: 50
      failureAccrual: {kind: io.l5d.consecutiveFailures, failures: 3}
  service:
    kind: io.l5d.static
    configs:
    - prefix: /svc
      responseClassifier: {kind: io.l5d.h2.grpc.retryableStatusCodes, retryableStatusCodes: [14, 8]}
      retries: {budget: {percentCanRetry: 0.5}}
      classificationTimeoutMs: 200
      retryBufferSize: {requestBytes: 65536, responseBytes: 1024}
""",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in (done.stdout + done.stderr).lower()


@pytest.mark.parametrize(
    ("extra", "where", "says"),
    [
        (
            "  service: {responseClassifier: {kind: io.l5d.http.retryableRead5XX}}\n",
            "responseClassifier",
            "io.l5d.h2.",
        ),
        (
            "  client: {forwardClientCert: true}\n",
            "forwardClientCert",
            "not implemented by protocol h2",
        ),
        ("  h2AccessLogRollPolicy: sometimes\n", "h2AccessLogRollPolicy", "invalid roll policy"),
        (
            "  client: {kind: io.l5d.static, initialStreamWindowBytes: 5, configs: []}\n",
            "initialStreamWindowBytes",
            "set initialStreamWindowBytes in configs[]",
        ),
        ("  identifier: {kind: io.l5d.methodAndHost}\n", "identifier", "io.l5d.methodAndHost"),
    ],
)
def test_located_errors(tmp_path, extra, where, says):
    done = check(tmp_path, ROUTER + extra)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert any(where in line and says in line and "config.yaml:" in line for line in errors), (
        done.stderr
    )


def test_every_error_is_listed_at_once(tmp_path):
    done = check(
        tmp_path,
        ROUTER
        + "  client: {forwardClientCert: true}\n"
        + "  service: {responseClassifier: {kind: io.l5d.http.allSuccessful}}\n",
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, done.stderr


# -- identifiers ---------------------------------------------------------------------------------


def test_identifiers():
    pfx = Name.of("svc")
    token = HeaderTokenIdentifier(pfx, ":authority")
    assert token.identify({b":authority": b"web:8080"}) == Name.of("svc", "web:8080")
    with pytest.raises(Unidentified, match="missing header: ':authority'"):
        token.identify({})
    grpc = HeaderPathIdentifier(pfx, ":path", 1)
    assert grpc.identify({b":path": b"/pkg.Svc/Method"}) == Name.of("svc", "pkg.Svc")
    every = HeaderPathIdentifier(pfx, ":path", None)
    assert every.identify({b":path": b"/a/b/?q=1"}) == Name.of("svc", "a", "b")
    with pytest.raises(Unidentified, match="Missing destination path"):
        every.identify({b":path": b"/"})
    with pytest.raises(Unidentified, match="at least 3 segment"):
        HeaderPathIdentifier(pfx, ":path", 3).identify({b":path": b"/a/b"})
    name = HeaderNameIdentifier(pfx, "l5d-name")
    assert name.identify({b"l5d-name": b"/web/v2"}) == Name.of("svc", "web", "v2")
    both = FirstOf([HeaderNameIdentifier(pfx, "l5d-name"), token])
    assert both.identify({b":authority": b"x"}) == Name.of("svc", "x")
    with pytest.raises(Unidentified, match=r"l5d-name.*:authority"):
        both.identify({})


# -- classifiers ---------------------------------------------------------------------------------


def test_status_classifiers():
    c = RetryableRead5XXConfig().new_classifier()
    assert isinstance(c, StatusClassifier)
    assert c.early(b"GET", 503, None) == RETRYABLE
    assert c.early(b"POST", 503, None) == FAILURE
    assert c.early(b"POST", 404, None) == SUCCESS
    assert c.reset(b"POST", 0x7, True) == RETRYABLE  # REFUSED_STREAM: never processed
    assert c.reset(b"POST", 0x2, True) == FAILURE


def test_grpc_classifiers():
    default = GrpcDefaultConfig().new_classifier()
    assert isinstance(default, GrpcClassifier)
    assert default.early(b"POST", 200, None) is None  # (the status is in the trailers)
    assert default.final(b"POST", 200, 0) == SUCCESS
    assert default.final(b"POST", 200, 14) == RETRYABLE
    assert default.final(b"POST", 200, 13) == FAILURE
    assert default.final(b"POST", 200, None) == FAILURE  # ended without a grpc-status
    assert default.early(b"POST", 503, None) == FAILURE
    compliant = GrpcCompliantConfig().new_classifier()
    assert compliant.early(b"POST", 503, None) == RETRYABLE
    always = GrpcAlwaysRetryableConfig().new_classifier()
    assert always.final(b"POST", 200, 5) == RETRYABLE
    codes = GrpcRetryableStatusCodesConfig(retryable_status_codes=[8]).new_classifier()
    assert codes.final(b"POST", 200, 8) == RETRYABLE
    assert codes.final(b"POST", 200, 14) == FAILURE
    success = GrpcDefaultConfig(success_status_codes=[0, 5]).new_classifier()
    assert success.final(b"POST", 200, 5) == SUCCESS


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"1S", 1.0),
        (b"300m", 0.3),
        (b"2M", 120.0),
        (b"1H", 3600.0),
        (b"500u", 0.0005),
        (b"99999999n", 0.099999999),
        (b"", None),
        (b"5", None),
        (b"5x", None),
        (b"123456789S", None),  # more than 8 digits
        (b"-1S", None),
    ],
)
def test_grpc_timeout(value, seconds):
    got = grpc_timeout(value)
    assert got == pytest.approx(seconds) if seconds is not None else got is None
