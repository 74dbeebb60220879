"""Linkerd 1's own example configurations, copied unchanged into ``examples/linkerd/``, pass
``turnout check`` without "not implemented" warnings and run.

Each is checked and started (``python -m turnout run``) in a working directory prepared by the
test with what the configuration names: the ``io.l5d.fs`` directory
``linkerd/examples/io.l5d.fs`` (its four files, as in Linkerd's repository, pointing at the
test's backends), certificates made here with ``cryptography`` at the paths the configuration
gives (relative paths under the working directory; ``/foo/...`` rewritten to
``<working directory>/foo/...`` in a copy), a real ZooKeeper for ``serversets.yaml``. The
started copy listens on free loopback ports. Then one real request goes through each router.
The examples of plugins that need their own servers (Thrift clients, the Consul and Kubernetes
API doubles, ZooKeeper with Curator members or a Marathon leader) are checked here and started
by those plugins' tests (``STARTED_BY_PLUGIN_TESTS``). See examples/linkerd/README.md.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from turnout.testing import (
    Response,
    TurnoutProcess,
    free_port,
    http_request,
    parse_response,
    port_open,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]
LINKERD = ROOT / "examples" / "linkerd"
#: the ``rootDir`` of the examples' io.l5d.fs namers (relative to the working directory)
FS_DIR = "linkerd/examples/io.l5d.fs"
#: where admin-tls.yaml finds its certificates (relative to the working directory)
FINAGLE = "finagle/h2/src/e2e/resources"

EXAMPLES = [
    "admin-tls.yaml",
    "client-options.yaml",
    "consul-interpreter.yaml",
    "curator.yaml",
    "disable-tls.yaml",
    "h2.yaml",
    "h2spec.yaml",
    "influxdb.yaml",
    "k8s.yaml",
    "marathon-leader.yaml",
    "mutualTls.yaml",
    "namerd-http.yaml",
    "namerd-mesh.yaml",
    "proxy.yaml",
    "serversets.yaml",
    "servicemesh.yaml",
    "thrift.yaml",
    "tls.yaml",
]

#: examples whose kinds come from a plugin with its own servers to start against (a real
#: ZooKeeper, an API double, Thrift clients, grpcio and an h2c nginx): checked here, started by
#: that plugin's tests
STARTED_BY_PLUGIN_TESTS = {
    "consul-interpreter.yaml": "plugins-contrib/turnout-interpreter-consul/tests",
    "curator.yaml": "plugins-contrib/turnout-namer-curator/tests",
    "h2.yaml": "plugins/turnout-protocol-h2/tests",
    "h2spec.yaml": "plugins/turnout-protocol-h2/tests",
    "influxdb.yaml": "plugins-contrib/turnout-telemeter-influxdb/tests",
    "k8s.yaml": "plugins-contrib/turnout-namer-k8s-external/tests",
    "marathon-leader.yaml": "plugins/turnout-namer-marathon/tests",
    "namerd-http.yaml": "core/tests/namerd",
    "namerd-mesh.yaml": "plugins/turnout-namerd-mesh/tests",
    "thrift.yaml": "plugins-contrib/turnout-protocol-thrift/tests",
}

#: warnings turnout still prints for an example (a turnout defect each): the check test is an
#: expected failure while the warning is printed, and fails once it is not (none today)
KNOWN_WARNINGS: dict[str, str] = {}

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Pki:
    """A root CA, an intermediate CA signed by it, and leaf certificates (RSA 2048, valid
    from yesterday for 30 days), made with ``cryptography``."""

    def __init__(self) -> None:
        self.root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.root = self._sign(
            "turnout examples root CA", self.root_key, self.root_key, None, ca=True
        )
        self.inter_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.inter = self._sign(
            "turnout examples intermediate CA", self.inter_key, self.root_key, self.root, ca=True
        )

    def _sign(
        self,
        cn: str,
        key: rsa.RSAPrivateKey,
        issuer_key: rsa.RSAPrivateKey,
        issuer: x509.Certificate | None,
        *,
        ca: bool = False,
        names: tuple[str, ...] = (),
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(issuer.subject if issuer else _name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        )
        if ca:
            usage = x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            )  # fmt: skip
        else:
            usage = x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            )  # fmt: skip
            builder = builder.add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        builder = builder.add_extension(usage, critical=True)
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def leaf(
        self, cn: str, *names: str, by_intermediate: bool = False
    ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        """A certificate for ``names`` (subject alternative names; ``cn`` when none), issued
        by the root, or by the intermediate."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        issuer, issuer_key = (
            (self.inter, self.inter_key) if by_intermediate else (self.root, self.root_key)
        )
        cert = self._sign(cn, key, issuer_key, issuer, names=names or (cn,))
        return cert, key

    @cache  # noqa: B019 (one Pki per test session)
    def materials(self, example: str) -> dict[str, bytes]:
        """The certificate files ``example`` names, by path relative to the working
        directory (``/foo/x`` is ``foo/x``)."""
        if example == "tls.yaml":
            server, key = self.leaf("localhost", "localhost", "127.0.0.1", by_intermediate=True)
            return {
                "foo/caCert.pem": pem(self.root),
                "foo/cert.pem": pem(server),
                "foo/key.pem": pkcs8(key),
                "foo/ca-chain.pem": pem(self.inter, self.root),
            }
        if example == "mutualTls.yaml":
            server, key = self.leaf("localhost", "localhost", "127.0.0.1")
            client, client_key = self.leaf("linkerd", by_intermediate=True)
            return {
                "foo/cacert.pem": pem(self.root),
                "foo/cert.pem": pem(server),
                "foo/key.pem": pkcs8(key),
                "foo/clientCert.pem": pem(client),
                "foo/clientKey.pem": pkcs1(client_key),
                "foo/intermediateCa.pem": pem(self.inter),
            }
        if example in ("admin-tls.yaml", "namerd-tls.yaml"):
            admin, key = self.leaf("linkerd-tls-e2e", "localhost", "127.0.0.1")
            if example == "namerd-tls.yaml":
                return {
                    "namerd/examples/certs/namerd-cacert.pem": pem(self.root),
                    f"{FINAGLE}/linkerd-tls-e2e-cert.pem": pem(admin),
                    f"{FINAGLE}/linkerd-tls-e2e-key.pem": pkcs8(key),
                    f"{FINAGLE}/cacert.pem": pem(self.root),
                }
            return {
                f"{FINAGLE}/linkerd-tls-e2e-cert.pem": pem(admin),
                f"{FINAGLE}/linkerd-tls-e2e-key.pem": pkcs8(key),
                f"{FINAGLE}/cacert.pem": pem(self.root),
            }
        return {}


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _key(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def pkcs8(key: rsa.RSAPrivateKey) -> bytes:
    """``BEGIN PRIVATE KEY`` (what Linkerd asks for)."""
    return _key(key, serialization.PrivateFormat.PKCS8)


def pkcs1(key: rsa.RSAPrivateKey) -> bytes:
    """``BEGIN RSA PRIVATE KEY``."""
    return _key(key, serialization.PrivateFormat.TraditionalOpenSSL)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


# ---------------------------------------------------------------------------------------------
# The working directory, configurations and requests
# ---------------------------------------------------------------------------------------------


def workspace(directory: Path, pki: Pki, example: str) -> Path:
    """A working directory holding the certificates ``example`` names, the root CA at
    ``root-ca.pem`` and an empty io.l5d.fs directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for rel, data in pki.materials(example).items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (directory / "root-ca.pem").write_bytes(pem(pki.root))
    (directory / FS_DIR).mkdir(parents=True, exist_ok=True)
    return directory


def localize(text: str, ws: Path) -> str:
    """The configuration with its absolute ``/foo/...`` certificate paths moved under ``ws``."""
    return text.replace(": /foo/", f": {ws}/foo/")


def write_fs(ws: Path, host: str = "127.1", **ports: int) -> None:
    """The namer files of Linkerd's linkerd/examples/io.l5d.fs (``127.1 <port>``), with the
    test's ports (``cat``, ``dog``, ``default``, ``thrift``)."""
    for service, port in ports.items():
        (ws / FS_DIR / service).write_text(f"{host} {port}\n")


def turnout_check(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def runnable(example: str, ws: Path) -> dict[str, Any]:
    """The example's configuration, to start: certificate paths under ``ws``, the admin and
    every server on a free port, and on 127.0.0.1 where they said 0.0.0.0."""
    config: dict[str, Any] = yaml.safe_load(localize((LINKERD / example).read_text(), ws))
    admin = config.setdefault("admin", {})
    admin["port"] = free_port()
    if admin.get("ip") == "0.0.0.0":
        admin["ip"] = "127.0.0.1"
    for router in config["routers"]:
        for server in router["servers"]:
            server["port"] = free_port()
            if server.get("ip") == "0.0.0.0":
                server["ip"] = "127.0.0.1"
    return config


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def trust_root(ws: Path) -> dict[str, str]:
    """Environment that makes the test's root CA the system's CAs of the turnout process
    (clients without ``trustCertsBundle`` verify against them)."""
    return {"SSL_CERT_FILE": str(ws / "root-ca.pem")}


def https_request(
    port: int,
    ca: Path,
    *,
    host: str,
    target: str = "/",
    headers: dict[str, str] | None = None,
    cert: tuple[Path, Path] | None = None,
    server_name: str = "localhost",
) -> Response:
    """One GET over TLS (Python's ssl, trusting ``ca`` only) on a new connection."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as s,
    ):
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        s.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data:  # (TLS 1.3: a refused client certificate shows after the handshake)
        raise ConnectionResetError("closed without a response")
    return parse_response(data)


class TlsBackend:
    """An HTTPS backend in this process (a thread): answers ``"<name> tls <path>\\n"``,
    records the SNI it was asked for and the client certificates it saw; with ``client_ca``
    it requires a client certificate issued by that CA."""

    def __init__(
        self,
        directory: Path,
        cert: tuple[x509.Certificate, rsa.RSAPrivateKey],
        name: str,
        *,
        client_ca: x509.Certificate | None = None,
        port: int = 0,
    ) -> None:
        self.name = name
        self.sni: list[str | None] = []
        self.paths: list[str] = []
        self.client_subjects: list[str] = []
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(pem(cert[0]))
        key_path.write_bytes(pkcs8(cert[1]))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        if client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=pem(client_ca).decode())
        ctx.sni_callback = lambda _obj, server_name, _ctx: self.sni.append(server_name)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.paths.append(self.path)
                peer = self.connection.getpeercert()  # type: ignore[attr-defined]
                if peer:
                    outer.client_subjects.append(dict(x[0] for x in peer["subject"])["commonName"])
                body = f"{name} tls {self.path}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def tls_backend(tmp_path: Path) -> Iterator[Callable[..., TlsBackend]]:
    """``tls_backend(cert, name, client_ca=None, port=0)``: a started :class:`TlsBackend`,
    stopped at teardown."""
    made: list[TlsBackend] = []

    def make(cert: tuple[x509.Certificate, rsa.RSAPrivateKey], name: str, **kw: Any) -> TlsBackend:
        made.append(TlsBackend(tmp_path / "tls-backends", cert, name, **kw))
        return made[-1]

    yield make
    for backend in made:
        backend.close()


def admin_json(proc: TurnoutProcess, path: str) -> Any:
    with urllib.request.urlopen(proc.admin_url + path, timeout=5) as r:
        return json.loads(r.read())


# ---------------------------------------------------------------------------------------------
# turnout check
# ---------------------------------------------------------------------------------------------


#: examples with routers whose kinds turnout does not provide (the ThriftMux interpreter):
#: ``turnout check`` refuses exactly those, each with the reason (known_plugins.NOT_PROVIDED);
#: their io.l5d.mesh routers are checked with the turnout-namerd-mesh plugin installed
PARTLY_PROVIDED: dict[str, set[str]] = {
    "namerd.yaml": {"io.l5d.namerd"},
    "namerd-tls.yaml": {"io.l5d.namerd"},
}


def test_every_linkerd_example_is_tested():
    assert sorted(p.name for p in LINKERD.glob("*.yaml")) == sorted([*EXAMPLES, *PARTLY_PROVIDED])


@pytest.mark.parametrize("example", sorted(PARTLY_PROVIDED))
def test_check_refuses_only_the_kinds_turnout_does_not_provide(example, pki, tmp_path):
    from turnout.known_plugins import NOT_PROVIDED

    ws = workspace(tmp_path / "ws", pki, example)
    result = turnout_check(LINKERD / example, cwd=ws)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and errors, result.stdout + result.stderr
    refused = set()
    for line in errors:
        assert "unknown interpreter kind '" in line, line
        kind = line.split("unknown interpreter kind '")[1].split("'")[0]
        assert NOT_PROVIDED[("interpreter", kind)] in line, line  # with the reason
        refused.add(kind)
    assert refused == PARTLY_PROVIDED[example]


@pytest.mark.parametrize("example", sorted(STARTED_BY_PLUGIN_TESTS))
def test_plugin_tests_start_the_example(example):
    """The examples started by a plugin's own tests: a test there reads this very file."""
    tests = ROOT / STARTED_BY_PLUGIN_TESTS[example]
    readers = [
        path
        for path in tests.glob("test_*.py")
        if f'"{example}"' in path.read_text() and "examples" in path.read_text()
    ]
    assert readers, f"no test in {tests} reads examples/linkerd/{example}"


@pytest.mark.parametrize("example", EXAMPLES)
def test_check_passes_without_not_implemented_warnings(example, pki, tmp_path):
    ws = workspace(tmp_path / "ws", pki, example)
    text = (LINKERD / example).read_text()
    path = LINKERD / example
    if localize(text, ws) != text:  # absolute /foo/ paths: check a copy naming ws/foo/
        path = tmp_path / example
        path.write_text(localize(text, ws))
    result = turnout_check(path, cwd=ws)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"{path.name}: OK (" in result.stdout, output
    known = KNOWN_WARNINGS.get(example)
    if known is not None:
        if known not in output:
            pytest.fail(f"turnout no longer warns {known!r}: remove it from KNOWN_WARNINGS")
        output = output.replace(known, "")
    assert "not implemented" not in output.lower(), output
    assert "ignored" not in output.lower(), output
    if known is not None:
        pytest.xfail(f"turnout warns: {known}")


@pytest.mark.parametrize("example", ["tls.yaml", "mutualTls.yaml"])
def test_unchanged_file_only_misses_the_certificates_under_foo(example, pki, tmp_path):
    """The absolute-path examples load unchanged: the only errors of the copy in
    examples/linkerd/ are its certificate files missing from /foo/."""
    if Path("/foo").exists():
        pytest.skip("/foo exists on this machine")
    ws = workspace(tmp_path / "ws", pki, example)
    result = turnout_check(LINKERD / example, cwd=ws)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and errors, result.stderr
    assert all("no such file: /foo/" in line for line in errors), result.stderr
    assert "not implemented" not in result.stderr + result.stdout


# ---------------------------------------------------------------------------------------------
# Started, with a request through each router
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",  # as in Linkerd's io.l5d.fs files (an IPv4 shorthand)
    ],
)
def test_servicemesh_outgoing_then_incoming_router(
    host, pki, tmp_path, turnout_process, recording_backend
):
    ws = workspace(tmp_path / "ws", pki, "servicemesh.yaml")
    cat = recording_backend(name="cat")
    config = runnable("servicemesh.yaml", ws)
    outgoing, incoming = config["routers"]
    # the outgoing router's io.l5d.port transformer names the incoming router's port
    incoming_port = incoming["servers"][0]["port"]
    outgoing["interpreter"]["transformers"][0]["port"] = incoming_port
    write_fs(
        ws, host, cat=cat.port, dog=cat.port, default=config["admin"]["port"], thrift=free_port()
    )
    proc = turnout_process(dump(config), cwd=ws)

    r = http_request(proc.port, headers={"Host": "cat"}, target="/meow", timeout=10)
    assert (r.status, r.text) == (200, "cat /meow\n"), (r, proc.log())
    [request] = cat.requests
    via = request.header("via") or ""
    assert via.count("turnout") == 2, via  # outgoing, then incoming
    # the outgoing router's client is the transformed id, /%/io.l5d.port/<port>/...
    metrics = admin_json(proc, "/admin/metrics.json")
    assert any(
        key.startswith(f"rt/outgoing/client/%/io.l5d.port/{incoming_port}/#/io.l5d.fs/cat/")
        for key in metrics
    ), sorted(k for k in metrics if k.startswith("rt/outgoing/client/"))
    assert any(
        key.startswith("rt/incoming/client/%/io.l5d.localhost/#/io.l5d.fs/cat/") for key in metrics
    ), sorted(k for k in metrics if k.startswith("rt/incoming/client/"))
    assert proc.stop() == 0


