"""``io.l5d.static`` client and service prefixes as Linkerd accepted them (issue 10)."""

from __future__ import annotations

import textwrap

import pytest
from turnout.config import load_text
from turnout.errors import ConfigError
from turnout.naming import Path
from turnout.router import client_policy, service_policy

#: the shape of Linkerd's TLS documentation (linkerd.io, "Transparent TLS with Linkerd")
TLS_DOCS = textwrap.dedent(
    """
    routers:
    - protocol: http
      dtab: /svc => /#/io.l5d.fs;
      client:
        kind: io.l5d.static
        configs:
        - prefix: "/%/io.l5d.port/4141/#/io.l5d.fs/"
          requestAttemptTimeoutMs: 250
      service:
        kind: io.l5d.static
        configs:
        - prefix: "/svc/"
          totalTimeoutMs: 700
      servers:
      - port: 4140
    """
).lstrip()


def test_a_trailing_slash_in_a_static_prefix_is_ignored(registry) -> None:
    router = load_text(TLS_DOCS, "l5d.yaml", registry=registry, environ={}).config.routers[0]
    bound = Path.read("/%/io.l5d.port/4141/#/io.l5d.fs/web")
    assert client_policy(router.client, bound).request_attempt_timeout_ms == 250
    other = Path.read("/%/io.l5d.port/4142/#/io.l5d.fs/web")
    assert client_policy(router.client, other).request_attempt_timeout_ms is None
    assert service_policy(router.service, Path.read("/svc/web")).total_timeout_ms == 700


def test_a_dtab_path_with_a_trailing_slash_is_still_refused(registry) -> None:
    """Finagle's Path.read refuses ``/foo/``: only static prefixes are lenient."""
    text = TLS_DOCS.replace(
        "  dtab: /svc => /#/io.l5d.fs;", "  dstPrefix: /svc/\n  dtab: /svc => /#/io.l5d.fs;"
    )
    with pytest.raises(ConfigError) as info:
        load_text(text, "l5d.yaml", registry=registry, environ={})
    assert [p.path for p in info.value.problems] == ["routers[0].dstPrefix"]
