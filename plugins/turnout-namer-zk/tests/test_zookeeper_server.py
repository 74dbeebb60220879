"""The test ZooKeeper itself (``turnout_namer_zk.testing``): ready when it serves, killed by
PID, restarted with its data and sessions, four-letter words, forced session expiry."""

from __future__ import annotations

import os
import threading

import pytest
from kazoo.client import KazooClient, KazooState
from turnout.testing import wait_until
from turnout_namer_zk.testing import ZooKeeperServer, expire_session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill_restart_and_cleanup(tmp_path):
    server = ZooKeeperServer(workdir=tmp_path / "zk")
    client = KazooClient(hosts=server.hosts, timeout=10)
    try:
        server.start()
        assert server.ready() and server.command("ruok") == "imok"
        assert server.mntr()["zk_server_state"] == "standalone"
        assert "clientPortAddress=127.0.0.1" in server.config_path.read_text()
        client.start(timeout=20)
        client.create("/kept", b"data")
        client.create("/mine", b"", ephemeral=True)
        session = client.client_id
        pid, port = server.pid, server.port
        assert pid is not None and alive(pid)

        server.kill()
        assert not alive(pid) and server.pid is None and not server.ready()
        server.restart()
        assert server.port == port and server.pid != pid and server.starts == 2
        assert wait_until(lambda: client.connected, timeout=20)
        assert client.client_id == session  # the session survived the outage
        assert client.get("/kept")[0] == b"data"
        assert client.exists("/mine") is not None  # and so did its ephemeral node

        states: list[str] = []
        lost = threading.Event()

        def listener(state: str) -> None:
            states.append(state)
            if state == KazooState.LOST:
                lost.set()

        client.add_listener(listener)
        expire_session(server.hosts, client.client_id)
        assert lost.wait(10), states
        assert wait_until(lambda: client.connected, timeout=20)
        assert client.client_id[0] != session[0]  # a new session...
        assert client.exists("/mine") is None  # ...and the old one's ephemerals are gone
    finally:
        client.stop()
        client.close()
        pid = server.pid
        server.cleanup()
    assert pid is None or not alive(pid)
