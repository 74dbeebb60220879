"""End to end: a service mesh of three hosts on one machine (docs/mesh.md).

Each host (A, B, C) is a network namespace made here, joined to the others by veth pairs on
a bridge in a fourth namespace (the "switch"), so nothing is added to the root namespace and
concurrent runs do not meet. Each host runs a backend (tests/mesh/backend.py, which records
the headers it receives) and one turnout process with tests/mesh/linker.yaml: an outgoing
router (:4140, ``io.l5d.fs`` + ``io.l5d.port`` 4141) and an incoming router (:4141,
``io.l5d.localhost``), linker to linker over mutual TLS with certificates made here.
Clients (tests/mesh/client.py) run inside the namespaces with ``ip netns exec``.

Needs root and iproute2 (``ip netns``); skipped otherwise.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from turnout.testing import die_with_parent, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

HERE = Path(__file__).resolve().parent / "mesh"
LINKER_YAML = HERE / "linker.yaml"
#: host -> (its IP, the service its backend is)
HOSTS = {"a": ("10.77.0.1", "auth"), "b": ("10.77.0.2", "web"), "c": ("10.77.0.3", "api")}
BACKEND_PORT = 8080
#: the name every linker certificate carries (the outgoing routers' client tls.commonName)
MESH_NAME = "linker.mesh"
INCOMING = "rt/incoming/server/0.0.0.0/4141/tls"


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------


@dataclass
class Pair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write the key, then the certificate, each replaced at once (``os.replace``)."""
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        for path, data in (
            (key_path, key_pem),
            (cert_path, self.cert.public_bytes(serialization.Encoding.PEM)),
        ):
            tmp = path.with_name(path.name + ".new")
            tmp.write_bytes(data)
            os.replace(tmp, path)


def issue(name: str, issuer: Pair | None, sans: list[x509.GeneralName] | None = None) -> Pair:
    """A CA (``issuer`` None: self-signed) or a leaf for TLS servers and clients."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        usage = dict.fromkeys(
            ["digital_signature", "content_commitment", "key_encipherment"], False
        )
        usage |= dict.fromkeys(["data_encipherment", "key_agreement", "encipher_only"], False)
        usage |= {"key_cert_sign": True, "crl_sign": True, "decipher_only": False}
        builder = builder.add_extension(x509.KeyUsage(**usage), True)
        return Pair(builder.sign(key, hashes.SHA256()), key)
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.SubjectAlternativeName(sans or []), False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    )
    return Pair(builder.sign(issuer.key, hashes.SHA256()), key)


def host_sans(host: str) -> list[x509.GeneralName]:
    """A linker's names: its host's name, the mesh name, its IP."""
    return [
        x509.DNSName(f"host-{host}"),
        x509.DNSName(MESH_NAME),
        x509.IPAddress(IPv4Address(HOSTS[host][0])),
    ]


# ---------------------------------------------------------------------------------------------
# The mesh: namespaces, files, processes
# ---------------------------------------------------------------------------------------------


def ip(command: str) -> None:
    """``ip`` with ``command``'s words; :class:`RuntimeError` with its message if it fails."""
    out = subprocess.run(
        ["ip", *command.split()], capture_output=True, text=True, timeout=30, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"ip {command}: {out.stderr.strip()}")


@dataclass
class Mesh:
    root: Path
    tag: str
    ca: Pair = field(init=False)
    certs: dict[str, Pair] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def ns(self, host: str) -> str:
        return f"tmesh{self.tag}-{host}"

    def dir(self, host: str) -> Path:
        return self.root / f"host-{host}"

    # -- set up and tear down ------------------------------------------------------------
    def build_network(self) -> None:
        """A switch namespace with a bridge; per host a namespace with eth0, a veth whose
        peer is on the bridge, and its 10.77.0.x/24 address."""
        switch = self.ns("sw")
        try:
            ip(f"netns add {switch}")
        except RuntimeError as e:
            if "exists" in str(e):  # (a namespace of an earlier run that was killed)
                raise
            pytest.skip(f"cannot create a network namespace: {e}")
        self.namespaces.append(switch)
        ip(f"-n {switch} link add br0 type bridge")
        ip(f"-n {switch} link set br0 up")
        for host, (address, _) in HOSTS.items():
            ns = self.ns(host)
            ip(f"netns add {ns}")
            self.namespaces.append(ns)
            ip(f"-n {ns} link set lo up")
            ip(f"-n {ns} link add eth0 type veth peer name to-{host} netns {switch}")
            ip(f"-n {switch} link set to-{host} master br0 up")
            ip(f"-n {ns} addr add {address}/24 dev eth0")
            ip(f"-n {ns} link set eth0 up")

    def write_files(self) -> None:
        """Per host: linker.yaml, disco/<service> for every service, tls/ (mesh CA and the
        host's pair). At the root: a foreign CA and a pair it signed, named like host A's."""
        self.ca = issue("turnout mesh test CA", None)
        foreign_ca = issue("foreign CA", None)
        issue("host-a", foreign_ca, host_sans("a")).write(
            self.root / "foreign.pem", self.root / "foreign.key"
        )
        (self.root / "mesh-ca.pem").write_bytes(
            self.ca.cert.public_bytes(serialization.Encoding.PEM)
        )
        for host in HOSTS:
            d = self.dir(host)
            (d / "tls").mkdir(parents=True)
            (d / "disco").mkdir()
            shutil.copy(LINKER_YAML, d / "linker.yaml")
            shutil.copy(self.root / "mesh-ca.pem", d / "tls" / "mesh-ca.pem")
            for address, service in HOSTS.values():
                (d / "disco" / service).write_text(f"{address} {BACKEND_PORT}\n")
            self.certs[host] = issue(f"host-{host}", self.ca, host_sans(host))
            self.certs[host].write(*self.pair_paths(host))

    def pair_paths(self, host: str) -> tuple[Path, Path]:
        return self.dir(host) / "tls" / "linker.pem", self.dir(host) / "tls" / "linker.key"

    def start(self) -> None:
        """A backend and a linker per host, then wait until every port accepts."""
        for host in HOSTS:
            d = self.dir(host)
            backend = [str(HERE / "backend.py"), f"host-{host}", str(BACKEND_PORT), "record"]
            self.spawn(host, f"backend-{host}", backend)
            self.spawn(host, f"turnout-{host}", ["-m", "turnout", "run", str(d / "linker.yaml")])
        waits = {}
        for host, (address, _) in HOSTS.items():
            ports = ["127.0.0.1:9990", "127.0.0.1:4140", f"{address}:4141"]
            waits[host] = self.popen_client(host, "wait", "45", *ports, f"{address}:{BACKEND_PORT}")
        try:
            while any(w.poll() is None for w in waits.values()):
                exited = [name for name, proc in self.procs.items() if proc.poll() is not None]
                assert not exited, f"{exited} exited at start\n{self.logs()}"
                time.sleep(0.1)
        finally:
            for w in waits.values():
                if w.poll() is None:
                    w.kill()
            answers = {host: self.finish(w) for host, w in waits.items()}  # (reaped)
        for host, answer in answers.items():
            assert answer.get("pending") == [], f"host {host}: {answer}\n{self.logs()}"

    def spawn(self, host: str, name: str, args: list[str]) -> None:
        d = self.dir(host)
        with open(d / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(host), sys.executable, *args],
                cwd=d,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=die_with_parent,
            )

    def stop(self) -> None:
        """Stop every process by PID (SIGTERM, then SIGKILL), then delete the namespaces
        (which deletes their veths and the bridge)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        errors = []
        for ns in reversed(self.namespaces):
            try:
                ip(f"netns del {ns}")
            except RuntimeError as e:
                errors.append(str(e))
        assert not errors, errors

    # -- using it --------------------------------------------------------------------------
    def client(self, host: str, *args: str, timeout: float = 30) -> Any:
        """tests/mesh/client.py inside ``host``'s namespace: its JSON answer."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.ns(host), sys.executable, str(HERE / "client.py"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert out.returncode == 0, f"client {args} in {host}: {out.stderr}"
        return json.loads(out.stdout)

    def popen_client(self, host: str, *args: str) -> subprocess.Popen[str]:
        """tests/mesh/client.py inside ``host``'s namespace, running on (see :meth:`finish`)."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), sys.executable, str(HERE / "client.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )

    def finish(self, proc: subprocess.Popen[str], timeout: float = 30) -> Any:
        """The JSON answer of a :meth:`popen_client` (killed, by PID, after ``timeout``), or
        its exit status and stderr."""
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
        try:
            return json.loads(out)
        except ValueError:
            return {"returncode": proc.returncode, "stderr": err[-2000:]}

    def handshake(self, host: str, to: str, pair: tuple[Path, Path] | None) -> Any:
        """A TLS connection from ``host`` straight to ``to``'s incoming router."""
        args = [str(p) for p in pair] if pair else []
        ca = self.root / "mesh-ca.pem"
        return self.client(host, "tls", HOSTS[to][0], "4141", MESH_NAME, str(ca), *args)

    def records(self, host: str) -> list[dict[str, Any]]:
        """The requests ``host``'s backend received, oldest first."""
        path = self.dir(host) / "record"
        lines = path.read_text().split("\n")[:-1] if path.exists() else []  # (whole lines)
        return [json.loads(line) for line in lines]

    def count(self, host: str, path: str) -> int:
        """How many requests for ``path`` ``host``'s backend received (cheaply, under load)."""
        record = self.dir(host) / "record"
        return record.read_text().count(f'"path": "{path}"') if record.exists() else 0

    def metrics(self, host: str) -> dict[str, Any]:
        r = self.client(host, "get", "127.0.0.1", "9990", "/admin/metrics.json", "Host: admin")
        return json.loads(r["body"])  # type: ignore[no-any-return]

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{(self.dir(name[-1]) / f'{name}.log').read_text(errors='replace')}"
            for name in self.procs
        )


@pytest.fixture(scope="module")
def started_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    if not sys.platform.startswith("linux"):
        pytest.skip("network namespaces are a Linux feature")
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to create network namespaces")
    m = Mesh(tmp_path_factory.mktemp("mesh"), str(os.getpid()))
    try:
        m.build_network()
        m.write_files()
        m.start()
        yield m
    finally:
        m.stop()


@pytest.fixture
def mesh(started_mesh: Mesh) -> Iterator[Mesh]:
    """The module's mesh; its processes' logs are printed after each test (pytest shows
    them when the test failed)."""
    yield started_mesh
    print(started_mesh.logs())


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def header_values(record: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in record["headers"] if k.lower() == name]


def xfcc(pair: Pair, host: str) -> str:
    """The x-forwarded-client-cert value docs/tls.md promises for host ``host``'s pair."""
    der = pair.cert.public_bytes(serialization.Encoding.DER)
    sha = hashlib.sha256(der).hexdigest()
    return (
        f'Hash={sha};SAN=host-{host};SAN={MESH_NAME};SAN={HOSTS[host][0]};Subject="CN=host-{host}"'
    )


def trace_id(l5d_ctx_trace: str) -> int:
    """The trace id in a Finagle TraceId (span, parent, trace, flags: 8 bytes each)."""
    return int(struct.unpack(">QQQQ", base64.b64decode(l5d_ctx_trace)[:32])[2])


def test_linker_config_passes_turnout_check(mesh: Mesh) -> None:
    """tests/mesh/linker.yaml, the configuration docs/mesh.md shows, with its files."""
    out = subprocess.run(
        [sys.executable, "-m", "turnout", "check", "linker.yaml"],
        cwd=mesh.dir("a"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "linker.yaml: OK (2 router(s): outgoing, incoming)" in out.stdout


@pytest.mark.parametrize(("src", "dst"), [("a", "b"), ("c", "b"), ("b", "c")])
def test_request_goes_through_both_linkers_to_the_service_host(
    mesh: Mesh, src: str, dst: str
) -> None:
    """src's app -> src outgoing -> (mTLS) -> dst incoming -> dst's backend, which sees src's
    verified identity and the l5d-ctx-* headers the app sent."""
    service = HOSTS[dst][1]
    seen = {h: len(mesh.records(h)) for h in HOSTS}
    trace = base64.b64encode(struct.pack(">QQQQ", 0x1111, 0x1111, 0xABCDEF0123456789, 0)).decode()
    deadline = f"{time.time_ns()} {time.time_ns() + 30 * 10**9}"
    r = mesh.client(
        src,
        "get",
        "127.0.0.1",
        "4140",
        "/hello",
        f"Host: {service}",
        f"l5d-ctx-trace: {trace}",
        f"l5d-ctx-deadline: {deadline}",
        "l5d-ctx-foo: bar",
        'x-forwarded-client-cert: Hash=forged;Subject="CN=admin"',
    )
    assert (r["status"], r["body"]) == (200, f"host-{dst}\n"), r
    new = mesh.records(dst)[seen[dst] :]
    assert len(new) == 1, new
    assert all(len(mesh.records(h)) == seen[h] for h in HOSTS if h != dst)
    got = new[0]
    assert got["path"] == "/hello"
    # through two linkers, the second being dst's incoming router (the transformer's id)...
    assert header_values(got, "via") == ["1.1 turnout, 1.1 turnout"]
    assert header_values(got, "l5d-dst-client") == [f"/%/io.l5d.localhost/#/io.l5d.fs/{service}"]
    # ...which verified src's certificate (the forged header sent by the app is gone)
    assert header_values(got, "x-forwarded-client-cert") == [xfcc(mesh.certs[src], src)]
    # the context the app sent survived both hops
    assert header_values(got, "l5d-ctx-deadline") == [deadline]
    assert header_values(got, "l5d-ctx-foo") == ["bar"]
    [sent_on] = header_values(got, "l5d-ctx-trace")
    assert trace_id(sent_on) == 0xABCDEF0123456789


def test_incoming_router_refuses_clients_without_a_mesh_certificate(mesh: Mesh) -> None:
    """No certificate, or one from a foreign CA (naming host A): refused in the handshake,
    B's backend sees nothing. The same connection with A's mesh certificate is served."""
    seen = len(mesh.records("b"))
    failures = mesh.metrics("b").get(f"{INCOMING}/handshake_failures", 0)
    foreign = (mesh.root / "foreign.pem", mesh.root / "foreign.key")
    for pair in (None, foreign):
        # (with TLS 1.3 the client's side of the handshake ends before the server checks its
        # certificate: the client then reads an alert, a reset or the end of the stream)
        r = mesh.handshake("a", "b", pair)
        print("client certificate", pair, "->", r)
        assert r.get("response", "") == "", (pair, r)
    assert wait_until(
        lambda: mesh.metrics("b").get(f"{INCOMING}/handshake_failures") == failures + 2, 10
    ), mesh.metrics("b")
    assert len(mesh.records("b")) == seen
    served = mesh.handshake("a", "b", mesh.pair_paths("a"))
    assert served.get("response", "").startswith("HTTP/1.1 200"), served
    assert served["response"].endswith("host-b\n")
    assert len(mesh.records("b")) == seen + 1


def test_certificates_rotate_under_load_without_failed_requests(mesh: Mesh) -> None:
    """While A sends a steady load to web on B, B's certificate and key files are replaced
    by a new pair from the same CA: no request fails, new handshakes get the new pair (a
    direct probe, and the new connections a wider load makes A's linker open)."""
    old, new = mesh.certs["b"], issue("host-b", mesh.ca, host_sans("b"))
    assert mesh.handshake("a", "b", mesh.pair_paths("a"))["serial"] == old.cert.serial_number
    reloads = mesh.metrics("b").get(f"{INCOMING}/reloads", 0)
    connects = "rt/outgoing/client/%/io.l5d.port/4141/#/io.l5d.fs/web/connects"
    stop = mesh.root / "stop-load"

    def start_load(workers: int) -> subprocess.Popen[str]:
        args = ["load", "127.0.0.1", "4140", "web", str(stop), "60", "50000", str(workers)]
        return mesh.popen_client("a", *args)

    def loaded() -> int:
        return mesh.count("b", "/load")

    def presents_new() -> bool:
        r = mesh.handshake("a", "b", mesh.pair_paths("a"))
        assert r.get("response", "").endswith("host-b\n"), r  # (each probe is served)
        return bool(r["serial"] == new.cert.serial_number)

    loads = [start_load(2)]
    try:
        began = time.monotonic()
        assert wait_until(lambda: loaded() >= 20 and time.monotonic() - began > 1, 15, 0.1)
        new.write(*mesh.pair_paths("b"))
        mesh.certs["b"] = new
        # (the files are looked at every 5 s, docs/tls.md)
        assert wait_until(presents_new, 20, 0.2), "B still presents its old certificate"
        before = mesh.metrics("a")[connects]
        loads.append(start_load(6))
        after, began = loaded(), time.monotonic()
        assert wait_until(lambda: loaded() >= after + 200 and time.monotonic() - began > 2, 20, 0.1)
    finally:
        stop.touch()
        results = [mesh.finish(load) for load in loads]
    print("loads:", results, "A->B connects before the reload:", before)
    for result in results:
        assert result.get("failed") == 0, result
        assert set(result["ok"]) == {"host-b\n"}, result
    assert sum(r["ok"]["host-b\n"] for r in results) >= 250
    assert mesh.metrics("a")[connects] > before, "A's linker opened no new connection to B"
    assert mesh.metrics("b")[f"{INCOMING}/reloads"] >= reloads + 1
    assert "loaded the new certificate" in mesh.logs()
