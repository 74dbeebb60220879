"""High availability of namerd on ZooKeeper, with real processes only: a three-server
ZooKeeper ensemble on 127.0.0.1, two ``turnout namerd`` processes sharing it through the
``io.l5d.zk`` store, and linkers (``turnout run``) binding through ``io.l5d.namerd.http``.

- a dtab PUT through namerd 1 changes the routing of requests through the linker attached to
  namerd 2 (the delay is printed; the issue wants "within 1 second");
- a PUT with a stale version (``If-Match``) gets 412 and changes nothing;
- a ZooKeeper server stopped changes nothing for clients: requests keep succeeding and a new
  PUT works;
- namerd 1 stopped: its linker keeps routing with the last good tree, and a linker whose
  ``dst`` names both namerds (an ``io.l5d.fs`` file listing them) keeps getting updates
  through namerd 2.

Every process is stopped by PID at teardown (ZooKeeper by the ``zookeeper_ensemble``
fixture, linkers by ``turnout_process``, namerds here).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.testing import DiscoDir, NamerdProcess, free_port, http_request, wait_until
from turnout_namer_zk.testing import ZooKeeperEnsemble, ZooKeeperServer

ZkServers = ZooKeeperEnsemble | ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

TO_A = "/svc/web => /#/io.l5d.fs/a"
TO_B = "/svc/web => /#/io.l5d.fs/b"


class Namerd(NamerdProcess):
    """The testing kit's namerd process: ready when its API answers (its store reached)."""

    def __init__(self, config: str, workdir: Path, admin_port: int, api_port: int) -> None:
        super().__init__(config, workdir, [api_port, admin_port])
        self.admin_port, self.api_port = admin_port, api_port

    def ready(self) -> bool:
        try:
            return self.request("GET", "/api/1/dtabs").status == 200
        except OSError:
            return False

    def request(self, method: str, target: str, body: bytes | None = None, **headers: str) -> Any:
        all_headers = {"Host": f"127.0.0.1:{self.api_port}", **headers}
        return http_request(self.api_port, method, target, all_headers, body, timeout=10)

    def put(self, dtab: str, if_match: str | None = None) -> Any:
        headers = {"Content-Type": "application/dtab"}
        if if_match is not None:
            headers["If-Match"] = if_match
        return self.request("PUT", "/api/1/dtabs/default", dtab.encode(), **headers)

    def etag(self) -> str:
        r = self.request("GET", "/api/1/dtabs/default", Accept="application/dtab")
        assert r.status == 200, (r.status, r.text)
        etag = r.header("ETag")
        assert etag is not None, r.headers
        return etag


@pytest.fixture
def namerd_factory(tmp_path: Path) -> Iterator[Callable[[ZkServers, DiscoDir], Namerd]]:
    """``namerd_factory(zk, disco)``: a started namerd storing dtabs in ``zk`` (an ensemble
    or one server) and binding with io.l5d.fs on ``disco``; killed by PID at teardown."""
    started: list[Namerd] = []

    def factory(zk: ZkServers, disco: DiscoDir) -> Namerd:
        admin, api = free_port(), free_port()
        config = yaml.safe_dump(
            {
                "admin": {"port": admin},
                "storage": {
                    "kind": "io.l5d.zk",
                    "zkAddrs": zk.zk_addrs(),
                    "pathPrefix": "/namerd/dtabs",
                    "sessionTimeoutMs": 10000,
                },
                "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco.root), "pollIntervalMs": 50}],
                "interfaces": [{"kind": "io.l5d.httpController", "port": api}],
            }
        )
        namerd = Namerd(config, tmp_path / f"namerd-{len(started) + 1}", admin, api)
        started.append(namerd)
        return namerd.start()

    yield factory
    for namerd in started:
        namerd.kill()
        print(f"--- namerd log ({namerd.workdir}) ---\n{namerd.log()[-4000:]}")


def linker_yaml(dst: str, disco: DiscoDir) -> str:
    return yaml.safe_dump(
        {
            "admin": {"port": free_port()},
            # the linker's own namers bind dst when it is not /$/inet
            "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco.root), "pollIntervalMs": 50}],
            "routers": [
                {
                    "protocol": "http",
                    "interpreter": {
                        "kind": "io.l5d.namerd.http",
                        "experimental": True,
                        "dst": dst,
                        "namespace": "default",
                        "retry": {"baseSeconds": 1, "maxSeconds": 1},
                    },
                    "servers": [{"port": free_port()}],
                }
            ],
        }
    )


def served_by(proxy: Any) -> str:
    """Which backend answered a request through ``proxy`` ("a", "b"), or the status."""
    try:
        r = http_request(proxy.port, "GET", "/", {"Host": "web"}, timeout=15)
    except OSError as e:
        return f"error {e}"
    return r.text.split(" ")[0] if r.status == 200 else f"status {r.status}"


def inet(namerd: Namerd) -> str:
    return f"/$/inet/127.0.0.1/{namerd.api_port}"


def setup(
    zookeeper_ensemble: ZooKeeperEnsemble,
    namerd_factory: Callable[[ZkServers, DiscoDir], Namerd],
    turnout_process: Any,
    recording_backend: Any,
    disco_dir: DiscoDir,
) -> tuple[Namerd, Namerd, Any, Any]:
    """Backends a and b, two namerds on the ensemble with ``default`` routing to a, and one
    linker per namerd, both already routing to a."""
    disco_dir.write("a", recording_backend(name="a"))
    disco_dir.write("b", recording_backend(name="b"))
    n1 = namerd_factory(zookeeper_ensemble, disco_dir)
    n2 = namerd_factory(zookeeper_ensemble, disco_dir)
    r = n1.request(
        "POST", "/api/1/dtabs/default", TO_A.encode(), **{"Content-Type": "application/dtab"}
    )
    assert r.status == 204, (r.status, r.text)
    assert base64.b64decode(n2.etag()) == b"\x00\x00\x00\x00"  # Linkerd's zk version form
    l1 = turnout_process(linker_yaml(inet(n1), disco_dir))
    l2 = turnout_process(linker_yaml(inet(n2), disco_dir))
    for proxy in (l1, l2):
        assert wait_until(lambda p=proxy: served_by(p) == "a", timeout=30), proxy.log()
    return n1, n2, l1, l2


def test_a_put_through_one_namerd_reroutes_the_other_and_a_zk_server_can_stop(
    zookeeper_ensemble: ZooKeeperEnsemble,
    namerd_factory: Callable[[ZkServers, DiscoDir], Namerd],
    turnout_process: Any,
    recording_backend: Any,
    disco_dir: DiscoDir,
) -> None:
    n1, n2, l1, l2 = setup(
        zookeeper_ensemble, namerd_factory, turnout_process, recording_backend, disco_dir
    )

    # a PUT through namerd 1 (with the version namerd 2 shows) reroutes linker 2's requests
    etag = n2.etag()
    start = time.monotonic()
    r = n1.put(TO_B, if_match=etag)
    assert r.status == 204, (r.status, r.text)
    assert wait_until(lambda: served_by(l2) == "b", timeout=30, interval=0.01), l2.log()
    delay = time.monotonic() - start
    print(f"PUT through namerd 1 -> linker 2 routes to b: {delay:.3f}s")
    assert delay < 5.0, f"the change took {delay:.3f}s to reach the other namerd's linker"
    assert wait_until(lambda: served_by(l1) == "b", timeout=30), l1.log()

    # a PUT with the stale version: 412 through either namerd, and nothing changes
    assert n2.put(TO_A, if_match=etag).status == 412
    assert n1.put(TO_A, if_match=etag).status == 412
    dtab = n2.request("GET", "/api/1/dtabs/default", Accept="application/dtab").text
    assert dtab.strip().endswith("/#/io.l5d.fs/b"), dtab
    time.sleep(1.0)  # a change, had there been one, would have reached the linkers by now
    assert {served_by(p) for p in (l1, l2) for _ in range(3)} == {"b"}

    # one ZooKeeper server stops (the leader: the ensemble elects another one)
    leader = zookeeper_ensemble.leader()
    assert leader is not None, zookeeper_ensemble.logs()
    leader.kill()
    results = []
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # requests keep succeeding, with the same routing
        results += [served_by(l1), served_by(l2)]
        time.sleep(0.02)
    assert set(results) == {"b"}, results
    print(f"{len(results)} requests during the ZooKeeper leader's loss, all answered by b")

    # a new PUT still works (retried while a namerd's ZooKeeper client fails over; counted)
    attempts: list[int] = []

    def put_works() -> bool:
        status = n2.put(TO_A).status
        attempts.append(status)
        return bool(status == 204)

    assert wait_until(put_works, timeout=30, interval=0.5), attempts
    print(f"PUT after the ZooKeeper server stopped: statuses {attempts}")
    for proxy in (l1, l2):
        assert wait_until(lambda p=proxy: served_by(p) == "a", timeout=30), proxy.log()


