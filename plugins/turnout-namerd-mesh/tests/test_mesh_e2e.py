"""End to end: ``turnout namerd`` with the io.l5d.mesh interface and a linker whose HTTP
router binds through the io.l5d.mesh interpreter, routing real requests. A dtab PUT through
namerd's io.l5d.httpController changes where requests go; with namerd stopped the linker
keeps routing with the last good tree; restarted, namerd is followed again; a discovery change
in namerd's namers reaches the linker; TLS between them."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

import pytest
import yaml
from turnout.testing import DiscoDir, free_port, http_request, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def namerd_yaml(disco: DiscoDir, admin: int, api: int, mesh: int, **mesh_options: Any) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": admin},
            "storage": {
                "kind": "io.l5d.inMemory",
                "namespaces": {"default": "/svc/web => /#/io.l5d.fs/a"},
            },
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco.root), "pollIntervalMs": 50}],
            "interfaces": [
                {"kind": "io.l5d.httpController", "port": api},
                {"kind": "io.l5d.mesh", "port": mesh, **mesh_options},
            ],
        }
    )


def linker_yaml(mesh: int, **interpreter: Any) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            "routers": [
                {
                    "protocol": "http",
                    "interpreter": {
                        "kind": "io.l5d.mesh",
                        "dst": f"/$/inet/127.0.0.1/{mesh}",
                        "root": "/default",
                        "retry": {"baseSeconds": 1, "maxSeconds": 2},
                        **interpreter,
                    },
                    "servers": [{"port": free_port()}],
                }
            ],
        }
    )


def admin_json(proxy: Any, path: str) -> Any:
    with urllib.request.urlopen(proxy.admin_url + path, timeout=10) as r:
        return json.loads(r.read())


def served_by(proxy: Any) -> str:
    r = http_request(proxy.port, "GET", "/", {"Host": "web"}, timeout=15)
    return r.text.split(" ")[0] if r.status == 200 else f"status {r.status}"


def put(namerd: Any, api: int, dtab: str) -> None:
    r = namerd.http(
        api, "PUT", "/api/1/dtabs/default", dtab.encode(), **{"Content-Type": "application/dtab"}
    )
    assert r.status == 204, (r.status, r.text)


STATE = "/http/interpreter_state/io.l5d.mesh/default.json"


def test_namerd_drives_a_linker_through_grpc_and_outlives_a_restart(
    namerd_process: Any, turnout_process: Any, recording_backend: Any, disco_dir: DiscoDir
) -> None:
    a, b = recording_backend(name="a"), recording_backend(name="b")
    disco_dir.write("a", a)
    disco_dir.write("b", b)
    admin, api, mesh = free_port(), free_port(), free_port()
    namerd = namerd_process(namerd_yaml(disco_dir, admin, api, mesh), admin, api, mesh)
    proxy = turnout_process(linker_yaml(mesh))  # (turnout's default loop: uvloop)

    assert wait_until(lambda: served_by(proxy) == "a", timeout=30), proxy.log()

    # a PUT through namerd's HTTP API moves the traffic
    put(namerd, api, "/svc/web => /#/io.l5d.fs/b")
    assert wait_until(lambda: served_by(proxy) == "b", timeout=30), proxy.log()

    state = admin_json(proxy, STATE)
    assert state["root"] == "/default" and state["dst"] == f"/$/inet/127.0.0.1/{mesh}"
    assert [w["path"] for w in state["watches"]["bind"]] == ["/svc/web"]
    assert "/#/io.l5d.fs/b" in [w["path"] for w in state["watches"]["resolve"]]
    assert all(w["connected"] for w in state["watches"]["bind"])
    metrics = admin_json(proxy, "/admin/metrics.json")
    assert metrics["rt/http/interpreter/io.l5d.mesh/updates"] >= 3  # (2 trees, addresses)
    assert metrics["rt/http/interpreter/io.l5d.mesh/watches"] >= 2
    namerd_metrics = namerd.admin_json(admin, "/admin/metrics.json")
    assert namerd_metrics["interface/io.l5d.mesh/StreamBoundTree/requests"] >= 1
    assert namerd_metrics["interface/io.l5d.mesh/open_streams"] >= 2

    # namerd's delegate tree, through the interpreter's page
    query = urllib.parse.urlencode({"path": "/svc/web"})
    tree = admin_json(proxy, f"/http/interpreter_state/io.l5d.mesh/default/delegate.json?{query}")
    assert tree["type"] == "delegate" and tree["path"] == "/svc/web", tree
    assert tree["delegate"]["bound"]["id"] == "/#/io.l5d.fs/b", tree
    # turnout's own /delegator.json (the dashboard's) delegates through namerd too
    r = http_request(
        int(proxy.admin_url.rsplit(":", 1)[1]),
        "GET",
        "/delegator.json?namespace=http&path=/svc/web&dtab=",
        {"Host": "admin"},
        timeout=10,
    )
    assert r.status == 200, (r.status, r.text)
    assert json.loads(r.text) == tree

    # namerd stops: the linker keeps routing with the last good tree
    assert namerd.stop() == 0, namerd.log()  # (SIGTERM with streams open: a clean exit)
    # (the stream breaks as namerd goes; then reconnecting fails: nothing listens)
    assert wait_until(
        lambda: proxy.log().count("io.l5d.mesh stream bind /svc/web failed") >= 2, timeout=30
    ), proxy.log()
    assert {served_by(proxy) for _ in range(5)} == {"b"}
    state = admin_json(proxy, STATE)
    assert not state["watches"]["bind"][0]["connected"]
    assert "UNAVAILABLE" in state["watches"]["bind"][0]["lastError"]
    assert admin_json(proxy, "/admin/metrics.json")["rt/http/interpreter/io.l5d.mesh/failures"] >= 1

    # namerd starts again (its in-memory store starts over from the seed: a); the linker
    # reconnects, follows it, and changes apply again
    restarted = namerd_process(namerd_yaml(disco_dir, admin, api, mesh), admin, api, mesh)
    assert wait_until(lambda: served_by(proxy) == "a", timeout=60), proxy.log()
    put(restarted, api, "/svc/web => /#/io.l5d.fs/b")
    assert wait_until(lambda: served_by(proxy) == "b", timeout=30), proxy.log()
    assert wait_until(
        lambda: all(w["connected"] for w in admin_json(proxy, STATE)["watches"]["bind"]),
        timeout=30,
    )
    # the linker stops cleanly with its gRPC streams open (the interpreter closes them)
    assert proxy.stop() == 0, proxy.log()
    assert "Traceback" not in proxy.log(), proxy.log()


def test_stdlib_loops_and_a_discovery_change_in_namerd(
    namerd_process: Any, turnout_process: Any, recording_backend: Any, disco_dir: DiscoDir
) -> None:
    """namerd and the linker on the stdlib event loop (TURNOUT_LOOP=asyncio); an address
    change in namerd's namers reaches the linker through its StreamReplicas stream."""
    a, c = recording_backend(name="a"), recording_backend(name="c")
    disco_dir.write("a", a)
    admin, api, mesh = free_port(), free_port(), free_port()
    namerd = namerd_process(
        namerd_yaml(disco_dir, admin, api, mesh), admin, api, mesh, loop="asyncio"
    )
    proxy = turnout_process(linker_yaml(mesh), env={"TURNOUT_LOOP": "asyncio"})
    assert wait_until(lambda: served_by(proxy) == "a", timeout=30), proxy.log()
    disco_dir.write("a", c)  # the same bound id, another address
    assert wait_until(lambda: served_by(proxy) == "c", timeout=30), proxy.log()

    # a name namerd fails to bind (a dtab that recurses without end) fails at once, with
    # namerd's error, rather than after bindingTimeoutMs
    put(namerd, api, "/svc/web => /#/io.l5d.fs/a; /svc/loop => /svc/loop/x")
    r = http_request(proxy.port, "GET", "/", {"Host": "loop"}, timeout=15)
    assert r.status >= 500 and "namerd: INTERNAL" in r.text, (r.status, r.text)


