"""namerd's configuration: `turnout check` recognises a namerd file and reports every
problem with file:line:col; store and interface kinds are registered through hooks (a
plugin's store kind is usable); the io.l5d.namerd.http interpreter's options are checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from turnout.plugin_manager import load_plugins

HERE = Path(__file__).parent


def turnout(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    full["PYTHONPATH"] = os.pathsep.join([str(HERE), full.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "turnout", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


GOOD = """\
storage:
  kind: io.l5d.inMemory
  namespaces:
    default: /svc => /#/io.l5d.fs
namers:
- kind: io.l5d.fs
  rootDir: disco
interfaces:
- kind: io.l5d.httpController
"""

BAD = """\
storage:
  kind: io.l5d.inMemory
  namespaces:
    default: /svc => /#/io.l5d.fs;;
    a/b: /x=>/y
namers:
- kind: io.l5d.fs
  rootDir: disco
  prefx: /fs
interfaces:
- kind: io.l5d.httpControler
- kind: io.l5d.httpController
  port: 70000
admin:
  port: 9991
  bogus: true
"""


def test_check_recognises_a_namerd_file(tmp_path: Path) -> None:
    (tmp_path / "namerd.yaml").write_text(GOOD)
    r = turnout(tmp_path, "check", "namerd.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        "namerd.yaml: OK (namerd: storage io.l5d.inMemory, 1 interface(s): io.l5d.httpController)"
    )
    r = turnout(tmp_path, "check", "--json", "namerd.yaml")
    assert json.loads(r.stdout) == {"valid": True, "warnings": []}


def test_every_problem_is_reported_with_its_position(tmp_path: Path) -> None:
    (tmp_path / "namerd.yaml").write_text(BAD)
    r = turnout(tmp_path, "check", "namerd.yaml")
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith("error: namerd.yaml:4:35: storage.namespaces.default: invalid")
    assert "'/' expected but ';' found" in errors[0]
    assert any(e.startswith("error: namerd.yaml:9:3: namers[0].prefx: unknown key") for e in errors)
    assert any(
        e.startswith("error: namerd.yaml:11:9: interfaces[0].kind: unknown namerd interface")
        and "did you mean 'io.l5d.httpController'" in e
        for e in errors
    )
    assert any(e.startswith("error: namerd.yaml:13:9: interfaces[1].port: must be") for e in errors)
    assert any(e.startswith("error: namerd.yaml:16:3: admin.bogus: unknown key") for e in errors)
    assert len(errors) == 5, r.stderr  # (a/b is checked once the rest is valid)
    # `turnout namerd` refuses it the same way, without starting
    r = turnout(tmp_path, "namerd", "namerd.yaml")
    assert r.returncode == 1 and "namers[0].prefx" in r.stderr


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (GOOD.replace("default: /svc", "a/b: /svc"), "storage.namespaces.a/b: invalid dtab"),
        (GOOD + "- kind: io.l5d.httpController\n", "interface conflict on 127.0.0.1:4180"),
        (
            GOOD.replace("interfaces:\n- kind: io.l5d.httpController\n", "interfaces: []\n"),
            "at least one interface is required",
        ),
        (
            GOOD.replace("namers:\n", "namers:\n- kind: io.l5d.fs\n  rootDir: x\n"),
            "namers must not have overlapping prefixes",
        ),
        (
            GOOD.replace("storage:\n  kind: io.l5d.inMemory\n", "storage:\n  kind: x\n"),
            "unknown dtab store kind 'x'",
        ),
        ("interfaces:\n- kind: io.l5d.httpController\n", "1:1: missing required key 'storage'"),
    ],
)
def test_namerd_checks(tmp_path: Path, yaml_text: str, message: str) -> None:
    (tmp_path / "namerd.yaml").write_text(yaml_text)
    r = turnout(tmp_path, "check", "namerd.yaml")
    assert r.returncode == 1
    assert message in r.stderr, r.stderr


def test_registered_kinds() -> None:
    plugins = load_plugins({"TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    reg = plugins.registry
    store = reg.registration("dtab store", "io.l5d.inMemory")
    assert store is not None and store.provider.distribution == "turnout"
    assert store.hook == "turnout_register_dtab_stores"
    iface = reg.registration("namerd interface", "io.l5d.httpController")
    assert iface is not None and iface.hook == "turnout_register_namerd_interfaces"
    interp = reg.registration("interpreter", "io.l5d.namerd.http")
    assert interp is not None
    load_plugins({"TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"})  # (loading twice is fine)


def test_a_plugin_store_kind_is_found_and_validated(tmp_path: Path) -> None:
    text = GOOD.replace(
        "kind: io.l5d.inMemory\n  namespaces:\n    default: /svc => /#/io.l5d.fs\n",
        "kind: com.example.store\n  greting: hi\n",
    )
    (tmp_path / "namerd.yaml").write_text(text)
    env = {"TURNOUT_PLUGIN_MODULES": "namerd_fake_store"}
    r = turnout(tmp_path, "check", "namerd.yaml", **env)
    assert r.returncode == 1
    assert "namerd.yaml:3:3: storage.greting: unknown key 'greting' (did you mean 'greeting'?)" in (
        r.stderr
    )
    (tmp_path / "namerd.yaml").write_text(text.replace("greting", "greeting"))
    r = turnout(tmp_path, "check", "namerd.yaml", **env)
    assert r.returncode == 0, r.stderr
    assert "storage com.example.store" in r.stdout


LINKER = """\
admin:
  port: 9990
