"""TLS end to end: servers (curl, openssl s_client, Python ssl), mTLS, client TLS to TLS
backends with commonName captures and ``enabled: false``, disableValidation, forwardClientCert,
certificate rotation under load, the admin over TLS."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


class Pki:
    def __init__(self, root: Path, name: str = "ca") -> None:
        self.root = root
        self.name = name
        self.ca = trustme.CA(organization_name=name)
        self.ca_path = str(root / f"{name}.pem")
        self.ca.cert_pem.write_to_path(self.ca_path)

    def leaf(self, *hosts: str, stem: str, pkcs1: bool = False) -> tuple[str, str]:
        cert = self.ca.issue_cert(*hosts)
        cert_path, key_path = self.root / f"{stem}.crt", self.root / f"{stem}.key"
        cert_path.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        fmt = serialization.PrivateFormat
        key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                fmt.TraditionalOpenSSL if pkcs1 else fmt.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return str(cert_path), str(key_path)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def https_get(
    port: int,
    ca: str,
    *,
    host: str = "web",
    cert: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    server_name: str = "localhost",
) -> tuple[int, bytes, bytes]:
    """(status, body, DER of the server certificate) over Python's ssl."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    if cert is not None:
        ctx.load_cert_chain(*cert)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as s,
    ):
        assert s.selected_alpn_protocol() == "http/1.1"
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        if not data:  # (TLS 1.3: a refused client certificate shows after the handshake)
            raise ConnectionResetError("closed without a response")
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body, s.getpeercert(binary_form=True)


def metrics(proxy: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=5) as r:
        return json.loads(r.read())


def server_metric(proxy: Any, name: str) -> int:
    for key, value in metrics(proxy).items():
        if key.startswith("rt/http/server/") and key.endswith(name):
            return int(value)
    return 0


# -- servers -----------------------------------------------------------------------------------


