"""Registration and configuration of both ``io.l5d.mesh`` kinds: the entry point, Linkerd's
keys and defaults, errors at their place (``file:line:col``), and Linkerd's examples passing
``turnout check``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path as FsPath
from typing import Any

import pytest
import yaml
from turnout.api import InterpreterConfig, NamerdInterfaceConfig, Path
from turnout.testing.config import installed_registry, plugin_registry, read_entry
from turnout_namerd_mesh import plugin
from turnout_namerd_mesh.config import MeshInterfaceConfig, MeshInterpreterConfig

ROOT = FsPath(__file__).resolve().parents[3]
LINKERD = ROOT / "examples" / "linkerd"


@pytest.fixture(scope="module")
def registry() -> Any:
    return plugin_registry(plugin)


def check(
    text: str, tmp_path: FsPath, name: str = "config.yaml"
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- registration --------------------------------------------------------------------------------
def test_the_plugin_registers_both_kinds(registry: Any) -> None:
    interface = registry.registration("namerd interface", "io.l5d.mesh")
    assert interface.cls is MeshInterfaceConfig
    interpreter = registry.registration("interpreter", "io.l5d.mesh")
    assert interpreter.cls is MeshInterpreterConfig
    assert interpreter.provider.plugin == "turnout_namerd_mesh.plugin"


def test_the_entry_point_is_found() -> None:
    found = installed_registry("turnout-namerd-mesh")
    assert found.config_class("namerd interface", "io.l5d.mesh") is MeshInterfaceConfig
    assert found.config_class("interpreter", "io.l5d.mesh") is MeshInterpreterConfig


def test_turnout_plugins_lists_the_kinds_with_the_distribution() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    plugins = json.loads(result.stdout)["plugins"]
    ours = [p for p in plugins if p.get("distribution") == "turnout-namerd-mesh"]
    assert len(ours) == 1, result.stdout
    assert {(k["family"], k["kind"]) for k in ours[0]["kinds"]} == {
        ("namerd interface", "io.l5d.mesh"),
        ("interpreter", "io.l5d.mesh"),
    }


# -- defaults and keys ---------------------------------------------------------------------------
def test_interpreter_defaults_are_linkerds(registry: Any) -> None:
    config, problems = read_entry(
        registry, InterpreterConfig, "kind: io.l5d.mesh\ndst: /$/inet/127.1/4321\n"
    )
    assert problems == []
    assert config.dst == Path.read("/$/inet/127.1/4321")
    assert config.root == Path.read("/default")  # MeshInterpreterConfig.DefaultRoot
    assert (config.retry.base_seconds, config.retry.max_seconds) == (1, 600)  # defaultRetry
    assert config.initial_stream_window_size_kb == 10240  # defaultWindowSizeKB
    assert config.tls is None and config.failure_threshold is None
    options = dict(config.channel_options())
    assert options["grpc.http2.lookahead_bytes"] == 10240 * 1024
    assert "grpc.keepalive_time_ms" not in options


def test_every_linkerd_interpreter_key(registry: Any, tmp_path: FsPath) -> None:
    import trustme

    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config, problems = read_entry(
        registry,
        InterpreterConfig,
        f"""
        kind: io.l5d.mesh
        experimental: true
        dst: /$/inet/namerd.example/4321
        root: /internal
        tls:
          commonName: namerd.example
          trustCertsBundle: {ca}
        retry:
          baseSeconds: 2
          maxSeconds: 30
        failureThreshold:
          minPeriodMs: 1000
        initialStreamWindowSizeKB: 64
        """,
    )
    assert problems == [], problems
    assert config.root == Path.read("/internal")
    options = dict(config.channel_options())
    assert options["grpc.keepalive_time_ms"] == 1000
    assert options["grpc.keepalive_timeout_ms"] == 6000  # DefaultCloseTimeout
    assert options["grpc.http2.lookahead_bytes"] == 64 * 1024
    assert options["grpc.ssl_target_name_override"] == "namerd.example"


def test_interface_defaults_are_linkerds(registry: Any) -> None:
    config, problems = read_entry(registry, NamerdInterfaceConfig, "kind: io.l5d.mesh\n")
    assert problems == []
    assert (config.ip, config.effective_port) == ("127.0.0.1", 4321)  # MeshIfaceInitializer


# -- located errors ------------------------------------------------------------------------------
LINKER = """\
routers:
- protocol: http
  interpreter:
    kind: io.l5d.mesh
    dst: /$/inet/127.1/4321
{extra}
  servers:
  - port: 4140
"""


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        (
            "    root: /a/b",
            "6:11: routers[0].interpreter.root",
            "`root` may only contain a single path element (for now): /a/b",
        ),
        (
            "    root: /..",
            "6:11: routers[0].interpreter.root",
            "invalid dtab namespace '..'",
        ),
        (
            "    retry: {baseSeconds: 10, maxSeconds: 5}",
            "6:42: routers[0].interpreter.retry.maxSeconds",
            "must be at least baseSeconds (10), got 5",
        ),
        (
            "    tls: {commonName: namerd, disableValidation: true}",
            "6:50: routers[0].interpreter.tls.disableValidation",
            "cannot skip certificate validation",
        ),
        (
            "    tls: {commonName: namerd, protocols: [TLSv1.2]}",
            "6:42: routers[0].interpreter.tls.protocols",
            "cannot restrict TLS versions",
        ),
        (
            "    failureTreshold: {}",
            "6:5: routers[0].interpreter.failureTreshold",
            "did you mean 'failureThreshold'?",
        ),
        (
            "    initialStreamWindowSizeKB: 0",
            "6:32: routers[0].interpreter.initialStreamWindowSizeKB",
            "",
        ),
    ],
)
def test_interpreter_errors_are_located(
    tmp_path: FsPath, extra: str, where: str, message: str
) -> None:
    result = check(LINKER.format(extra=extra), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {tmp_path / 'config.yaml'}:{where}: "), errors[0]
    assert message in errors[0], errors[0]


def test_dst_is_required(tmp_path: FsPath) -> None:
    text = LINKER.format(extra="").replace("    dst: /$/inet/127.1/4321\n", "")
    result = check(text, tmp_path)
    assert result.returncode == 1
    assert "config.yaml:4:5: routers[0].interpreter: missing required key 'dst'" in result.stderr


NAMERD = """\
storage:
  kind: io.l5d.inMemory
interfaces:
- kind: io.l5d.mesh
{extra}
"""


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        ("  h2AccessLog: /tmp/access.log", "5:16: interfaces[0].h2AccessLog", "not implemented"),
        ("  port: 70000", "5:9: interfaces[0].port", ""),
        ("  prot: 4321", "5:3: interfaces[0].prot", "did you mean 'port'?"),
    ],
)
def test_interface_errors_are_located(
    tmp_path: FsPath, extra: str, where: str, message: str
) -> None:
    result = check(NAMERD.format(extra=extra), tmp_path, "namerd.yaml")
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {tmp_path / 'namerd.yaml'}:{where}: "), errors[0]
    assert message in errors[0], errors[0]


def test_interface_tls_options_grpcio_cannot_honour_are_errors(tmp_path: FsPath) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("namerd.test")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    extra = (
        f"  tls:\n    certPath: {tmp_path / 'cert.pem'}\n    keyPath: {tmp_path / 'key.pem'}\n"
        "    protocols: [TLSv1.3]\n    ciphers: [ECDHE-RSA-AES128-GCM-SHA256]"
    )
    result = check(NAMERD.format(extra=extra), tmp_path, "namerd.yaml")
    assert result.returncode == 1
    assert "namerd.yaml:8:16: interfaces[0].tls.protocols" in result.stderr, result.stderr
    assert "namerd.yaml:9:14: interfaces[0].tls.ciphers" in result.stderr, result.stderr


def test_an_unreadable_client_certificate_is_a_start_up_error(tmp_path: FsPath) -> None:
    """A security option that cannot be honoured stops turnout at start-up."""
    config = yaml.safe_load(LINKER.format(extra=""))
    config["routers"][0]["interpreter"]["tls"] = {
        "commonName": "namerd.test",
        "clientAuth": {"certPath": str(tmp_path / "gone.pem"), "keyPath": str(tmp_path / "k")},
    }
    config["routers"][0]["servers"][0]["port"] = 0
    config["admin"] = {"port": 0}
    path = tmp_path / "linker.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "gone.pem" in result.stderr, result.stderr


# -- Linkerd's examples --------------------------------------------------------------------------
def test_linkerds_namerd_mesh_linker_example_passes_check(tmp_path: FsPath) -> None:
    result = check((LINKERD / "namerd-mesh.yaml").read_text(), tmp_path, "namerd-mesh.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "namerd-mesh.yaml: OK (1 router(s): http)" in result.stdout
    assert "warning" not in (result.stdout + result.stderr).lower()


def test_linkerds_mesh_namerd_example_passes_check(tmp_path: FsPath) -> None:
    (tmp_path / "namerd/examples/disco").mkdir(parents=True)  # (its io.l5d.fs rootDir)
    result = check((LINKERD / "namerd" / "mesh.yaml").read_text(), tmp_path, "mesh.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "mesh.yaml: OK (namerd: storage io.l5d.inMemory, 2 interface(s): "
        "io.l5d.httpController, io.l5d.mesh)"
    ) in result.stdout
    assert "warning" not in (result.stdout + result.stderr).lower()


def test_linkerds_k8s_mesh_example_does_not_use_io_l5d_mesh() -> None:
    """``namerd/k8s-mesh.yaml`` is named for the mesh but serves io.l5d.thriftNameInterpreter
    and io.l5d.httpController: nothing of this plugin (it stays refused for ThriftMux)."""
    config = yaml.safe_load((LINKERD / "namerd" / "k8s-mesh.yaml").read_text())
    assert "io.l5d.mesh" not in {i["kind"] for i in config["interfaces"]}


def test_a_port_in_use_stops_namerd_with_the_reason(tmp_path: FsPath) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = NAMERD.format(extra=f"  port: {port}").replace(
            "storage:", "admin: {port: 0}\nstorage:"
        )
        path = tmp_path / "namerd.yaml"
        path.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "turnout", "namerd", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert (
        f"interface io.l5d.mesh cannot listen on 127.0.0.1:{port}: the address is in use or "
        "not available; choose another 'port'"
    ) in result.stderr, result.stderr