routers:
- protocol: http
  servers:
  - port: 4140
  interpreter:
    kind: io.l5d.namerd.http
    dst: /$/inet/127.0.0.1/4180
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "routers[0].interpreter: interpreter kind 'io.l5d.namerd.http' is experimental"),
        (
            "    experimental: true\n    tls:\n      trustCertsBundle: ca.pem\n",
            "routers[0].interpreter.tls.commonName: commonName is required",
        ),
        (
            "    experimental: true\n    tls:\n      commonName: '{host}'\n",
            "routers[0].interpreter.tls.commonName: the commonName of io.l5d.namerd.http",
        ),
        (
            "    experimental: true\n    retry:\n      baseSeconds: 10\n      maxSeconds: 5\n",
            "routers[0].interpreter.retry.maxSeconds: must be at least baseSeconds (10), got 5",
        ),
        ("    experimental: true\n    namespace: a/b\n", "interpreter.namespace: invalid dtab"),
        ("    experimental: true\n    dst: nope\n", "interpreter.dst: invalid path"),
    ],
)
def test_interpreter_options_are_checked(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path / "linker.yaml").write_text(LINKER + extra)
    r = turnout(tmp_path, "check", "linker.yaml")
    assert r.returncode == 1, r.stdout
    assert message in r.stderr, r.stderr


def test_interpreter_config_ok(tmp_path: Path) -> None:
    (tmp_path / "linker.yaml").write_text(LINKER + "    experimental: true\n")
    r = turnout(tmp_path, "check", "linker.yaml")
    assert r.returncode == 0, r.stderr


def test_linkerds_namerd_examples(tmp_path: Path) -> None:
    # linkerd/linkerd:namerd/examples/minimal.yaml, verbatim
    (tmp_path / "minimal.yaml").write_text(
        "# example config demonstrating the minimal set of namerd config keys required\n"
        "storage:\n  kind: io.l5d.inMemory\ninterfaces:\n- kind: io.l5d.httpController\n"
    )
    r = turnout(tmp_path, "check", "minimal.yaml")
    assert r.returncode == 0, r.stderr
    # linkerd/linkerd:linkerd/examples/namerd-http.yaml, verbatim
    (tmp_path / "namerd-http.yaml").write_text(
        "# Use the experimental namerd HTTP API for name resolution.\n"
        "routers:\n- protocol: http\n  interpreter:\n    kind: io.l5d.namerd.http\n"
        "    experimental: true\n    dst: /$/inet/localhost/4180\n    namespace: default\n"
        "  servers:\n  - port: 4140\n    ip: 0.0.0.0\n"
    )
    r = turnout(tmp_path, "check", "namerd-http.yaml")
    assert r.returncode == 0, r.stderr
    # an interface kind turnout does not have (yet) is named as such
    (tmp_path / "thrift.yaml").write_text(
        "storage:\n  kind: io.l5d.inMemory\ninterfaces:\n- kind: io.l5d.thriftNameInterpreter\n"
    )
    r = turnout(tmp_path, "check", "thrift.yaml")
    assert r.returncode == 1
    assert "thrift.yaml:4:9: interfaces[0].kind: unknown namerd interface kind " in r.stderr


def test_a_taken_interface_port_is_a_clear_start_up_error(tmp_path: Path) -> None:
    import socket

    from turnout.testing import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "namerd.yaml").write_text(
            GOOD.replace("httpController", f"httpController\n  port: {port}")
            + f"admin:\n  port: {free_port()}\n"
        )
        r = turnout(tmp_path, "namerd", "namerd.yaml")
    assert r.returncode == 1
    assert f"turnout: interface io.l5d.httpController cannot listen on 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr
