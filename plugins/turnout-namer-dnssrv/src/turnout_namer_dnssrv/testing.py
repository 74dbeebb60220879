"""A real BIND 9 (``named``) as an authoritative DNS server for tests, on 127.0.0.1.

One primary zone (``svc.test`` by default) with ``$TTL 0`` (resolvers cache nothing) that
accepts RFC 2136 dynamic updates from 127.0.0.1, so tests change A, AAAA and SRV records
while the server runs::

    with BindServer() as dns:                        # started, answering
        dns.replace_a("web1", "127.0.0.1")
        dns.replace_srv("_http._tcp.web", [(0, 10, 8080, "web1")])
        dns.kill()                                   # SIGKILL: an outage
        dns.restart()                                # same directory and port; the updates
                                                     # survive in the zone's journal (.jnl)

Names without a final dot are relative to the zone (``"web1"`` → ``web1.svc.test.``).
named runs in the foreground (``named -g -4 -n 1 -c named.conf``) in its own directory, is
stopped by PID (never by name), and dies with the test process (``PR_SET_PDEATHSIG``).

Needs ``named`` (Debian: ``apt-get install bind9``) and dnspython (a dependency of this
plugin). It ships with the io.l5d.dnssrv namer (``from turnout_namer_dnssrv.testing import
BindServer``), so that users of the plugin can test their own configurations against it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update
from turnout.testing.net import LOCALHOST, free_port
from turnout.testing.process import die_with_parent

NAMED = shutil.which("named") or "/usr/sbin/named"

#: ``(priority, weight, port, target)`` of one SRV record
SrvRecord = tuple[int, int, int, str]

_ZONE = """\
$TTL 0
@   IN SOA ns.{zone}. admin.{zone}. 1 60 60 3600 0
    IN NS  ns.{zone}.
