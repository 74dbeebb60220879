"""pytest fixtures for tests against a real ZooKeeper, shared by this plugin's tests and by
plugins built on it (``turnout-namer-curator``): in a ``conftest.py``,
``from turnout_namer_zk.fixtures import *``.

- ``shared_zookeeper``: one started :class:`~turnout_namer_zk.testing.ZooKeeperServer` per
  test module (tests use distinct znode paths);
- ``zookeeper_factory(start=True)`` and ``zookeeper``: servers of one test only, for tests
  that kill or restart ZooKeeper;
- ``zookeeper_ensemble``: a started three-server ensemble of one test;
- ``kazoo_factory(server, timeout=10)``: started test-side kazoo clients (they own the
  ephemeral nodes the tests register), stopped at teardown.

Every server is killed by PID at teardown. Needs pytest (a test dependency, not a runtime one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

from .testing import ZooKeeperEnsemble, ZooKeeperServer

__all__ = [
    "kazoo_factory",
    "shared_zookeeper",
    "zookeeper",
    "zookeeper_ensemble",
    "zookeeper_factory",
]

ZkFactory = Callable[..., ZooKeeperServer]


@pytest.fixture(scope="module")
def shared_zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """One started ZooKeeper for a whole module (tests use distinct znode paths; tests that
    kill or restart ZooKeeper use ``zookeeper_factory`` instead)."""
    server = ZooKeeperServer(workdir=tmp_path_factory.mktemp("zookeeper"))
    try:
        yield server.start()
    finally:
        server.cleanup()
        print(f"--- ZooKeeper log ({server.dir}), last lines ---\n{server.log()[-3000:]}")


@pytest.fixture
def zookeeper_factory(tmp_path: Path) -> Iterator[ZkFactory]:
    """``zookeeper_factory(start=True)``: a :class:`ZooKeeperServer` of this test only, in
    its own directory under ``tmp_path``; killed (by PID) at teardown."""
    servers: list[ZooKeeperServer] = []

    def factory(*, start: bool = True) -> ZooKeeperServer:
        server = ZooKeeperServer(workdir=tmp_path / f"zookeeper-{len(servers)}")
        servers.append(server)
        return server.start() if start else server

    yield factory
    for server in servers:
        server.cleanup()


@pytest.fixture
def zookeeper(zookeeper_factory: ZkFactory) -> ZooKeeperServer:
    """A started ZooKeeper of this test only (``zookeeper_factory()``)."""
    return zookeeper_factory()


@pytest.fixture
def kazoo_factory() -> Iterator[Callable[..., KazooClient]]:
    """``kazoo_factory(server, timeout=10)``: a started test-side kazoo client (it owns the
    ephemeral members the tests register); stopped at teardown."""
    clients: list[KazooClient] = []

    def factory(server: ZooKeeperServer, *, timeout: float = 10.0) -> KazooClient:
        client = KazooClient(
            hosts=server.hosts,
            timeout=timeout,
            # reconnect quickly after ZooKeeper restarts (kazoo's default waits up to an hour)
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0),
        )
        clients.append(client)
        client.start(timeout=20)
        return client

    yield factory
    for client in clients:
        client.stop()
        client.close()


@pytest.fixture
def zookeeper_ensemble(tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    """A started three-server :class:`~turnout_namer_zk.testing.ZooKeeperEnsemble` of this
    test only; every member killed (by PID) at teardown."""
    ensemble = ZooKeeperEnsemble(3, workdir=tmp_path / "zk-ensemble")
    try:
        yield ensemble.start()
    finally:
        ensemble.cleanup()