def test_namerd_stops_its_linker_keeps_the_last_tree_and_a_two_namerd_dst_fails_over(
    zookeeper_ensemble: ZooKeeperEnsemble,
    namerd_factory: Callable[[ZkServers, DiscoDir], Namerd],
    turnout_process: Any,
    recording_backend: Any,
    disco_dir: DiscoDir,
) -> None:
    n1, n2, l1, l2 = setup(
        zookeeper_ensemble, namerd_factory, turnout_process, recording_backend, disco_dir
    )
    # a linker whose dst names both namerds: an io.l5d.fs file of the linker's own namer,
    # bound again at each (re)connection. It first lists namerd 1 only, so that the linker's
    # watches are on namerd 1 (the one that will stop), then both.
    disco_dir.write("namerds", ("127.0.0.1", n1.api_port))
    both = turnout_process(linker_yaml("/#/io.l5d.fs/namerds", disco_dir))
    assert wait_until(lambda: served_by(both) == "a", timeout=30), both.log()
    disco_dir.write("namerds", ("127.0.0.1", n1.api_port), ("127.0.0.1", n2.api_port))

    n1.stop()
    assert n1.proc is not None and n1.proc.poll() is not None
    # linker 1 loses its namerd and keeps routing with the last good tree
    assert wait_until(lambda: "namerd watch" in l1.log(), timeout=30), l1.log()
    assert {served_by(l1) for _ in range(5)} == {"a"}
    assert wait_until(lambda: "namerd watch" in both.log(), timeout=30), both.log()

    # changes keep flowing through namerd 2: to its own linker and to the two-namerd linker
    assert n2.put(TO_B).status == 204
    assert wait_until(lambda: served_by(l2) == "b", timeout=30), l2.log()
    start = time.monotonic()
    assert wait_until(lambda: served_by(both) == "b", timeout=45), both.log()
    print(f"the two-namerd linker followed namerd 2 after {time.monotonic() - start:.1f}s")
    # linker 1 still has the last tree namerd 1 gave it
    assert {served_by(l1) for _ in range(5)} == {"a"}


def test_zookeeper_unreachable_namerd_answers_errors_and_keeps_serving(
    zookeeper: ZooKeeperServer,
    namerd_factory: Callable[[ZkServers, DiscoDir], Namerd],
    turnout_process: Any,
    recording_backend: Any,
    disco_dir: DiscoDir,
) -> None:
    """ZooKeeper (a single server here) stops: dtab requests to namerd fail with a server
    error instead of hanging, the linker keeps routing with the dtab namerd saw last, and
    once ZooKeeper is back a PUT works and reaches the linker."""
    disco_dir.write("a", recording_backend(name="a"))
    disco_dir.write("b", recording_backend(name="b"))
    namerd = namerd_factory(zookeeper, disco_dir)
    assert namerd.put(TO_A).status == 204
    linker = turnout_process(linker_yaml(inet(namerd), disco_dir))
    assert wait_until(lambda: served_by(linker) == "a", timeout=30), linker.log()

    zookeeper.kill()
    start = time.monotonic()
    statuses = {
        namerd.request("GET", "/api/1/dtabs/default").status,
        namerd.request("GET", "/api/1/dtabs").status,
        namerd.put(TO_B).status,
    }
    took = time.monotonic() - start
    print(f"namerd's answers while ZooKeeper is down: {sorted(statuses)} in {took:.1f}s")
    assert statuses == {503}, statuses
    assert {served_by(linker) for _ in range(5)} == {"a"}  # the last good dtab

    zookeeper.restart()
    assert wait_until(lambda: namerd.put(TO_B).status == 204, timeout=30, interval=0.5)
    assert wait_until(lambda: served_by(linker) == "b", timeout=30), linker.log()
