"""Semantic checks across routers: unique labels and no two listeners on one ip:port."""

from __future__ import annotations

import textwrap

import pytest
from turnout.config import load_text


def y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


ADMIN_CLASH = y(
    """
    admin: {port: 4141}
    routers:
    - protocol: http
      servers:
      - port: 4141
    """
)
DEFAULT_PORT_CLASH = y(
    """
    routers:
    - protocol: http
      servers: [{}]
    - protocol: http
      label: second
      servers: [{port: 4140}]
    """
)
WILDCARD_CLASH = y(
    """
    routers:
    - protocol: http
      servers:
      - port: 4140
      - ip: 0.0.0.0
        port: 4140
    """
)
WILDCARD_ADMIN_CLASH = y(
    """
    routers:
    - protocol: http
      servers:
      - ip: 0.0.0.0
        port: 9990
    """
)
DUPLICATE_LABELS = y(
    """
    routers:
    - protocol: http
      label: edge
      servers: [{port: 4140}]
    - protocol: http
      label: edge
      servers: [{port: 4141}]
    - protocol: http
      servers: [{port: 4142}]
    - protocol: http
      servers: [{port: 4143}]
    """
)

CONFLICTS = [
    pytest.param(
        ADMIN_CLASH,
        [
            (
                5,
                11,
                "routers[0].servers[0].port",
                "server conflict on 127.0.0.1:4141: the admin server already listens there; "
                "choose another port",
            )
        ],
        id="admin-port",
    ),
    pytest.param(
        DEFAULT_PORT_CLASH,
        [
            (
                6,
                20,
                "routers[1].servers[0].port",
                "server conflict on 127.0.0.1:4140: routers[0].servers[0] already listens "
                "there; choose another port",
            )
        ],
        id="protocol-default-port",
    ),
    pytest.param(
        WILDCARD_CLASH,
        [
            (
                6,
                11,
                "routers[0].servers[1].port",
                "server conflict on 0.0.0.0:4140: routers[0].servers[0] already listens there; "
                "choose another port",
            )
        ],
        id="0.0.0.0-and-loopback",
    ),
    pytest.param(
        WILDCARD_ADMIN_CLASH,
        [
            (
                5,
                11,
                "routers[0].servers[0].port",
                "server conflict on 0.0.0.0:9990: the admin server already listens there; "
                "choose another port",
            )
        ],
        id="0.0.0.0-and-default-admin",
    ),
    pytest.param(
        DUPLICATE_LABELS,
        [
            (
                6,
                10,
                "routers[1].label",
                "router label 'edge' is already used by routers[0]; give each router a unique "
                "'label'",
            ),
            (
                10,
                3,
                "routers[3].label",
                "router label 'http' is already used by routers[2]; give each router a unique "
                "'label'",
            ),
        ],
        id="duplicate-labels",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CONFLICTS)
def test_conflict_is_reported_once(problems, text, expected):
    assert [(p.line, p.column, p.path, p.message) for p in problems(text)] == expected


def test_conflicts_are_reported_along_with_other_problems(problems):
    """When another problem prevents building the config, conflicts are still found (from
    the raw data), once, together with that problem."""
    text = y(
        """
        routers:
        - protocol: http
          label: edge
          servers: [{port: 4140}]
          bogus: 1
        - protocol: http
          label: edge
          servers: [{port: 4140}]
        """
    )
    got = problems(text)
    assert [(p.line, p.column, p.path) for p in got] == [
        (5, 3, "routers[0].bogus"),
        (7, 10, "routers[1].label"),
        (8, 20, "routers[1].servers[0].port"),
    ], [str(p) for p in got]


@pytest.mark.parametrize(
    "servers",
    [
        "[{port: 4140}, {port: 4141}]",
        "[{ip: 127.0.0.2, port: 4140}, {ip: 127.0.0.1, port: 4140}]",
        "[{port: 0}, {port: 0}]",  # port 0: the system picks, never a clash
    ],
)
def test_distinct_listeners_are_accepted(registry, servers):
    text = f"routers:\n- protocol: http\n  servers: {servers}\n"
    loaded = load_text(text, "l5d.yaml", registry=registry, environ={})
    assert len(loaded.config.routers[0].servers) == 2


def test_admin_port_zero_never_clashes(registry):
    text = "admin: {port: 0}\nrouters:\n- protocol: http\n  servers: [{port: 0}]\n"
    assert load_text(text, "l5d.yaml", registry=registry, environ={}).config.admin.port == 0
