"""End to end, real processes only: a real etcd, two ``turnout namerd`` processes sharing it
through the ``io.l5d.etcd`` store, and a linker binding through ``io.l5d.namerd.http`` on one
of them. A dtab PUT through the other namerd changes where the linker's requests go; a PUT
with a stale version gets 412 and changes nothing; with etcd stopped the API answers 503 and
the linker keeps routing; with etcd back, writes flow again and nothing was lost. Also over
TLS with a client certificate (etcd's ``--client-cert-auth``)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from turnout.testing import DiscoDir, die_with_parent, free_port, http_request, wait_until
from turnout_namerd_etcd.testing import EtcdServer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


class Namerd:
    """``python -m turnout namerd <config>``, ready when its HTTP API answers."""

    def __init__(self, workdir: Path, storage: dict[str, Any], disco: DiscoDir) -> None:
        workdir.mkdir(parents=True)
        self.workdir, self.api = workdir, free_port()
        config = {
            "admin": {"port": free_port()},
            "storage": storage,
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco.root), "pollIntervalMs": 50}],
            "interfaces": [{"kind": "io.l5d.httpController", "port": self.api}],
        }
        (workdir / "namerd.yaml").write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
        with open(workdir / "namerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "turnout", "namerd", str(workdir / "namerd.yaml")],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        if not wait_until(lambda: self.answers() or self.proc.poll() is not None, timeout=60):
            raise RuntimeError(f"namerd did not start:\n{self.log()}")
        assert self.proc.poll() is None, self.log()

    def answers(self) -> bool:
        try:
            self.request("GET", "/api/1/dtabs")
        except OSError:
            return False
        return True

    def request(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, str, dict[str, str]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api}{path}", data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def put(self, dtab: str, if_match: str | None = None) -> int:
        headers = {"Content-Type": "application/dtab"}
        if if_match is not None:
            headers["If-Match"] = if_match
        status, _, _ = self.request("PUT", "/api/1/dtabs/default", dtab.encode(), **headers)
        return status

    def log(self) -> str:
        return (self.workdir / "namerd.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def namerds() -> Iterator[list[Namerd]]:
    started: list[Namerd] = []
    yield started
    for namerd in started:
        namerd.stop()


def linker_yaml(namerd: Namerd) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            "routers": [
                {
                    "protocol": "http",
                    "interpreter": {
                        "kind": "io.l5d.namerd.http",
                        "experimental": True,
                        "dst": f"/$/inet/127.0.0.1/{namerd.api}",
                        "namespace": "default",
                        "retry": {"baseSeconds": 1, "maxSeconds": 2},
                    },
                    "servers": [{"port": free_port()}],
                }
            ],
        }
    )


def served_by(proxy: Any) -> str:
    r = http_request(proxy.port, "GET", "/", {"Host": "web"}, timeout=15)
    return r.text.split(" ")[0] if r.status == 200 else f"status {r.status}"


def test_two_namerds_on_etcd_drive_a_linker_and_survive_an_etcd_outage(
    etcd: EtcdServer,
    namerds: list[Namerd],
    turnout_process: Any,
    recording_backend: Any,
    disco_dir: DiscoDir,
    tmp_path: Path,
) -> None:
    a, b = recording_backend(name="a"), recording_backend(name="b")
    disco_dir.write("a", a)
    disco_dir.write("b", b)
    storage = {"kind": "io.l5d.etcd", "host": "127.0.0.1", "port": etcd.client_port}
    one = Namerd(
        tmp_path / "namerd-1", {**storage, "backoff": {"kind": "constant", "ms": 200}}, disco_dir
    )
    namerds.append(one)
    two = Namerd(
        tmp_path / "namerd-2", {**storage, "backoff": {"kind": "constant", "ms": 200}}, disco_dir
    )
    namerds.append(two)

    status, _, _ = two.request(
        "POST",
        "/api/1/dtabs/default",
        b"/svc/web => /#/io.l5d.fs/a",
        **{"Content-Type": "application/dtab"},
    )
    assert status == 204
    proxy = turnout_process(linker_yaml(one))  # attached to namerd 1
    assert wait_until(lambda: served_by(proxy) == "a", timeout=30), proxy.log()

    # a PUT through namerd 2 reaches the linker on namerd 1 (through etcd's watch)
    _, _, headers = two.request("GET", "/api/1/dtabs/default")
    version = headers["ETag"]
    assert two.put("/svc/web => /#/io.l5d.fs/b", if_match=version) == 204
    assert wait_until(lambda: served_by(proxy) == "b", timeout=30), proxy.log()
    # the stale version is refused and changes nothing
    assert one.put("/svc/web => /#/io.l5d.fs/a", if_match=version) == 412
    assert {served_by(proxy) for _ in range(3)} == {"b"}

    # etcd stops: the API answers 503 with the reason, the linker keeps routing
    etcd.stop()
    status, text, _ = one.request("GET", "/api/1/dtabs/default")
    assert status == 503 and "etcd" in text, (status, text)
    assert one.put("/svc/web => /#/io.l5d.fs/a") == 503
    assert {served_by(proxy) for _ in range(3)} == {"b"}

    # etcd is back on the same data: nothing lost, and changes flow again
    etcd.start()
    status, text, _ = two.request("GET", "/api/1/dtabs/default")
    assert status == 200 and "io.l5d.fs/b" in text, (status, text)
    assert wait_until(lambda: two.put("/svc/web => /#/io.l5d.fs/a") == 204, timeout=30)
    assert wait_until(lambda: served_by(proxy) == "a", timeout=60), (proxy.log(), one.log())


def test_tls_with_a_client_certificate(
    tmp_path: Path, namerds: list[Namerd], disco_dir: DiscoDir
) -> None:
    """etcd serving HTTPS and requiring client certificates: namerd with the right
    ``tls.clientAuth`` stores dtabs; without a client certificate every call fails (503)."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "etcd.test")
    client = ca.issue_cert("namerd")
    paths = {name: str(tmp_path / f"{name}.pem") for name in ("ca", "cert", "key", "ccert", "ckey")}
    ca.cert_pem.write_to_path(paths["ca"])
    server.cert_chain_pems[0].write_to_path(paths["cert"])
    server.private_key_pem.write_to_path(paths["key"])
    client.cert_chain_pems[0].write_to_path(paths["ccert"])
    client.private_key_pem.write_to_path(paths["ckey"])
    etcd = EtcdServer(tmp_path / "etcd", tls=(paths["cert"], paths["key"], paths["ca"])).start()
    try:
        tls = {"commonName": "etcd.test", "trustCertsBundle": paths["ca"]}
        storage = {"kind": "io.l5d.etcd", "host": "127.0.0.1", "port": etcd.client_port}
        good = Namerd(
            tmp_path / "good",
            {
                **storage,
                "tls": {
                    **tls,
                    "clientAuth": {"certPath": paths["ccert"], "keyPath": paths["ckey"]},
                },
            },
            disco_dir,
        )
        namerds.append(good)
        assert good.put("/svc => /#/io.l5d.fs") == 204
        status, text, _ = good.request("GET", "/api/1/dtabs/default")
        assert status == 200 and "/svc" in text, (status, text)
        bad = Namerd(tmp_path / "bad", {**storage, "tls": tls}, disco_dir)
        namerds.append(bad)
        status, text, _ = bad.request("GET", "/api/1/dtabs/default")
        assert status == 503, (status, text)
    finally:
        etcd.stop()
