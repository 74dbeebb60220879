"""Every ``examples/*.yaml`` is valid (``turnout check``) and runs: turnout is started on it
(with its listening ports moved to free ones) and a request reaches a demo backend
(``examples/demo/backend.py``, on the ports the examples name when those are free).

A new example file without an entry in :data:`CASES` fails :func:`test_example_runs`.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.testing import (
    RawClient,
    build_request,
    die_with_parent,
    free_port,
    port_open,
    wait_port,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEMO = EXAMPLES / "demo"
#: the demo backends and the ports the examples (and examples/demo/disco) name
DEMO_BACKENDS = {"web-1": 8081, "web-2": 8082, "web-v2": 8083}

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@dataclass
class Case:
    """The request sent through an example and the demo backends that may answer it.

    ``target`` and header values may name a backend's port as ``{web-1}``.
    """

    backends: set[str]
    target: str = "/"
    headers: dict[str, str] = field(default_factory=lambda: {"Host": "web"})
    #: admin paths fetched after the request, each with a text its answer must contain
    admin: dict[str, str] = field(default_factory=dict)


WEB = {"web-1", "web-2"}
CASES: dict[str, Case] = {
    "canary.yaml": Case(WEB | {"web-v2"}),
    "demo.yaml": Case(WEB, admin={"/requests.json": "/svc/web", "/": "turnout"}),
    "fs.yaml": Case(WEB),
    "loadbalancer.yaml": Case(WEB),
    "proxy.yaml": Case(
        {"web-1"}, target="http://127.0.0.1:{web-1}/hello", headers={"Host": "127.0.0.1:{web-1}"}
    ),
    "retries.yaml": Case(WEB | {"web-v2"}, headers={"Host": "anything"}),
    "rewriting.yaml": Case(WEB, target="/web/api/users/1", headers={"Host": "anything"}),
    "service-options.yaml": Case({"web-v2"}, headers={"Host": "web-v2"}),
    "static_namer.yaml": Case({"web-1"}, headers={"Host": "anything"}),
    "telemetry.yaml": Case(
        WEB,
        admin={
            "/admin/metrics/prometheus": 'router="http"',
            "/requests.json": "/svc/web",
            "/admin/metrics.json": "telemetry/zipkin/",
        },
    ),
}


def example_names() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.yaml"))


def test_examples_exist():
    assert example_names(), f"no examples in {EXAMPLES}"


def test_no_case_for_a_missing_example():
    assert set(CASES) <= set(example_names()), "CASES names examples that do not exist"


@pytest.mark.parametrize("name", example_names())
def test_example_is_valid(name):
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(EXAMPLES / name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


@dataclass
class Demo:
    """The running demo backends: name -> port, and where their discovery files are."""

    ports: dict[str, int]
    disco: Path
    remapped: bool


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The three demo backends, on 8081-8083 when those are free, else on free ports (with
    a rewritten copy of examples/demo/disco)."""
    free = all(not port_open("127.0.0.1", p) for p in DEMO_BACKENDS.values())
    ports = dict(DEMO_BACKENDS) if free else {n: free_port() for n in DEMO_BACKENDS}
    disco = DEMO / "disco"
    if not free:
        disco = tmp_path_factory.mktemp("demo") / "disco"
        shutil.copytree(DEMO / "disco", disco)
        for path in disco.iterdir():
            path.write_text(remap(path.read_text(), ports))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, port in ports.items():
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(DEMO / "backend.py"), name, str(port)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )
            )
        for port in ports.values():
            wait_port("127.0.0.1", port, timeout=10)
        yield Demo(ports, disco, remapped=not free)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def remap(text: str, ports: dict[str, int]) -> str:
    """``text`` with the demo ports (8081...) replaced by ``ports``."""
    for name, port in DEMO_BACKENDS.items():
        text = text.replace(str(port), str(ports[name]))
    return text


def runnable_config(name: str, demo: Demo, workdir: Path) -> str:
    """The example's YAML with free server and admin ports (and remapped demo ports)."""
    text = (EXAMPLES / name).read_text()
    if demo.remapped:
        text = remap(text, demo.ports)
    config: dict[str, Any] = yaml.safe_load(text)
    config.setdefault("admin", {})["port"] = free_port()
    for router in config["routers"]:
        for server in router["servers"]:
            server["port"] = free_port()
    if demo.remapped:
        for namer in config.get("namers", []):
            if namer.get("kind") == "io.l5d.fs" and (ROOT / namer["rootDir"]) == DEMO / "disco":
                namer["rootDir"] = str(demo.disco)
        for router in config["routers"]:
            interpreter = router.get("interpreter") or {}
            if "dtabFile" in interpreter:
                copy = workdir / Path(interpreter["dtabFile"]).name
                copy.write_text(remap((ROOT / interpreter["dtabFile"]).read_text(), demo.ports))
                interpreter["dtabFile"] = str(copy)
    return yaml.safe_dump(config, sort_keys=False)


@pytest.mark.parametrize("name", example_names())
def test_example_runs(name, demo, turnout_process, tmp_path):
    case = CASES.get(name)
    if case is None:
        pytest.fail(f"examples/{name} has no test case: add one to CASES in {__file__}")
    proc = turnout_process(runnable_config(name, demo, tmp_path), cwd=ROOT)
    subst = {f"{{{n}}}": str(p) for n, p in demo.ports.items()}

    def fill(text: str) -> str:
        for key, value in subst.items():
            text = text.replace(key, value)
        return text

    headers = {k: fill(v) for k, v in case.headers.items()}
    with RawClient("127.0.0.1", proc.port) as c:
        c.send(build_request("GET", fill(case.target), headers, close=True))
        r = c.read_final()
    assert r.status == 200, (r, proc.log())
    answer = json.loads(r.body)
    assert answer["backend"] in case.backends
    assert answer["headers"].get("l5d-dst-service", "").startswith("/svc/")
    for path, expected in case.admin.items():
        status, body = http_get(proc.admin_port, path)
        assert status == 200 and expected in body, (path, status, body[:500])
    assert proc.stop() == 0


def http_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def test_demo_backend_ports_match_the_examples():
    """The demo's discovery files name the ports this test starts the backends on."""
    text = "".join(p.read_text() for p in (DEMO / "disco").iterdir())
    for port in DEMO_BACKENDS.values():
        assert f"127.0.0.1 {port}" in text
    assert os.path.exists(DEMO / "backend.py")