ns  IN A   127.0.0.1
{records}
"""

_CONF = """\
options {{
  directory "{dir}";
  pid-file none;
  session-keyfile "{dir}/session.key";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  notify no;
  allow-query {{ 127.0.0.1; }};
  minimal-responses {minimal};
}};
controls {{ }};
zone "{zone}" {{
  type primary;
  file "{dir}/{zone}.zone";
  allow-update {{ 127.0.0.1; }};
}};
"""


class BindServer:
    """``named`` serving one dynamic zone on ``127.0.0.1:port`` (see the module docstring).

    :param port: UDP and TCP port (a free one by default; if named cannot bind it at the first
        start, another free port is tried).
    :param zone: the zone's name.
    :param records: zone file lines added at the first start (``"web1 IN A 127.0.0.1"``).
    :param minimal_responses: ``minimal-responses yes``: no additional section (SRV answers
        then come without the A/AAAA records of their targets).
    :param workdir: the server's directory (a new temporary one by default).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        zone: str = "svc.test",
        records: Iterable[str] = (),
        minimal_responses: bool = False,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = LOCALHOST
        self._port_given = port is not None
        self.port = port or free_port()
        self.zone = zone.rstrip(".")
        self.origin = dns.name.from_text(self.zone)
        self.records = list(records)
        self.minimal_responses = minimal_responses
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bind-")
            workdir = self._tmp.name
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.dir / "named.conf"
        self.zone_path = self.dir / f"{self.zone}.zone"
        self.log_path = self.dir / "named.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- properties ------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """``"127.0.0.1:<port>"`` (an ``io.l5d.dnssrv`` ``dnsHosts`` entry)."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def running(self) -> bool:
        """Whether named was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def fqdn(self, name: str) -> str:
        """``name`` as an absolute name: relative names are in the zone, ``"@"`` is the zone."""
        if name in ("@", ""):
            return f"{self.zone}."
        return name if name.endswith(".") else f"{name}.{self.zone}."

    def log(self) -> str:
        """What named wrote so far (all starts)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> BindServer:
        """Start named and wait until it answers a SOA query for the zone.

        Raises :class:`RuntimeError` with named's log if it exits or does not answer within
        ``timeout`` seconds (it is killed then).
        """
        assert not self.running(), "already running"
        attempts = 1 if (self._port_given or self.starts) else 3
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                break
            except _PortBusy:
                if attempt == attempts - 1:
                    raise RuntimeError(f"named could not bind its port:\n{self.log()}") from None
                self.port = free_port()
        self.starts += 1
        return self

    def _write_files(self) -> None:
        self.conf_path.write_text(
            _CONF.format(
                dir=self.dir,
                port=self.port,
                zone=self.zone,
                minimal="yes" if self.minimal_responses else "no",
            )
        )
        if self.starts == 0:  # later starts keep the zone and its journal
            self.zone_path.write_text(_ZONE.format(zone=self.zone, records="\n".join(self.records)))
            for stale in self.dir.glob(f"{self.zone}.zone.jnl"):
                stale.unlink()

    def _start_once(self, timeout: float) -> None:
        self._write_files()
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [NAMED, "-g", "-4", "-n", "1", "-c", str(self.conf_path)],
                cwd=self.dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None:
                self.proc.wait()
                text = self.log()[log_start:]
                busy = "address in use" in text or "unable to listen" in text
                if busy and self.starts == 0:
                    raise _PortBusy
                raise RuntimeError(f"named exited with status {self.proc.returncode}:\n{text}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"named did not answer within {timeout}s:\n{self.log()}")
            time.sleep(0.02)

    def answers(self, timeout: float = 0.5) -> bool:
        """Whether named answers a SOA query for the zone right now."""
        try:
            response = self.query(f"{self.zone}.", "SOA", timeout=timeout)
        except (dns.exception.DNSException, OSError):
            return False
        return response.rcode() == dns.rcode.NOERROR and bool(response.answer)

    def kill(self) -> None:
        """SIGKILL named (an outage); idempotent. The directory and journal stay."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM named (it writes its journal and exits), SIGKILL after ``timeout``."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, timeout: float = 20.0) -> BindServer:
        """Start again on the same port and directory (stopping it first if it runs).
        Dynamic updates made before are kept (named replays the journal)."""
        self.stop()
        return self.start(timeout)

    def cleanup(self) -> None:
        """Stop named and remove its temporary directory (when one was made)."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> BindServer:
        return self.start() if not self.running() else self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- queries and dynamic updates ---------------------------------------------------------
    def query(self, name: str, rdtype: str = "A", *, timeout: float = 2.0) -> dns.message.Message:
        """One UDP query to this server (no recursion wanted); the whole response."""
        message = dns.message.make_query(self.fqdn(name), rdtype)
        return dns.query.udp(message, self.host, port=self.port, timeout=timeout)

    def update(self, *changes: tuple[str, str, int, str, Sequence[str]]) -> None:
        """Send one RFC 2136 update (over TCP) made of ``changes``, each
        ``(action, name, ttl, rdtype, rdatas)`` with action ``add``, ``replace`` or
        ``delete`` (``delete`` with no rdatas removes the whole RRset, or every RRset of the
        name when rdtype is ``"ANY"``). Raises :class:`RuntimeError` unless NOERROR."""
        message = dns.update.UpdateMessage(self.origin)
        for action, name, ttl, rdtype, rdatas in changes:
            owner = dns.name.from_text(self.fqdn(name))
            if action == "add":
                message.add(owner, ttl, rdtype, *rdatas)
            elif action == "replace":
                message.replace(owner, ttl, rdtype, *rdatas)
            elif action == "delete":
                if rdtype.upper() == "ANY":
                    message.delete(owner)
                else:
                    message.delete(owner, rdtype, *rdatas)
            else:
                raise ValueError(f"unknown update action {action!r}")
        response = dns.query.tcp(message, self.host, port=self.port, timeout=5.0)
        if response.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"update refused: {dns.rcode.to_text(response.rcode())}")

    def _srv_rdata(self, records: Iterable[SrvRecord]) -> list[str]:
        return [f"{p} {w} {port} {self.fqdn(t) if t != '.' else '.'}" for p, w, port, t in records]

    def add_a(self, name: str, *addresses: str, ttl: int = 0) -> None:
        """Add A (IPv4) or AAAA (IPv6) records to ``name``'s set."""
        for rdtype, addrs in _by_family(addresses).items():
            self.update(("add", name, ttl, rdtype, addrs))

    def replace_a(self, name: str, *addresses: str, ttl: int = 0) -> None:
        """Make ``addresses`` the only A and AAAA records of ``name``."""
        families = _by_family(addresses)
        changes: list[tuple[str, str, int, str, Sequence[str]]] = []
        for rdtype in ("A", "AAAA"):
            if rdtype in families:
                changes.append(("replace", name, ttl, rdtype, families[rdtype]))
            else:
                changes.append(("delete", name, 0, rdtype, ()))
        self.update(*changes)

    def delete_a(self, name: str) -> None:
        """Remove every A and AAAA record of ``name``."""
        self.update(("delete", name, 0, "A", ()), ("delete", name, 0, "AAAA", ()))

    def add_srv(
        self, name: str, target: str, port: int, *, priority: int = 0, weight: int = 1, ttl: int = 0
    ) -> None:
        """Add one SRV record to ``name``'s set."""
        self.update(("add", name, ttl, "SRV", self._srv_rdata([(priority, weight, port, target)])))

    def replace_srv(self, name: str, records: Iterable[SrvRecord], *, ttl: int = 0) -> None:
        """Make ``records`` (``(priority, weight, port, target)``) ``name``'s only SRV
        records (an empty list deletes them)."""
        rdatas = self._srv_rdata(records)
        if rdatas:
            self.update(("replace", name, ttl, "SRV", rdatas))
        else:
            self.delete_srv(name)

    def delete_srv(self, name: str) -> None:
        """Remove every SRV record of ``name``."""
        self.update(("delete", name, 0, "SRV", ()))

    def delete_name(self, name: str) -> None:
        """Remove every record of ``name`` (it becomes NXDOMAIN)."""
        self.update(("delete", name, 0, "ANY", ()))


class _PortBusy(Exception):
    pass


def _by_family(addresses: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for address in addresses:
        out.setdefault("AAAA" if ":" in address else "A", []).append(address)
    return out
