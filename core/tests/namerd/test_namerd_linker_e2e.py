"""End to end: `turnout namerd` and a linker whose router binds through io.l5d.namerd.http.
A PUT through namerd's API changes where real requests go; a stale PUT changes nothing; with
namerd stopped the linker keeps routing with the last good tree; restarted, changes apply
again."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from turnout.testing import DiscoDir, free_port, http_request, wait_until

#: the linker finds io.l5d.namerd.http through this module until it is a built-in plugin

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def namerd_yaml(disco: DiscoDir, admin: int, api: int) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": admin},
            "storage": {
                "kind": "io.l5d.inMemory",
                "namespaces": {"default": "/svc/web => /#/io.l5d.fs/a"},
            },
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco.root), "pollIntervalMs": 50}],
            "interfaces": [{"kind": "io.l5d.httpController", "port": api}],
        }
    )


def linker_yaml(api: int) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            "routers": [
                {
                    "protocol": "http",
                    "interpreter": {
                        "kind": "io.l5d.namerd.http",
                        "experimental": True,
                        "dst": f"/$/inet/127.0.0.1/{api}",
                        "namespace": "default",
                        "retry": {"baseSeconds": 1, "maxSeconds": 2},
                    },
                    "servers": [{"port": free_port()}],
                }
            ],
        }
    )


def admin_json(proxy: Any, path: str) -> Any:
    import json
    import urllib.request

    with urllib.request.urlopen(proxy.admin_url + path, timeout=10) as r:
        return json.loads(r.read())


def served_by(proxy: Any) -> str:
    r = http_request(proxy.port, "GET", "/", {"Host": "web"}, timeout=15)
    return r.text.split(" ")[0] if r.status == 200 else f"status {r.status}"


def test_namerd_drives_the_routing_of_a_linker(
    namerd_process: Any, turnout_process: Any, recording_backend: Any, disco_dir: DiscoDir
) -> None:
    a = recording_backend(name="a")
    b = recording_backend(name="b")
    disco_dir.write("a", a)
    disco_dir.write("b", b)
    admin, api = free_port(), free_port()
    namerd = namerd_process(namerd_yaml(disco_dir, admin, api), admin, api)
    proxy = turnout_process(linker_yaml(api))

    assert wait_until(lambda: served_by(proxy) == "a", timeout=30), proxy.log()

    # a PUT through namerd (with the current version) moves the traffic
    r = namerd.put("default", "/svc/web => /#/io.l5d.fs/b", if_match="AAAAAAAAAAE=")
    assert r.status == 204, r.text
    assert wait_until(lambda: served_by(proxy) == "b", timeout=30), proxy.log()

    # a PUT with a stale version: 412, and nothing changes
    r = namerd.put("default", "/svc/web => /#/io.l5d.fs/a", if_match="AAAAAAAAAAE=")
    assert r.status == 412
    time.sleep(0.5)  # (a change, if there were one, would have reached the linker by now)
    assert {served_by(proxy) for _ in range(5)} == {"b"}

    state_path = "/http/interpreter_state/io.l5d.namerd.http/default.json"
    state = admin_json(proxy, state_path)
    assert state["namespace"] == "default" and state["connects"] >= 2
    assert [w["path"] for w in state["watches"]["bind"]] == ["/svc/web"]
    assert all(w["connected"] for w in state["watches"]["bind"] + state["watches"]["addr"])
    metrics = admin_json(proxy, "/admin/metrics.json")
    assert metrics["rt/http/interpreter/io.l5d.namerd.http/updates"] >= 2

    # namerd stops: the linker keeps routing with the last good tree
    namerd.stop()
    assert wait_until(lambda: "namerd watch" in proxy.log(), timeout=30), proxy.log()
    assert {served_by(proxy) for _ in range(5)} == {"b"}
    state = admin_json(proxy, state_path)
    assert not state["watches"]["bind"][0]["connected"]
    assert state["watches"]["bind"][0]["lastError"]

    # namerd starts again (its in-memory store starts over from the seed: a), the linker
    # reconnects and follows it, and changes apply again
    restarted = namerd_process(namerd_yaml(disco_dir, admin, api), admin, api)
    assert wait_until(lambda: served_by(proxy) == "a", timeout=60), proxy.log()
    assert restarted.put("default", "/svc/web => /#/io.l5d.fs/b").status == 204
    assert wait_until(lambda: served_by(proxy) == "b", timeout=30), proxy.log()


def test_a_discovery_change_in_namerd_reaches_the_linker(
    namerd_process: Any, turnout_process: Any, recording_backend: Any, disco_dir: DiscoDir
) -> None:
    a = recording_backend(name="a")
    c = recording_backend(name="c")
    disco_dir.write("a", a)
    admin, api = free_port(), free_port()
    namerd_process(namerd_yaml(disco_dir, admin, api), admin, api)
    proxy = turnout_process(linker_yaml(api))
    assert wait_until(lambda: served_by(proxy) == "a", timeout=30), proxy.log()
    disco_dir.write("a", c)  # the same bound id, another address: the addr watch carries it
    assert wait_until(lambda: served_by(proxy) == "c", timeout=30), proxy.log()


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
    admin, api = free_port(), free_port()
    config = yaml.safe_load(namerd_yaml(disco_dir, admin, api))
    config["interfaces"][0]["tls"] = {"certPath": cert, "keyPath": key}
    namerd_process(yaml.safe_dump(config), admin, api)

    def linker(trust: str) -> str:
        cfg = yaml.safe_load(linker_yaml(api))
        router = cfg["routers"][0]
        router["bindingTimeoutMs"] = 2000
        router["interpreter"]["tls"] = {"commonName": "namerd.test", "trustCertsBundle": trust}
        return yaml.safe_dump(cfg)

    good = turnout_process(linker(ca))
    assert wait_until(lambda: served_by(good) == "a", timeout=30), good.log()

    # a linker that does not trust namerd's certificate never binds through it
    bad = turnout_process(linker(other_ca))
    assert served_by(bad) != "a"  # (binding waits bindingTimeoutMs, then fails)
    assert wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in bad.log(), timeout=30), bad.log()
    assert a.request_count >= 1
