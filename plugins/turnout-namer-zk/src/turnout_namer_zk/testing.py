"""Test helpers for the ZooKeeper namers, shipped with the plugin so that its users can test
their own configurations against a real ZooKeeper: ``from turnout_namer_zk.testing import
ZooKeeperServer, member_json, register``.

**A real ZooKeeper server**, standalone, on 127.0.0.1, in its own directory::

    with ZooKeeperServer() as zk:          # started and answering ``ruok`` with ``imok``
        zk.hosts                           # "127.0.0.1:<port>" for clients
        zk.kill()                          # SIGKILL by PID (its data directory stays)
        zk.restart()                       # same directory, same port: sessions survive
        zk.mntr()["zk_watch_count"]        # the server's own counters (``mntr``)

Debian's ``zookeeper`` package provides the jars (``./dev test`` installs it). The server runs
``org.apache.zookeeper.server.ZooKeeperServerMain`` with a small heap and ``tickTime=500`` (so
session timeouts from 1 s to 60 s are accepted). Every process it starts is stopped by PID,
and dies with the test process (``PR_SET_PDEATHSIG``) if that is killed first.

To make ZooKeeper expire a client's session while the server stays up, call
:func:`expire_session` with the client's ``client_id`` (ZooKeeper does not expire sessions
while it is down, so killing the server does not do it).

**ServerSet members** (with kazoo): ``member_json(8080, endpoints={"admin": 9990})`` is a
Twitter ServerSet member's data; ``register(client, "/discovery/prod/web", data)`` creates it
as an ephemeral sequential ``member_<seq>`` child, the way Finagle's announcer does.

**Observing a namer in-process**: :func:`addr_of`, :func:`ports`, :func:`wait_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from turnout.api import (
    Activity,
    Addr,
    AddrBound,
    AddrNeg,
    AddrPending,
    Leaf,
    Name,
    NameBound,
    NameTree,
    Neg,
    Ok,
    Pending,
)
from turnout.testing.net import LOCALHOST, free_port
from turnout.testing.process import die_with_parent

# ---------------------------------------------------------------------------------------------
# A real ZooKeeper server
# ---------------------------------------------------------------------------------------------

#: the jars of Debian's ``zookeeper`` package (zookeeper.jar's manifest names its dependencies)
CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"
JVM_FLAGS = ("-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

_CONFIG = """\
tickTime=500
dataDir={data}
clientPort={port}
clientPortAddress={host}
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr,stat
minSessionTimeout=1000
maxSessionTimeout=60000
"""


def four_letter_word(host: str, port: int, command: str, timeout: float = 2.0) -> str:
    """Send a four-letter command (``ruok``, ``mntr``, ``srvr``, ``stat``) and return the
    answer; :class:`OSError` when the server does not accept the connection."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(command.encode("ascii"))
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")