def test_tls_terminates_with_intermediate_chain_and_originates_per_service(
    pki, tmp_path, turnout_process, tls_backend
):
    ws = workspace(tmp_path / "ws", pki, "tls.yaml")
    cat = tls_backend(pki.leaf("cat"), "cat")
    config = runnable("tls.yaml", ws)
    write_fs(ws, cat=cat.port, dog=free_port(), default=config["admin"]["port"], thrift=free_port())
    proc = turnout_process(dump(config), cwd=ws)

    # the client trusts the root only: the router sends the intermediate (ca-chain.pem)
    r = https_request(proc.port, ws / "foo/caCert.pem", host="cat", target="/meow")
    assert (r.status, r.text) == (200, "cat tls /meow\n"), (r, proc.log())
    assert cat.sni == ["cat"]  # commonName "{service}"
    # plain HTTP to the TLS server is not served
    with pytest.raises((ValueError, OSError)):
        http_request(proc.port, headers={"Host": "cat"}, timeout=5)
    assert cat.paths == ["/meow"]
    assert proc.stop() == 0


def test_mutual_tls_requires_a_client_certificate_and_presents_one(
    pki, tmp_path, turnout_process, tls_backend
):
    ws = workspace(tmp_path / "ws", pki, "mutualTls.yaml")
    # the endpoint is "foo" (client tls.commonName) and requires a client certificate from the
    # root; the router's (clientCert.pem) is issued by the intermediate it sends along
    backend = tls_backend(pki.leaf("foo"), "foo", client_ca=pki.root)
    config = runnable("mutualTls.yaml", ws)
    write_fs(
        ws, cat=backend.port, dog=free_port(), default=config["admin"]["port"], thrift=free_port()
    )
    proc = turnout_process(dump(config), cwd=ws)
    app_cert, app_key = pki.leaf("app")
    (tmp_path / "app.crt").write_bytes(pem(app_cert))
    (tmp_path / "app.key").write_bytes(pkcs8(app_key))
    ca = ws / "foo/cacert.pem"

    r = https_request(
        proc.port, ca, host="cat", target="/a", cert=(tmp_path / "app.crt", tmp_path / "app.key")
    )
    assert (r.status, r.text) == (200, "foo tls /a\n"), (r, proc.log())
    assert backend.sni == ["foo"]
    assert backend.client_subjects == ["linkerd"]  # the router's clientAuth certificate
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_request(proc.port, ca, host="cat", target="/b")  # no client certificate
    assert backend.paths == ["/a"]
    assert proc.stop() == 0


def test_disable_tls_plain_for_localhost_tls_for_other_hosts(
    pki, tmp_path, turnout_process, recording_backend, tls_backend
):
    ws = workspace(tmp_path / "ws", pki, "disable-tls.yaml")
    bar = recording_backend(name="bar")
    secure = tls_backend(pki.leaf("127.0.0.1"), "secure")
    config = runnable("disable-tls.yaml", ws)
    router = config["routers"][0]
    assert "/$/inet/localhost/7777" in router["dtab"]
    router["dtab"] = router["dtab"].replace("7777", str(bar.port))
    proc = turnout_process(dump(config), cwd=ws, env=trust_root(ws))

    # /svc/bar => /$/inet/localhost/<port>: "tls: enabled: false" for /$/inet/localhost
    r = http_request(proc.port, headers={"Host": "bar"}, target="/x", timeout=10)
    assert (r.status, r.text) == (200, "bar /x\n"), (r, proc.log())
    # any other /$/inet/{service} is TLS with commonName {service} (here 127.0.0.1, not
    # www.google.com: the request's l5d-dtab sends /svc/foo to the local TLS backend)
    dtab = f"/svc/foo => /$/inet/127.0.0.1/{secure.port}"
    r = http_request(proc.port, headers={"Host": "foo", "l5d-dtab": dtab}, target="/y", timeout=10)
    assert (r.status, r.text) == (200, "secure tls /y\n"), (r, proc.log())
    assert secure.sni == [None]  # (no SNI for an IP address; the IP is what is verified)
    assert proc.stop() == 0


def test_client_options_per_prefix_with_tls_for_every_fs_name(
    pki, tmp_path, turnout_process, tls_backend
):
    ws = workspace(tmp_path / "ws", pki, "client-options.yaml")
    # "/#/*/{service}" gives every io.l5d.fs client TLS with commonName {service}.linkerd.io
    animals = tls_backend(pki.leaf("animals", "cat.linkerd.io", "dog.linkerd.io"), "animals")
    config = runnable("client-options.yaml", ws)
    write_fs(
        ws, cat=animals.port, dog=animals.port, default=config["admin"]["port"], thrift=free_port()
    )
    proc = turnout_process(dump(config), cwd=ws, env=trust_root(ws))

    for service in ("cat", "dog"):
        r = http_request(proc.port, headers={"Host": service}, target=f"/{service}", timeout=10)
        assert (r.status, r.text) == (200, f"animals tls /{service}\n"), (r, proc.log())
    assert animals.sni == ["cat.linkerd.io", "dog.linkerd.io"]
    assert proc.stop() == 0


def test_proxy_routes_by_host_and_port(pki, tmp_path, turnout_process, recording_backend):
    ws = workspace(tmp_path / "ws", pki, "proxy.yaml")
    web = recording_backend(name="web")
    proc = turnout_process(dump(runnable("proxy.yaml", ws)), cwd=ws)

    host = f"127.0.0.1:{web.port}"
    r = http_request(proc.port, headers={"Host": host}, target=f"http://{host}/hello", timeout=10)
    assert (r.status, r.text) == (200, "web /hello\n"), (r, proc.log())  # (origin-form)
    r = http_request(proc.port, headers={"Host": host}, target="/again", timeout=10)
    assert (r.status, r.text) == (200, "web /again\n"), (r, proc.log())
    assert proc.stop() == 0


def test_proxy_speaks_https_to_port_443(pki, tmp_path, turnout_process, tls_backend):
    """``Host: localhost:443`` is ``/$/io.buoyant.rinet/443/localhost``: TLS with commonName
    ``localhost`` (needs 127.0.0.1:443 free)."""
    if port_open("127.0.0.1", 443):
        pytest.skip("127.0.0.1:443 is in use")
    ws = workspace(tmp_path / "ws", pki, "proxy.yaml")
    try:
        secure = tls_backend(pki.leaf("localhost", "localhost", "127.0.0.1"), "web", port=443)
    except OSError as e:  # (not allowed, or taken meanwhile)
        pytest.skip(f"cannot listen on 127.0.0.1:443: {e}")
    proc = turnout_process(dump(runnable("proxy.yaml", ws)), cwd=ws, env=trust_root(ws))

    r = http_request(proc.port, headers={"Host": "localhost:443"}, target="/s", timeout=10)
    assert (r.status, r.text) == (200, "web tls /s\n"), (r, proc.log())
    assert secure.sni == ["localhost"]
    assert proc.stop() == 0


class TlsAdminTurnout(TurnoutProcess):
    """A turnout whose admin serves TLS only: ready when ``/admin/ping`` answers over TLS."""

    ca: Path

    def _ping(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        url = f"https://localhost:{self.admin_port}/admin/ping"
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False


def test_admin_tls_serves_the_admin_over_tls_only(pki, tmp_path):
    ws = workspace(tmp_path / "ws", pki, "admin-tls.yaml")
    config = runnable("admin-tls.yaml", ws)
    admin_port = config["admin"]["port"]
    router = config["routers"][0]
    assert "/$/inet/127.1/9990" in router["dtab"]
    router["dtab"] = router["dtab"].replace("9990", str(admin_port))
    proc = TlsAdminTurnout(dump(config), workdir=tmp_path / "turnout", cwd=ws)
    proc.ca = ws / FINAGLE / "cacert.pem"
    try:
        proc.start()
        ctx = ssl.create_default_context(cafile=str(proc.ca))
        admin = f"https://localhost:{admin_port}"
        with urllib.request.urlopen(f"{admin}/admin/ping", context=ctx, timeout=5) as r:
            assert r.read() == b"pong"
        # plain HTTP gets no answer from the admin
        with pytest.raises((ValueError, OSError)):
            http_request(admin_port, headers={"Host": "localhost"}, target="/admin/ping")
        # the router "linkerd-admin" sends every name to the admin, in plain text (as
        # Linkerd's would): the TLS admin does not answer it, and the router says so
        r = http_request(proc.port, headers={"Host": "admin"}, target="/admin/ping", timeout=15)
        assert r.status == 502, (r, proc.log())
        assert "connection closed" in (r.header("l5d-err") or ""), r
        # ...and the recentRequests telemeter (sampleRate 1.0) recorded it
        with urllib.request.urlopen(f"{admin}/requests.json", context=ctx, timeout=5) as r:
            recent = json.loads(r.read())
        assert "/admin/ping" in json.dumps(recent), recent
        assert proc.stop() == 0
    finally:
        proc.kill()


@pytest.fixture
def zookeeper(tmp_path: Path) -> Iterator[Any]:
    zk_testing = pytest.importorskip("turnout_namer_zk.testing")
    if not all(os.path.exists(jar) for jar in zk_testing.CLASSPATH.split(":")):
        pytest.skip(f"needs ZooKeeper's jars ({zk_testing.CLASSPATH}; ./dev test installs them)")
    server = zk_testing.ZooKeeperServer(workdir=tmp_path / "zookeeper")
    try:
        yield server.start()
    finally:
        server.cleanup()


def test_serversets_discovers_and_announces_through_zookeeper(
    zookeeper, pki, tmp_path, turnout_process, recording_backend, tls_backend
):
    from kazoo.client import KazooClient
    from turnout_namer_zk.testing import member_json, register

    ws = workspace(tmp_path / "ws", pki, "serversets.yaml")
    plain = recording_backend(name="example2")
    secure = tls_backend(pki.leaf("www.example.com"), "example")
    config = runnable("serversets.yaml", ws)
    router = config["routers"][0]
    for zk_config in (config["namers"][0], router["announcers"][0]):
        assert zk_config["zkAddrs"] == [{"host": "127.0.0.1", "port": 2181}]
        zk_config["zkAddrs"] = zookeeper.zk_addrs()
    port = router["servers"][0]["port"]

    client = KazooClient(hosts=zookeeper.hosts, timeout=10)
    client.start(timeout=20)
    try:
        register(client, "/discovery/prod/www/example2", member_json(plain.port))
        register(
            client,
            "/discovery/prod/www/example",
            member_json(free_port(), endpoints={"https": secure.port}),
        )
        proc = turnout_process(dump(config), cwd=ws, env=trust_root(ws))

        # the server announces itself at /discovery/prod/foobar
        def announced() -> list[dict[str, Any]]:
            path = "/discovery/prod/foobar"
            if not client.exists(path):
                return []
            return [json.loads(client.get(f"{path}/{c}")[0]) for c in client.get_children(path)]

        assert wait_until(announced, timeout=10), proc.log()
        [member] = announced()
        assert member["serviceEndpoint"] == {"host": "127.0.0.1", "port": port}

        # the /svc/1.1 rule wants Linkerd's old methodAndHost names (/svc/1.1/GET/<host>);
        # with the default identifier (Host) a per-request dtab entry maps to them
        for host, expected in (
            ("www.example2.com", "example2 /p\n"),
            ("www.example.com", "example tls /p\n"),  # the :https endpoint, commonName
        ):
            dtab = f"/svc/{host} => /svc/1.1/GET/{host}"
            r = http_request(
                proc.port, headers={"Host": host, "l5d-dtab": dtab}, target="/p", timeout=10
            )
            assert (r.status, r.text) == (200, expected), (host, r, proc.log())
        assert secure.sni == ["www.example.com"]  # "{role}.{service}.com"
        assert proc.stop() == 0
        assert wait_until(lambda: not announced(), timeout=5)
    finally:
        client.stop()
        client.close()
