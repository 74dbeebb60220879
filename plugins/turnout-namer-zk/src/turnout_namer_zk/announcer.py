"""The ``io.l5d.serversets`` announcer: a router's server as a Twitter ServerSet member.

Like Linkerd's (Finagle's ``ZkAnnouncer`` with shard ``0``), each announcement is an
EPHEMERAL_SEQUENTIAL znode ``<pathPrefix><name>/member_<seq>`` holding ServerSet JSON::

    {"serviceEndpoint": {"host": "10.0.0.5", "port": 4140}, "additionalEndpoints": {},
     "status": "ALIVE", "shard": 0}

which the ``io.l5d.serversets`` namer (this plugin's, Linkerd's, Finagle's) reads. The znode
lives as long as the announcer's ZooKeeper session: when ZooKeeper expires that session (a
partition longer than the session timeout, or turnout killed), the member disappears, and the
announcer creates it again in its next session. Withdrawing deletes it at once.

kazoo runs in its own threads; :class:`~turnout_namer_zk.zk.ZkConnection` brings its results
and connection states onto the event loop, as for the namers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from kazoo.exceptions import NoNodeError
from turnout.api import Announcement, Announcer, Path

from .zk import NotConnected, ZkConnection

log = logging.getLogger("turnout.announcer.zk")

#: longest pause between two failed attempts to create the member (seconds)
RETRY_MAX_DELAY = 2.0


def serverset_member(host: str, port: int) -> bytes:
    """The ServerSet JSON of one member (Finagle's ``ServerSetImpl`` with shard 0)."""
    doc = {
        "serviceEndpoint": {"host": host, "port": port},
        "additionalEndpoints": {},
        "status": "ALIVE",
        "shard": 0,
    }
    return json.dumps(doc).encode()


class ServersetsAnnouncer(Announcer):
    """One ZooKeeper session shared by the router's announcements."""

    scheme = "zk-serversets"

    def __init__(self, hosts: str, path_prefix: Path, *, session_timeout: float = 10.0) -> None:
        self.conn = ZkConnection(hosts, session_timeout=session_timeout)
        self.path_prefix = path_prefix
        self.members: list[ZkMember] = []

    async def announce(self, host: str, port: int, name: Path) -> ZkMember:
        znode = (self.path_prefix + name).show
        member = ZkMember(self, znode, serverset_member(host, port))
        self.members.append(member)
        member.start()
        return member

    async def close(self) -> None:
        for member in list(self.members):
            await member.withdraw()
        await self.conn.close()


class ZkMember(Announcement):
    """One announced member: created in each new session until withdrawn."""

    def __init__(self, announcer: ServersetsAnnouncer, znode: str, data: bytes) -> None:
        self.announcer = announcer
        self.conn = announcer.conn
        self.znode = znode
        self.data = data
        #: the member's znode and the session that owns it (None until created)
        self.path: str | None = None
        self.session_id: int | None = None
        #: how many times the member was created (more than once after expired sessions)
        self.registrations = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._withdrawn = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                epoch = await self.conn.wait_connected(timeout=60)
            except NotConnected as e:
                self.last_error = str(e)
                continue
            if self.path is None or epoch.session_id != self.session_id:
                client = self.conn.client
                assert client is not None
                try:
                    path = await self.conn.submit(
                        client.create_async,
                        f"{self.znode}/member_",
                        self.data,
                        None,
                        True,
                        True,
                        True,
                    )
                except Exception as e:
                    self.last_error = f"{type(e).__name__}: {e}"
                    log.warning(
                        "announcing at %s failed: %s; retrying", self.znode, self.last_error
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_DELAY)
                    continue
                delay = 0.1
                self.path, self.session_id = path, epoch.session_id
                self.registrations += 1
                self.last_error = None
                log.info(
                    "announced %s in ZooKeeper %s (session 0x%x)",
                    path,
                    self.conn.hosts,
                    epoch.session_id or 0,
                )
            ended = asyncio.Event()
            epoch.on_end.add(ended.set)
            try:
                if epoch.alive:
                    await ended.wait()
            finally:
                epoch.on_end.discard(ended.set)

    async def withdraw(self) -> None:
        if self._withdrawn:
            return
        self._withdrawn = True
        with contextlib.suppress(ValueError):
            self.announcer.members.remove(self)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        path, self.path = self.path, None
        client = self.conn.client
        if path is None or client is None or not self.conn.connected:
            return  # never created, or the session (and with it the member) ends at close()
        try:
            async with asyncio.timeout(3):
                await self.conn.submit(client.delete_async, path)
            log.info("withdrew %s from ZooKeeper %s", path, self.conn.hosts)
        except NoNodeError:
            pass
        except Exception as e:  # the member goes with the session when the announcer closes
            log.warning("deleting %s failed: %s: %s", path, type(e).__name__, e)

    def state(self) -> dict[str, Any]:
        return {
            "znode": self.znode,
            "member": self.path,
            "sessionId": None if self.session_id is None else f"0x{self.session_id:x}",
            "registrations": self.registrations,
            "lastError": self.last_error,
        }