class ZooKeeperServer:
    """A standalone ZooKeeper on ``127.0.0.1:port`` (see the module docstring).

    :param port: the client port (default: a free one, kept across :meth:`restart`).
    :param workdir: where ``zoo.cfg``, ``data/`` and ``zk.log`` go (default: a new temporary
        directory, removed by :meth:`cleanup`).
    """

    def __init__(
        self, port: int | None = None, *, workdir: str | os.PathLike[str] | None = None
    ) -> None:
        self.host = LOCALHOST
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="zookeeper-")
            workdir = self._tmp.name
        self.dir = Path(workdir)
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "zoo.cfg"
        self.config_path.write_text(
            _CONFIG.format(data=self.data_dir, port=self.port, host=self.host)
        )
        self.log_path = self.dir / "zk.log"
        self.proc: subprocess.Popen[bytes] | None = None
        #: how many times the server was started (1 after the first start)
        self.starts = 0

    # -- addresses -------------------------------------------------------------------------
    @property
    def hosts(self) -> str:
        """The connect string for clients: ``"127.0.0.1:<port>"``."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        return self.proc.pid if self.proc is not None and self.running() else None

    def zk_addrs(self) -> list[dict[str, Any]]:
        """``zkAddrs`` as a Linkerd namer config wants it: ``[{"host": ..., "port": ...}]``."""
        return [{"host": self.host, "port": self.port}]

    def log(self) -> str:
        """What the server wrote so far (all starts)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> ZooKeeperServer:
        """Start the server and wait until it answers ``ruok`` with ``imok``.

        Raises :class:`RuntimeError` with the log when it exits or is not ready in time
        (the process is killed first)."""
        assert not self.running(), "already running"
        cmd = ["java", *JVM_FLAGS, "-cp", CLASSPATH, MAIN_CLASS, str(self.config_path)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"ZooKeeper exited with status {code}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"ZooKeeper not ready in {timeout}s:\n{self.log()[-4000:]}")
            time.sleep(0.05)
        return self

    def ready(self) -> bool:
        """Whether the server answers ``ruok`` with ``imok`` right now, and serves requests
        (``imok`` comes a few milliseconds before sessions are accepted: ``srvr`` tells)."""
        try:
            return self.command("ruok", timeout=1.0) == "imok" and "Mode:" in self.command(
                "srvr", timeout=1.0
            )
        except OSError:
            return False

    def running(self) -> bool:
        """Whether the server process was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server by PID and reap it (idempotent). The data directory stays, so
        :meth:`restart` brings back every node and every session that has not expired."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by PID: SIGTERM, then SIGKILL after ``timeout`` (idempotent)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def restart(self, timeout: float = 30.0) -> ZooKeeperServer:
        """Start again in the same directory on the same port (after :meth:`kill` or
        :meth:`stop`; kills a running server first)."""
        self.kill()
        return self.start(timeout)

    def cleanup(self) -> None:
        """Kill the server and remove the temporary directory (if one was made)."""
        self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ZooKeeperServer:
        return self if self.running() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- four-letter words -------------------------------------------------------------------
    def command(self, word: str, timeout: float = 2.0) -> str:
        """A four-letter command's answer (whitelisted: ``ruok``, ``srvr``, ``mntr``,
        ``stat``)."""
        return four_letter_word(self.host, self.port, word, timeout)

    def mntr(self) -> dict[str, str]:
        """The server's ``mntr`` counters: ``zk_watch_count``, ``zk_num_alive_connections``,
        ``zk_ephemerals_count``... (values as text)."""
        out = {}
        for line in self.command("mntr").splitlines():
            key, _, value = line.partition("\t")
            if key:
                out[key.strip()] = value.strip()
        return out


def expire_session(hosts: str, client_id: tuple[int, bytes], timeout: float = 10.0) -> None:
    """Make the server expire the session ``client_id`` (a kazoo ``client.client_id``) while
    it stays up: a second client joins that session with its id and password, then closes
    it. The victim sees ``LOST`` shortly after and then starts a new session.
    """
    session_id, password = client_id
    other = KazooClient(hosts=hosts, timeout=max(timeout, 1.0))
    other._session_id = session_id  # kazoo has no public way to join an existing session
    other._session_passwd = password
    try:
        other.start(timeout=timeout)
    finally:
        other.stop()
        other.close()


# ---------------------------------------------------------------------------------------------
# ServerSet members
# ---------------------------------------------------------------------------------------------


def member_json(
    port: int,
    *,
    host: str = "127.0.0.1",
    status: str | None = "ALIVE",
    endpoints: dict[str, int] | None = None,
    shard: int | None = 0,
) -> bytes:
    """A Twitter ServerSet member's data."""
    doc: dict[str, Any] = {"serviceEndpoint": {"host": host, "port": port}}
    doc["additionalEndpoints"] = {
        name: {"host": host, "port": p} for name, p in (endpoints or {}).items()
    }
    if status is not None:
        doc["status"] = status
    if shard is not None:
        doc["shard"] = shard
    return json.dumps(doc).encode()


def register(client: KazooClient, znode: str, data: bytes, *, ephemeral: bool = True) -> str:
    """Create a ``member_<seq>`` child of ``znode`` (made if missing); its full path."""
    client.ensure_path(znode)
    path: str = client.create(f"{znode}/member_", data, ephemeral=ephemeral, sequence=True)
    return path


# ---------------------------------------------------------------------------------------------
# Observing a namer in-process
# ---------------------------------------------------------------------------------------------


def addr_of(activity: Activity[NameTree[Name]]) -> Addr:
    """What a namer lookup currently binds to: the bound leaf's ``Addr``, ``AddrNeg`` for a
    negative tree, ``AddrPending`` while pending."""
    state = activity.value
    if isinstance(state, Ok):
        tree = state.value
        if isinstance(tree, Leaf) and isinstance(tree.value, NameBound):
            return tree.value.addr.value
        if tree is Neg:
            return AddrNeg
        raise AssertionError(f"unexpected tree {tree!r}")
    if state is Pending:
        return AddrPending
    raise AssertionError(f"unexpected state {state!r}")


