"""Linkerd's namerd examples (``examples/linkerd/namerd/``, copied unchanged) pass ``turnout
check`` except for the interfaces turnout does not provide (ThriftMux's
``io.l5d.thriftNameInterpreter``, Linkerd 2's ``io.l5d.destination``) and those of a first-party
plugin that is not installed (the gRPC ``io.l5d.mesh`` of ``turnout-namerd-mesh``, the
``io.l5d.etcd`` store of ``turnout-namerd-etcd``), each refused
with the reason; ``minimal.yaml`` runs, and Linkerd's linker config
``examples/linkerd/namerd-http.yaml`` routes real requests through it."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from turnout.known_plugins import FIRST_PARTY_KINDS, NOT_PROVIDED
from turnout.testing import free_port, http_request, wait_until

ROOT = Path(__file__).resolve().parents[3]
LINKERD = ROOT / "examples" / "linkerd"
NAMERD = LINKERD / "namerd"
FINAGLE = "finagle/h2/src/e2e/resources"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

EXAMPLES = sorted(p.name for p in NAMERD.glob("*.yaml"))


def test_linkerds_namerd_examples_are_all_here():
    assert EXAMPLES == [
        "all.yaml",
        "basic.yaml",
        "consul-storage.yaml",
        "consul.yaml",
        "destination.yaml",
        "etcd.yaml",
        "k8s-mesh.yaml",
        "k8s.yaml",
        "mesh.yaml",
        "minimal.yaml",
        "static.yaml",
        "tls.yaml",
        "zk.yaml",
    ]


def workspace(ws: Path) -> Path:
    """What the examples name, relative to the working directory: the io.l5d.fs directory and
    (tls.yaml) certificates, PEM, keys PKCS#8."""
    (ws / "namerd/examples/disco").mkdir(parents=True)
    ca = trustme.CA()
    certs = ws / "namerd/examples/certs"
    certs.mkdir(parents=True)
    namerd = ca.issue_cert("namerd", "localhost", "127.0.0.1")
    namerd.cert_chain_pems[0].write_to_path(str(certs / "namerd-cert.pem"))
    namerd.private_key_pem.write_to_path(str(certs / "namerd-key.pk8"))
    ca.cert_pem.write_to_path(str(certs / "namerd-cacert.pem"))
    finagle = ws / FINAGLE
    finagle.mkdir(parents=True)
    e2e = ca.issue_cert("linkerd-tls-e2e", "localhost", "127.0.0.1")
    e2e.cert_chain_pems[0].write_to_path(str(finagle / "linkerd-tls-e2e-cert.pem"))
    e2e.private_key_pem.write_to_path(str(finagle / "linkerd-tls-e2e-key.pem"))
    ca.cert_pem.write_to_path(str(finagle / "cacert.pem"))
    return ws