def test_a_name_stays_pending_while_namerd_was_never_reached(
    turnout_process: Any, recording_backend: Any, disco_dir: DiscoDir
) -> None:
    a = recording_backend(name="a")
    disco_dir.write("a", a)
    # nothing listens on the mesh port: the binding stays pending, then times out
    unreachable = free_port()
    cfg = yaml.safe_load(linker_yaml(unreachable))
    cfg["routers"][0]["bindingTimeoutMs"] = 1000
    proxy = turnout_process(yaml.safe_dump(cfg))
    assert served_by(proxy).startswith("status 5")
    assert wait_until(lambda: "nothing bound yet" in proxy.log(), timeout=30), proxy.log()
    assert a.request_count == 0


def _pki(root: Any, name: str) -> tuple[str, str, str]:
    """A CA named ``name`` and a certificate for ``namerd.test``: (ca, cert, key) paths."""
    import trustme

    ca = trustme.CA(organization_name=name)
    cert = ca.issue_cert("namerd.test")
    paths = [root / f"{name}-ca.pem", root / f"{name}-cert.pem", root / f"{name}-key.pem"]
    ca.cert_pem.write_to_path(str(paths[0]))
    paths[1].write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(paths[2]))
    return str(paths[0]), str(paths[1]), str(paths[2])