def ports(addr: Addr) -> set[int]:
    """The ports of a bound address set (empty for any other state)."""
    return {a.port for a in addr.addresses} if isinstance(addr, AddrBound) else set()


async def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> float:
    """Await until ``predicate()`` is true (checked every 5 ms); the seconds it took.
    :class:`TimeoutError` after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"not true after {timeout}s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


# ---------------------------------------------------------------------------------------------
# A real ZooKeeper ensemble
# ---------------------------------------------------------------------------------------------

QUORUM_MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

_ENSEMBLE_CONFIG = """\
initLimit=20
syncLimit=10
reconfigEnabled=false
standaloneEnabled=false
"""


class EnsembleMember(ZooKeeperServer):
    """One server of a :class:`ZooKeeperEnsemble`: ``QuorumPeerMain`` with a ``myid`` file
    and ``server.N`` lines naming every member's peer and election ports on 127.0.0.1."""

    def __init__(
        self,
        myid: int,
        servers: dict[int, tuple[int, int, int]],
        *,
        workdir: str | os.PathLike[str],
    ) -> None:
        super().__init__(servers[myid][0], workdir=workdir)
        self.myid = myid
        (self.data_dir / "myid").write_text(f"{myid}\n")
        lines = [
            f"server.{n}={LOCALHOST}:{peer}:{election}"
            for n, (_client, peer, election) in sorted(servers.items())
        ]
        with open(self.config_path, "a") as f:
            f.write(_ENSEMBLE_CONFIG + "\n".join(lines) + "\n")

    def launch(self) -> None:
        """Start the process without waiting (a member serves only once a quorum is up)."""
        assert not self.running(), "already running"
        cmd = ["java", *JVM_FLAGS, "-cp", CLASSPATH, QUORUM_MAIN_CLASS, str(self.config_path)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        self.starts += 1

    def wait_ready(self, timeout: float = 60.0) -> EnsembleMember:
        """Wait until this member serves requests (``srvr`` shows its ``Mode``)."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper {self.myid} exited:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"ZooKeeper {self.myid} not serving in {timeout}s:\n{self.log()[-4000:]}"
                )
            time.sleep(0.1)
        return self

    def start(self, timeout: float = 60.0) -> EnsembleMember:
        """Start this member and wait until it serves (the others must form a quorum)."""
        self.launch()
        return self.wait_ready(timeout)

    def mode(self) -> str | None:
        """``leader`` or ``follower`` while serving, else None."""
        try:
            for line in self.command("srvr").splitlines():
                if line.startswith("Mode:"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return None


class ZooKeeperEnsemble:
    """A ``size``-server ZooKeeper ensemble on 127.0.0.1 (distinct client, peer and election
    ports; one directory and ``myid`` per member), every process stopped by PID::

        with ZooKeeperEnsemble(3, workdir=tmp_path) as zk:
            zk.hosts                  # "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
            zk.members[0].kill()      # the other two keep a quorum
            zk.members[0].start()     # rejoins
    """

    def __init__(self, size: int = 3, *, workdir: str | os.PathLike[str] | None = None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="zk-ensemble-")
            workdir = self._tmp.name
        root = Path(workdir)
        servers = {n: (free_port(), free_port(), free_port()) for n in range(1, size + 1)}
        self.members = [
            EnsembleMember(n, servers, workdir=root / f"zk{n}") for n in sorted(servers)
        ]

    @property
    def hosts(self) -> str:
        """The connect string naming every member."""
        return ",".join(m.hosts for m in self.members)

    def zk_addrs(self) -> list[dict[str, Any]]:
        """``zkAddrs`` for a turnout config: every member."""
        return [a for m in self.members for a in m.zk_addrs()]

    def start(self, timeout: float = 90.0) -> ZooKeeperEnsemble:
        """Start every member and wait until all serve (killing them all on failure)."""
        try:
            for member in self.members:
                member.launch()
            deadline = time.monotonic() + timeout
            for member in self.members:
                member.wait_ready(max(deadline - time.monotonic(), 1.0))
        except BaseException:
            self.kill()
            raise
        return self

    def leader(self) -> EnsembleMember | None:
        return next((m for m in self.members if m.mode() == "leader"), None)

    def kill(self) -> None:
        for member in self.members:
            member.kill()

    def cleanup(self) -> None:
        """Kill every member and remove the temporary directory (if one was made)."""
        self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(f"--- zk{m.myid} ---\n{m.log()[-tail:]}" for m in self.members)

    def __enter__(self) -> ZooKeeperEnsemble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