def check(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def is_refused(key: tuple[str, str]) -> bool:
    """Refused by ``turnout check``: not provided at all, or its first-party plugin is not
    installed here."""
    return key in NOT_PROVIDED or (
        key in FIRST_PARTY_KINDS and not installed(FIRST_PARTY_KINDS[key])
    )


def reason(key: tuple[str, str]) -> str:
    return NOT_PROVIDED.get(key) or f"pip install {FIRST_PARTY_KINDS[key]}"


@pytest.mark.parametrize("example", EXAMPLES)
def test_check_refuses_only_the_interfaces_turnout_does_not_provide(example, tmp_path):
    config = yaml.safe_load((NAMERD / example).read_text())
    missing = {
        i["kind"] for i in config["interfaces"] if is_refused(("namerd interface", i["kind"]))
    }
    result = check(NAMERD / example, workspace(tmp_path))
    output = result.stdout + result.stderr
    store = config["storage"]["kind"]
    pending = {store} if is_refused(("dtab store", store)) else set()
    if not missing and not pending:
        assert result.returncode == 0, output
        assert f"{example}: OK (namerd: storage {config['storage']['kind']}" in result.stdout
        assert "not implemented" not in output.lower() and "ignored" not in output.lower()
        return
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and errors, output
    refused = set()
    for line in errors:
        if "unknown dtab store kind '" in line:
            kind = line.split("unknown dtab store kind '")[1].split("'")[0]
            assert kind in pending and reason(("dtab store", kind)) in line, line
            refused.add(kind)
            continue
        assert "unknown namerd interface kind '" in line, line  # nothing else is refused
        kind = line.split("unknown namerd interface kind '")[1].split("'")[0]
        assert reason(("namerd interface", kind)) in line, line  # with the reason
        refused.add(kind)
    assert refused == missing | pending


def test_minimal_namerd_and_linkerds_namerd_http_linker(
    tmp_path, namerd_process, turnout_process, recording_backend
):
    """namerd from ``minimal.yaml`` (free ports), a linker from Linkerd's ``namerd-http.yaml``
    pointed at it; a dtab created and changed through /api/1 routes real requests."""
    api, admin = free_port(), free_port()
    config: dict[str, Any] = yaml.safe_load((NAMERD / "minimal.yaml").read_text())
    config["interfaces"][0]["port"] = api
    config["admin"] = {"port": admin}
    namerd = namerd_process(yaml.safe_dump(config), admin, api)

    linker: dict[str, Any] = yaml.safe_load((LINKERD / "namerd-http.yaml").read_text())
    router = linker["routers"][0]
    assert router["interpreter"]["dst"] == "/$/inet/localhost/4180"
    router["interpreter"]["dst"] = f"/$/inet/127.0.0.1/{api}"
    router["servers"] = [{"port": free_port(), "ip": "127.0.0.1"}]
    linker["admin"] = {"port": free_port()}
    proxy = turnout_process(yaml.safe_dump(linker))

    one, two = recording_backend(name="one"), recording_backend(name="two")
    created = namerd.request(
        "POST",
        "/api/1/dtabs/default",
        f"/svc => /$/inet/127.0.0.1/{one.port};".encode(),
        {"Content-Type": "application/dtab"},
    )
    assert created.status == 204, (created.status, created.text)

    def answer() -> str:
        r = http_request(proxy.port, headers={"Host": "web"}, timeout=10)
        return r.text if r.status == 200 else f"{r.status}"

    assert wait_until(lambda: answer().startswith("one"), timeout=15), answer()
    version = namerd.request("GET", "/api/1/dtabs/default").header("etag")
    changed = namerd.put("default", f"/svc => /$/inet/127.0.0.1/{two.port};", if_match=version)
    assert changed.status == 204, (changed.status, changed.text)
    assert wait_until(lambda: answer().startswith("two"), timeout=15), answer()
    stale = namerd.put("default", f"/svc => /$/inet/127.0.0.1/{one.port};", if_match=version)
    assert stale.status == 412
    assert answer().startswith("two")
    assert json.loads(namerd.request("GET", "/api/1/dtabs").body) == ["default"]

    # the linker's /delegator.json (its dashboard's delegator) asks namerd: the stored dtab,
    # then the dtab of the request
    admin_port = int(proxy.admin_url.rsplit(":", 1)[1])

    def delegator(dtab: str) -> Any:
        query = urllib.parse.urlencode({"namespace": "http", "path": "/svc/web", "dtab": dtab})
        return http_request(
            admin_port, headers={"Host": "admin"}, target=f"/delegator.json?{query}", timeout=15
        )

    r = delegator("")
    assert r.status == 200, (r.status, r.text)
    tree = json.loads(r.text)
    assert tree["path"] == "/svc/web" and f"/$/inet/127.0.0.1/{two.port}" in r.text, tree
    r = delegator(f"/svc/web => /$/inet/127.0.0.1/{one.port}")
    assert r.status == 200 and f"/$/inet/127.0.0.1/{one.port}" in r.text, (r.status, r.text)
    namerd.stop()
    r = delegator("")
    assert r.status == 502 and "Delegation failed" in r.text, (r.status, r.text)