def test_tls_between_the_linker_and_namerd(
    namerd_process: Any,
    turnout_process: Any,
    recording_backend: Any,
    disco_dir: DiscoDir,
    tmp_path: Any,
) -> None:
    a = recording_backend(name="a")
    disco_dir.write("a", a)
    ca, cert, key = _pki(tmp_path, "good")
    other_ca, _, _ = _pki(tmp_path, "other")
    admin, api, mesh = free_port(), free_port(), free_port()
    tls = {"certPath": cert, "keyPath": key}
    namerd_process(namerd_yaml(disco_dir, admin, api, mesh, tls=tls), admin, api, mesh)

    def linker(trust: str) -> str:
        cfg = yaml.safe_load(
            linker_yaml(mesh, tls={"commonName": "namerd.test", "trustCertsBundle": trust})
        )
        cfg["routers"][0]["bindingTimeoutMs"] = 2000
        return yaml.safe_dump(cfg)

    good = turnout_process(linker(ca))
    assert wait_until(lambda: served_by(good) == "a", timeout=30), good.log()

    # a linker that does not trust namerd's certificate never binds through it
    bad = turnout_process(linker(other_ca))
    assert served_by(bad) != "a"  # (binding waits bindingTimeoutMs, then fails)
    assert wait_until(lambda: "UNAVAILABLE" in bad.log(), timeout=30), bad.log()
    assert a.request_count >= 1


def test_linkerds_namerd_mesh_example_routes_through_namerd(
    namerd_process: Any, turnout_process: Any, recording_backend: Any, disco_dir: DiscoDir
) -> None:
    """Linkerd's ``examples/linkerd/namerd-mesh.yaml`` started as it is, with only its
    addresses made free loopback ports: its router binds through namerd's gRPC interface."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "linkerd" / "namerd-mesh.yaml"
    config: dict[str, Any] = yaml.safe_load(example.read_text())
    [router] = config["routers"]
    assert router["interpreter"] == {
        "kind": "io.l5d.mesh",
        "dst": "/$/inet/127.1/4321",
        "root": "/default",
    }
    a = recording_backend(name="a")
    disco_dir.write("a", a)
    admin, api, mesh = free_port(), free_port(), free_port()
    namerd_process(namerd_yaml(disco_dir, admin, api, mesh), admin, api, mesh)
    router["interpreter"]["dst"] = f"/$/inet/127.1/{mesh}"  # (127.1: the example's shorthand)
    router["servers"] = [{"port": free_port(), "ip": "127.0.0.1"}]
    config["admin"] = {"port": free_port()}
    proxy = turnout_process(yaml.safe_dump(config))
    assert wait_until(lambda: served_by(proxy) == "a", timeout=30), proxy.log()
    assert a.request_count >= 1
    assert proxy.stop() == 0, proxy.log()


def test_a_linker_without_a_mesh_interpreter_never_loads_grpc(
    turnout_process: Any, recording_backend: Any, disco_dir: DiscoDir
) -> None:
    """Installed but unused, the plugin costs no grpc import (about 10 MB of RSS): the admin
    routes hook must not import the interpreter module to look for mesh interpreters."""
    a = recording_backend(name="a")
    disco_dir.write("web", a)
    proxy = turnout_process(
        yaml.safe_dump(
            {
                "admin": {"port": free_port()},
                "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco_dir.root)}],
                "routers": [
                    {
                        "protocol": "http",
                        "dtab": "/svc => /#/io.l5d.fs",
                        "servers": [{"port": free_port()}],
                    }
                ],
            }
        )
    )
    assert wait_until(lambda: served_by(proxy) == "a", timeout=30), proxy.log()
    admin_json(proxy, "/admin/metrics.json")  # (the admin is up, its routes collected)
    with open(f"/proc/{proxy.pid}/maps") as maps:
        loaded = maps.read()
    assert "cygrpc" not in loaded
    assert "cygrpc" in _maps_of_a_process_importing_grpc()  # (the check can fail)


def _maps_of_a_process_importing_grpc() -> str:
    import subprocess
    import sys

    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import grpc, sys; sys.stdout.write(open('/proc/self/maps').read())",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
