"""Reading config text: YAML and JSON, positions, duplicate keys, ``${VAR}`` expansion and
the alias-bomb guard."""

from __future__ import annotations

import json
import textwrap
import time

import pytest
from turnout.config import load_text
from turnout.errors import ConfigError


def y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def load(registry, text, env=None):
    return load_text(text, "l5d.yaml", registry=registry, environ=env or {}).config


# -- duplicate keys ---------------------------------------------------------------------------


def test_every_duplicate_key_is_reported(problems):
    text = y(
        """
        routers:
        - protocol: http
          servers: [{port: 4140}]
          servers: [{port: 4141}]
          label: a
          label: b
          label: c
        admin: {port: 9990, port: 9991}
        """
    )
    got = problems(text)
    assert [(p.line, p.column, p.path) for p in got] == [
        (4, 3, "routers[0].servers"),
        (6, 3, "routers[0].label"),
        (7, 3, "routers[0].label"),
        (8, 21, "admin.port"),
    ], [str(p) for p in got]
    assert got[0].message == (
        "duplicate key 'servers' (first defined at line 3, column 3); each key may appear once"
    )
    assert got[2].message.startswith("duplicate key 'label' (first defined at line 5, column 3)")


def test_duplicate_top_level_key(problems):
    text = "routers: []\nrouters:\n- protocol: http\n  servers: [{port: 4140}]\n"
    [problem] = problems(text)
    assert (problem.line, problem.column, problem.path) == (2, 1, "routers")
    assert problem.message.startswith("duplicate key 'routers' (first defined at line 1, column 1)")


def test_merge_keys_and_anchors_are_not_duplicates(registry):
    text = y(
        """
        routers:
        - protocol: http
          label: a
          servers: [{port: 4140}]
          client: &client
            requestAttemptTimeoutMs: 500
        - protocol: http
          label: b
          servers: [{port: 4141}]
          client:
            <<: *client
            failFast: true
        """
    )
    config = load(registry, text)
    assert config.routers[1].client.request_attempt_timeout_ms == 500
    assert config.routers[1].client.fail_fast is True


# -- ${VAR} expansion ---------------------------------------------------------------------------

ENV_TEXT = y(
    """
    routers:
    - protocol: http
      label: ${LABEL}
      servers:
      - port: ${PORT:-4140}
        ip: ${IP:-127.0.0.1}
    """
)


def test_env_vars_are_expanded_before_type_checks(registry):
    config = load(registry, ENV_TEXT, {"LABEL": "edge", "PORT": "8080"})
    assert config.routers[0].label == "edge"
    assert config.routers[0].servers[0].port == 8080  # "8080" from the environment → int
    assert config.routers[0].servers[0].ip == "127.0.0.1"  # the default


def test_default_applies_when_the_variable_is_empty(registry):
    config = load(registry, ENV_TEXT, {"LABEL": "edge", "PORT": ""})
    assert config.routers[0].servers[0].port == 4140


def test_expansion_inside_a_longer_string(registry):
    text = "routers:\n- protocol: http\n  label: edge-${ZONE}-${N:-1}\n  servers: [{port: 1}]\n"
    assert load(registry, text, {"ZONE": "eu"}).routers[0].label == "edge-eu-1"


def test_missing_variable_is_one_problem_naming_it(problems):
    [problem] = problems(ENV_TEXT, {"PORT": "8080"})
    assert (problem.line, problem.column, problem.path) == (3, 10, "routers[0].label")
    assert problem.message == (
        "environment variable 'LABEL' is not set; set it or write '${LABEL:-default}' to give "
        "a default"
    )


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("bindingTimeoutMs", "routers[0].bindingTimeoutMs"),  # an int option
        ("originator", "routers[0].originator"),  # a bool option
        ("dtab", "routers[0].dtab"),  # a parsed (Dtab) option
        ("servers", "routers[0].servers"),  # a list option
        ("interpreter", "routers[0].interpreter"),  # an object option
    ],
)
def test_missing_variable_is_not_also_a_type_error(problems, key, path):
    text = f"routers:\n- protocol: http\n  {key}: ${{UNSET}}\n  label: x\n"
    if key != "servers":
        text += "  servers: [{port: 4140}]\n"
    [problem] = problems(text)
    assert problem.path == path
    assert "'UNSET' is not set" in problem.message


@pytest.mark.parametrize(
    ("text", "path"),
    [
        pytest.param(
            "namers:\n- kind: ${KIND}\n  rootDir: /srv\nrouters:\n- protocol: http\n"
            "  servers: [{port: 1}]\n",
            "namers[0].kind",
            id="namer-kind",
        ),
        pytest.param(
            "routers:\n- protocol: ${KIND}\n  servers: [{port: 1}]\n",
            "routers[0].protocol",
            id="protocol",
        ),
    ],
)
def test_missing_variable_in_a_kind_is_one_problem(problems, text, path):
    got = problems(text)
    assert [(p.path, "'KIND' is not set" in p.message) for p in got] == [(path, True)], [
        str(p) for p in got
    ]


