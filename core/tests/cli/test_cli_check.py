"""``turnout check``: exit 0 on a valid config, 1 with every problem on stderr."""

from __future__ import annotations

import json
import socket
import textwrap

VALID = textwrap.dedent(
    """
    namers:
    - kind: io.l5d.fs
      rootDir: /nonexistent/turnout/disco
    routers:
    - protocol: http
      label: edge
      dtab: /svc=>/#/io.l5d.fs
      servers:
      - port: 4140
    - protocol: http
      label: internal
      servers:
      - port: 4141
    """
).lstrip()

INVALID = textwrap.dedent(
    """
    namers:
    - kind: io.l5d.fss
      rootDir: /srv
    routers:
    - protocol: http
      srvers: []
      servers:
      - port: 70000
    """
).lstrip()

INVALID_LINES = [
    "error: l5d.yaml:2:9: namers[0].kind: unknown namer kind 'io.l5d.fss' (did you mean "
    "'io.l5d.fs'?); installed namer kinds: io.l5d.fs, io.l5d.rewrite",
    "error: l5d.yaml:6:3: routers[0].srvers: unknown key 'srvers' (did you mean 'servers'?); "
    "allowed keys of router protocol 'http': announcers, bindingCache, bindingTimeoutMs, client, "
    "dstPrefix, dtab, experimental, identifier, interpreter, label, originator, servers, service, "
    "protocol",
    "error: l5d.yaml:8:11: routers[0].servers[0].port: must be between 0 and 65535, got 70000",
    "3 errors; the configuration was not accepted",
]


def write(tmp_path, text, name="l5d.yaml"):
    (tmp_path / name).write_text(text)
    return name


def test_valid_config(turnout, tmp_path):
    result = turnout("check", write(tmp_path, VALID))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "l5d.yaml: OK (2 router(s): edge, internal)\n"


def test_invalid_config_lists_every_problem(turnout, tmp_path):
    result = turnout("check", write(tmp_path, INVALID))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == INVALID_LINES


def test_check_json_valid(turnout, tmp_path):
    result = turnout("check", "--json", write(tmp_path, VALID))
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"valid": True, "warnings": []}


def test_check_json_invalid(turnout, tmp_path):
    result = turnout("check", "--json", write(tmp_path, INVALID))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert [(e["source"], e["line"], e["column"], e["path"]) for e in report["errors"]] == [
        ("l5d.yaml", 2, 9, "namers[0].kind"),
        ("l5d.yaml", 6, 3, "routers[0].srvers"),
        ("l5d.yaml", 8, 11, "routers[0].servers[0].port"),
    ]
    assert report["errors"][2]["message"] == "must be between 0 and 65535, got 70000"


def test_check_warns_about_accepted_but_unimplemented_options(turnout, tmp_path):
    text = VALID + "admin:\n  httpIdentifierPort: 9999\n"
    result = turnout("check", write(tmp_path, text))
    assert result.returncode == 0
    assert result.stderr == (
        "warning: l5d.yaml:15:3: admin.httpIdentifierPort: admin.httpIdentifierPort is not "
        "implemented yet\n"
    )
    report = json.loads(turnout("check", "--json", "l5d.yaml").stdout)
    assert report["valid"] is True
    assert [w["path"] for w in report["warnings"]] == ["admin.httpIdentifierPort"]


def test_check_reads_stdin(turnout):
    result = turnout("check", "-", stdin=VALID)
    assert (result.returncode, result.stdout) == (0, "<stdin>: OK (2 router(s): edge, internal)\n")
    result = turnout("check", "-", stdin=INVALID)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith("error: <stdin>:2:9: namers[0].kind: ")


def test_check_json_from_stdin(turnout):
    result = turnout("check", "--json", "-", stdin='{"routers": []}')
    assert result.returncode == 1
    [error] = json.loads(result.stdout)["errors"]
    assert (error["source"], error["path"], error["message"]) == (
        "<stdin>",
        "routers",
        "at least one router is required",
    )


def test_missing_file(turnout):
    result = turnout("check", "missing.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: missing.yaml: no such file",
        "1 error; the configuration was not accepted",
    ]


def test_environment_variables_are_expanded(turnout, tmp_path):
    name = write(tmp_path, "routers:\n- protocol: http\n  label: ${EDGE_LABEL}\n  servers: [{}]\n")
    assert (
        turnout("check", name, EDGE_LABEL="front").stdout == "l5d.yaml: OK (1 router(s): front)\n"
    )
    result = turnout("check", name)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "error: l5d.yaml:3:10: routers[0].label: environment variable 'EDGE_LABEL' is not set; "
        "set it or write '${EDGE_LABEL:-default}' to give a default"
    )


def test_check_opens_no_listener(turnout, tmp_path):
    """The configured port is taken by someone else: check does not care (it binds nothing)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = f"routers:\n- protocol: http\n  servers: [{{port: {port}}}]\n"
        result = turnout("check", write(tmp_path, text))
    assert (result.returncode, result.stderr) == (0, "")


def test_without_the_protocol_plugin_the_hint_says_what_to_install(turnout, tmp_path):
    result = turnout("check", write(tmp_path, VALID), TURNOUT_PLUGIN_MODULES="")
    assert result.returncode == 1
    assert (
        "error: l5d.yaml:5:13: routers[0].protocol: unknown router protocol 'http'; it is "
        "provided by the plugin 'turnout-protocol-http': pip install turnout-protocol-http"
    ) in result.stderr