@needs_curl
def test_server_tls_with_curl_pkcs1_key_and_intermediate_chain(
    http_proxy, disco_dir, recording_backend, tmp_path
):
    root = trustme.CA()
    inter = root.create_child_ca()
    leaf = inter.issue_cert("localhost")
    (tmp_path / "root.pem").write_bytes(root.cert_pem.bytes())
    (tmp_path / "leaf.crt").write_bytes(leaf.cert_chain_pems[0].bytes())
    (tmp_path / "inter.crt").write_bytes(inter.cert_pem.bytes())
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    (tmp_path / "leaf.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1 / SEC1
            serialization.NoEncryption(),
        )
    )
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = http_proxy(
        server={
            "tls": {
                "certPath": str(tmp_path / "leaf.crt"),
                "keyPath": str(tmp_path / "leaf.key"),
                "intermediateCertsPath": str(tmp_path / "inter.crt"),
            }
        }
    )
    out = subprocess.run(
        ["curl", "-sv", "--cacert", str(tmp_path / "root.pem"), "-H", "Host: web",
         f"https://localhost:{proxy.port}/hello"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "web /hello\n"
    assert "http/1.1" in [
        line.split()[-1] for line in out.stderr.splitlines() if "ALPN" in line and "accept" in line
    ]
    # plain HTTP to the TLS port gets no HTTP answer, and reaches no backend
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        s.settimeout(5)
        try:
            reply = s.recv(100)
        except OSError:
            reply = b""
    assert not reply.startswith(b"HTTP/1.1 2")
    assert backend.request_count == 1
    if shutil.which("openssl"):
        s_client = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{proxy.port}", "-alpn", "http/1.1",
             "-CAfile", str(tmp_path / "root.pem"), "-servername", "localhost"],
            input="", capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert "ALPN protocol: http/1.1" in s_client.stdout
        assert "Verify return code: 0 (ok)" in s_client.stdout


def test_mtls_refuses_clients_without_a_good_certificate_and_forwards_identity(
    http_proxy, disco_dir, recording_backend, pki, tmp_path
):
    cert, key = pki.leaf("localhost", stem="server")
    good = pki.leaf("client.example", stem="client")
    other = Pki(tmp_path, "other").leaf("client.example", stem="stranger")
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = http_proxy(
        server={
            "tls": {
                "certPath": cert,
                "keyPath": key,
                "caCertPath": pki.ca_path,
                "requireClientAuth": True,
            }
        },
        router={"client": {"forwardClientCert": True}},
    )
    for client_cert in (None, other):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_get(proxy.port, pki.ca_path, cert=client_cert)
    if shutil.which("curl"):
        out = subprocess.run(
            ["curl", "-s", "--cacert", pki.ca_path, "-H", "Host: web",
             f"https://localhost:{proxy.port}/"],
            capture_output=True, timeout=20,
        )  # fmt: skip
        assert out.returncode != 0
    assert backend.request_count == 0 and backend.bytes_received == 0
    deadline = time.monotonic() + 5
    while server_metric(proxy, "tls/handshake_failures") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server_metric(proxy, "tls/handshake_failures") >= 2
    assert proxy.log().count("TLS handshake with 127.0.0.1") == 1  # once per peer per minute

    forged = 'Hash=00;SAN=admin.example;Subject="CN=admin"'
    status, _, _ = https_get(
        proxy.port, pki.ca_path, cert=good, headers={"X-Forwarded-Client-Cert": forged}
    )
    assert status == 200
    [req] = backend.requests
    values = req.header_all("x-forwarded-client-cert")
    assert len(values) == 1 and values[0] != forged
    assert values[0].startswith("Hash=")
    assert ";SAN=client.example;" in values[0]
    assert values[0].endswith('"') and 'Subject="' in values[0]


def test_forged_client_cert_header_is_removed_without_tls(http_proxy, disco_dir, recording_backend):
    from turnout.testing import http_request

    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = http_proxy(router={"client": {"forwardClientCert": True}})
    r = http_request(proxy.port, headers={"Host": "web", "x-forwarded-client-cert": "Hash=1"})
    assert r.status == 200
    assert backend.requests[0].header("x-forwarded-client-cert") is None


# -- clients -----------------------------------------------------------------------------------


class TlsBackend:
    """A Python HTTPS server recording the SNI and the requests it answers."""

    def __init__(self, cert: tuple[str, str], name: str) -> None:
        self.sni: list[str | None] = []
        self.paths: list[str] = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        ctx.sni_callback = lambda _obj, server_name, _ctx: self.sni.append(server_name)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.paths.append(self.path)
                body = f"{name} tls {self.path}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls_backend():
    made: list[TlsBackend] = []

    def make(cert: tuple[str, str], name: str) -> TlsBackend:
        made.append(TlsBackend(cert, name))
        return made[-1]

    yield make
    for b in made:
        b.close()


def test_client_tls_with_common_name_captures_and_enabled_false(
    http_proxy, disco_dir, recording_backend, tls_backend, pki
):
    secure = tls_backend(pki.leaf("web.example", stem="web"), "web")
    disco_dir.write("web", f"127.0.0.1 {secure.port}")
    plain = recording_backend(name="plain")
    disco_dir.write("plain", plain)
    proxy = http_proxy(
        router={
            "client": {
                "kind": "io.l5d.static",
                "configs": [
                    {
                        "prefix": "/#/io.l5d.fs/{service}",
                        "tls": {"commonName": "{service}.example", "trustCertsBundle": pki.ca_path},
                    },
                    {"prefix": "/#/io.l5d.fs/plain", "tls": {"enabled": False}},
                ],
            }
        }
    )
    from turnout.testing import http_request

    r = http_request(proxy.port, headers={"Host": "web"}, target="/a")
    assert (r.status, r.text) == (200, "web tls /a\n")
    assert secure.sni == ["web.example"]
    r = http_request(proxy.port, headers={"Host": "plain"}, target="/b")
    assert (r.status, r.text) == (200, "plain /b\n")
    # a certificate for another name is refused: 502, nothing sent in plain text
    disco_dir.write("plain", f"127.0.0.1 {secure.port}")
    disco_dir.write("other", f"127.0.0.1 {secure.port}")
    r = http_request(proxy.port, headers={"Host": "other"}, target="/c")
    assert r.status == 502
    assert "/c" not in secure.paths


def test_disable_validation_warns_loudly_and_connects(http_proxy, disco_dir, tls_backend, pki):
    secure = tls_backend(Pki(pki.root, "untrusted").leaf("web.example", stem="u"), "web")
    disco_dir.write("web", f"127.0.0.1 {secure.port}")
    proxy = http_proxy(router={"client": {"tls": {"disableValidation": True}}})
    from turnout.testing import http_request

    r = http_request(proxy.port, headers={"Host": "web"})
    assert (r.status, r.text) == (200, "web tls /\n")
    assert "INSECURE" in proxy.log() and "disableValidation" in proxy.log()


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_new_handshakes_get_the_new_certificate_without_failures(
    http_proxy, disco_dir, recording_backend, pki
):
    cert, key = pki.leaf("localhost", stem="one")
    new_cert, new_key = pki.leaf("localhost", stem="two")
    backend = recording_backend(name="web")
    disco_dir.write("web", backend)
    proxy = http_proxy(server={"tls": {"certPath": cert, "keyPath": key}})
    first = https_get(proxy.port, pki.ca_path)[2]
    # replace the key first, then the certificate (a moment where they do not match)
    Path(key).write_bytes(Path(new_key).read_bytes())
    time.sleep(0.2)
    Path(cert).write_bytes(Path(new_cert).read_bytes())
    expected = ssl.PEM_cert_to_DER_cert(Path(new_cert).read_text())
    deadline = time.monotonic() + 20
    seen = first
    requests = 0
    while seen != expected and time.monotonic() < deadline:
        status, _, seen = https_get(proxy.port, pki.ca_path)
        assert status == 200
        requests += 1
        time.sleep(0.05)
    assert seen == expected != first
    assert requests > 1
    assert server_metric(proxy, "tls/reloads") == 1
    # (a poll may have caught the key without its certificate: a reload failure, old pair kept)
    assert server_metric(proxy, "tls/reload_failures") <= 1


# -- admin -------------------------------------------------------------------------------------


def test_admin_over_tls(http_proxy, disco_dir, pki, tmp_path):
    cert, key = pki.leaf("localhost", stem="admin")
    import yaml
    from turnout.testing import TurnoutProcess, free_port

    admin_port = free_port()
    config = {
        "admin": {"port": admin_port, "tls": {"certPath": cert, "keyPath": key}},
        "routers": [{"protocol": "http", "servers": [{"port": free_port()}]}],
    }
    text = yaml.safe_dump(config)
    proc = TurnoutProcess(text, workdir=tmp_path / "t")
    proc._ping = lambda: _https_ok(admin_port, pki.ca_path)  # type: ignore[method-assign]
    with proc.start():
        assert _https_ok(admin_port, pki.ca_path)
        ctx = ssl.create_default_context(cafile=pki.ca_path)
        url = f"https://localhost:{admin_port}/admin/ping"
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            assert r.read() == b"pong"
        # rotation: the admin server presents the new certificate without a restart
        first = _admin_cert(admin_port, pki.ca_path)
        new_cert, new_key = pki.leaf("localhost", stem="admin2")
        Path(key).write_bytes(Path(new_key).read_bytes())
        Path(cert).write_bytes(Path(new_cert).read_bytes())
        expected = ssl.PEM_cert_to_DER_cert(Path(new_cert).read_text())
        deadline = time.monotonic() + 20
        seen = first
        while seen != expected and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = _admin_cert(admin_port, pki.ca_path)
        assert seen == expected != first
        with urllib.request.urlopen(
            f"https://localhost:{admin_port}/admin/metrics.json", context=ctx, timeout=5
        ) as r:
            metrics = json.loads(r.read())
        assert metrics["admin/tls/reloads"] == 1


def _admin_cert(port: int, ca: str) -> bytes:
    ctx = ssl.create_default_context(cafile=ca)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


def _https_ok(port: int, ca: str) -> bool:
    ctx = ssl.create_default_context(cafile=ca)
    try:
        url = f"https://localhost:{port}/admin/ping"
        with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
