"""Linkerd's ``linkerd/examples/marathon-leader.yaml``: the Marathon leader is found in
ZooKeeper through ``/$/io.buoyant.namer.zk.leader``. ``turnout check`` accepts it unchanged
(no "not implemented", nothing ignored); a copy on free ports, pointed at a real ZooKeeper in
which two Marathon API doubles run for leader, routes real requests to the tasks the current
leader lists, and follows a new leader."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from turnout.testing import free_port, http_request, wait_until

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "linkerd" / "marathon-leader.yaml"

#: linkerd/examples/marathon-leader.yaml (github.com/linkerd/linkerd)
LINKERD_TEXT = """\
namers:
- kind:         io.l5d.marathon
  prefix:       /io.l5d.marathon
  dst:          /$/io.buoyant.namer.zk.leader/localhost:2181/marathon/leader
  uriPrefix:    /marathon
  ttlMs:        300
routers:
- protocol: http
  identifier:
    kind: io.l5d.methodAndHost
    httpUriInDst: true
  dtab: |
    /marathonId => /#/io.l5d.marathon;
    /host       => /$/io.buoyant.http.domainToPathPfx/marathonId;
    /svc/1.1/* => /host;
  servers:
  - port: 4140
    ip: 0.0.0.0
"""

PLUGINS = {"TURNOUT_PLUGINS": "turnout-protocol-http,turnout-namer-marathon,turnout-namer-zk"}
GROUP = "/marathon/leader"


def turnout_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
        env=None,
    )


def test_turnout_check_accepts_linkerds_example(tmp_path):
    path = tmp_path / "marathon-leader.yaml"
    path.write_text(LINKERD_TEXT)
    result = turnout_check(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "marathon-leader.yaml: OK" in result.stdout, output
    assert "not implemented" not in output.lower() and "ignored" not in output.lower(), output


def test_the_checkouts_copy_is_linkerds():
    if not EXAMPLE.exists():
        pytest.skip("no examples/linkerd/marathon-leader.yaml in this checkout")
    body = [line for line in EXAMPLE.read_text().splitlines() if line and line[0] != "#"]
    linkerd = [line for line in LINKERD_TEXT.splitlines() if line]
    strip = [line for line in body if not line.lstrip().startswith("#")]
    assert strip == linkerd


def candidate(client, double) -> str:
    """Marathon running for leader (Twitter-commons ``CandidateImpl``): an
    EPHEMERAL_SEQUENTIAL ``member_<seq>`` under the group, holding ``host:port``."""
    client.ensure_path(GROUP)
    path: str = client.create(
        f"{GROUP}/member_", f"{double.host}:{double.port}".encode(), ephemeral=True, sequence=True
    )
    return path


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_linkerds_example_routes_through_the_marathon_leader(
    zookeeper, kazoo_factory, marathon_double, recording_backend, turnout_process
):
    a, b = recording_backend(name="a"), recording_backend(name="b")
    one = marathon_double(uri_prefix="/marathon")
    two = marathon_double(uri_prefix="/marathon")
    for double, backend in ((one, a), (two, b)):
        double.add_app("/web")
        double.set_tasks("/web", [("127.0.0.1", backend.port)])
    client = kazoo_factory(zookeeper)
    leader = candidate(client, one)
    candidate(client, two)

    router_port = free_port()
    text = LINKERD_TEXT.replace("0.0.0.0", "127.0.0.1")
    text = text.replace("localhost:2181", f"127.0.0.1:{zookeeper.port}")
    text = re.sub(r"port: 4140\b", f"port: {router_port}", text)
    text += f"admin:\n  port: {free_port()}\n  ip: 127.0.0.1\n"
    proxy = turnout_process(text, env=PLUGINS)

    def served_by() -> str:
        r = http_request(router_port, "GET", "/hello", headers={"Host": "web"}, timeout=10)
        return r.text.split(" ", 1)[0] if r.status == 200 else f"{r.status} {r.text}"

    assert wait_until(lambda: served_by() == "a", timeout=30)
    assert a.requests[-1].target == "/hello" and a.requests[-1].header("host") == "web"
    assert one.count("/v2/apps") >= 1 and two.count("/v2/apps") == 0

    # Marathon's leader changes: the namer asks the new leader, whose task is b
    client.delete(leader)
    assert wait_until(lambda: served_by() == "b", timeout=30)
    assert two.count("/v2/apps") >= 1
    with urllib.request.urlopen(f"{proxy.admin_url}/namer_state/io.l5d.marathon.json") as r:
        dst = json.load(r)["marathon"]["dst"]
    assert dst["dst"] == f"/$/io.buoyant.namer.zk.leader/127.0.0.1:{zookeeper.port}{GROUP}"
    assert dst["current"] == f"127.0.0.1:{two.port}" and dst["error"] is None

    # a clean stop closes the global namer's ZooKeeper session (turnout_shutdown)
    assert proxy.stop() == 0
    log = proxy.log()
    assert "Traceback" not in log, log
    assert "Zookeeper session closed" in log, log  # kazoo's line: the session ended cleanly