def test_dollar_dollar_is_a_literal(registry):
    text = "routers:\n- protocol: http\n  label: $${LABEL}\n  servers: [{port: 1}]\n"
    for env in ({}, {"LABEL": "expanded"}):
        assert load(registry, text, env).routers[0].label == "${LABEL}"


def test_missing_variables_across_the_file_are_all_reported(problems):
    text = y(
        """
        namers:
        - kind: io.l5d.fs
          rootDir: ${DISCO_DIR}
        routers:
        - protocol: http
          servers:
          - port: ${PORT_A}
          - port: 4141
            ip: ${IP}
        """
    )
    got = problems(text)
    assert [(p.line, p.column, p.path) for p in got] == [
        (3, 12, "namers[0].rootDir"),
        (7, 11, "routers[0].servers[0].port"),
        (9, 9, "routers[0].servers[1].ip"),
    ], [str(p) for p in got]
    assert ["DISCO_DIR" in got[0].message, "PORT_A" in got[1].message] == [True, True]


@pytest.mark.parametrize("ports", [("${A}", "${B}"), ("nope", "nope")])
def test_unreadable_ports_do_not_make_a_server_conflict(problems, ports):
    """Ports that are not numbers are not taken as the protocol's default port (4140)."""
    text = f"routers:\n- protocol: http\n  servers:\n  - port: {ports[0]}\n  - port: {ports[1]}\n"
    got = problems(text)
    assert [(p.line, p.path) for p in got] == [
        (4, "routers[0].servers[0].port"),
        (5, "routers[0].servers[1].port"),
    ], [str(p) for p in got]


# -- JSON ---------------------------------------------------------------------------------------

JSON_TEXT = (
    "{\n"
    '\t"admin": {"port": 9991},\n'
    '\t"routers": [\n'
    '\t\t{"protocol": "http",\t"servers": [{"port": 4140}], "label": "edge"}\n'
    "\t]\n"
    "}\n"
)


def test_json_with_tabs_is_accepted(registry):
    config = load(registry, JSON_TEXT)
    assert config.admin.port == 9991
    assert config.routers[0].label == "edge"
    assert json.loads(JSON_TEXT)["routers"][0]["label"] == "edge"  # it really is JSON


def test_json_problem_positions_count_a_tab_as_one_column(problems):
    text = JSON_TEXT.replace('"label"', '"lable"')
    [problem] = problems(text)
    line = text.splitlines()[3]
    assert (problem.line, problem.column) == (4, line.index('"lable"') + 1)
    assert problem.path == "routers[0].lable"
    assert "did you mean 'label'?" in problem.message


# -- syntax errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        pytest.param(
            "routers:\n- protocol: http\n  servers: [{port: 4140}\n  label: x\n",
            4,
            3,
            "did not find expected ',' or ']'",
            id="unclosed-flow-sequence",
        ),
        pytest.param(
            "routers:\n- protocol: http\n\tservers: []\n",
            3,
            1,
            "tab character",
            id="tab-indentation",
        ),
        pytest.param(
            'routers:\n- protocol: http\n  label: "open\n',
            4,
            1,
            "found unexpected end of stream",
            id="unterminated-string",
        ),
        pytest.param("routers: *nope\n", 1, 10, "found undefined alias", id="undefined-alias"),
    ],
)
def test_yaml_syntax_error_is_one_problem_with_position(problems, text, line, column, fragment):
    [problem] = problems(text)
    assert (problem.line, problem.column, problem.path) == (line, column, "")
    assert problem.message.startswith("invalid YAML: ")
    assert fragment in problem.message


# -- alias bombs --------------------------------------------------------------------------------


def billion_laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("levels", [7, 12])
def test_alias_bomb_is_refused_quickly(problems, levels):
    started = time.perf_counter()
    [problem] = problems(billion_laughs(levels))
    assert time.perf_counter() - started < 10
    assert problem.message == (
        "the document expands to more than 200000 values (through YAML aliases); "
        "refusing to load it"
    )


def test_loader_raises_only_config_error_on_odd_documents(registry):
    """Odd but well-formed YAML never escapes as anything but ConfigError."""
    for text in (
        "42\n",
        "'just a string'\n",
        "[1, [2, [3]]]\n",
        "? [a, b]\n: c\n",
        "!!binary aGk=\n",
    ):
        with pytest.raises(ConfigError):
            load_text(text, "l5d.yaml", registry=registry, environ={})
