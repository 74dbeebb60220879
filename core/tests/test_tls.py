"""turnout.tls: contexts for servers and clients, config-time checks reported with their
location, rotation of certificate files."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from turnout import tls
from turnout.config.model import ClientTlsConfig, LinkerConfig, TlsServerConfig
from turnout.metrics import Counter
from turnout.testing.config import plugin_registry, read_entry

REGISTRY = plugin_registry()


class Pki:
    """A CA and files in ``root``."""

    def __init__(self, root: Path, name: str = "ca") -> None:
        self.root = root
        self.ca = trustme.CA(organization_name=name)
        self.ca_path = root / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self.name = name

    def leaf(self, *hosts: str, stem: str = "leaf", pkcs1: bool = False, **kw) -> tuple[str, str]:
        cert = self.ca.issue_cert(*(hosts or ("svc.example",)), **kw)
        cert_path = self.root / f"{self.name}-{stem}.crt"
        key_path = self.root / f"{self.name}-{stem}.key"
        cert_path.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        key_pem = cert.private_key_pem.bytes()
        fmt = serialization.PrivateFormat
        key_pem = serialization.load_pem_private_key(key_pem, None).private_bytes(
            serialization.Encoding.PEM,
            fmt.TraditionalOpenSSL if pkcs1 else fmt.PKCS8,
            serialization.NoEncryption(),
        )
        key_path.write_bytes(key_pem)
        return str(cert_path), str(key_path)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def server_cfg(**kw) -> TlsServerConfig:
    return TlsServerConfig(**kw)


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, name: str) -> ssl.SSLObject:
    """A TLS handshake over memory BIOs; returns the client's SSLObject."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = [False, False]
    for _ in range(20):
        for i, (obj, out, peer_in) in enumerate(((client, c_out, s_in), (server, s_out, c_in))):
            if not done[i]:
                try:
                    obj.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
            data = out.read()
            if data:
                peer_in.write(data)
        if all(done):
            return client
    raise AssertionError("no handshake")


# -- contexts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pkcs1", [False, True], ids=["pkcs8", "pkcs1"])
def test_server_context_with_pkcs8_and_pkcs1_keys(pki: Pki, pkcs1: bool) -> None:
    cert, key = pki.leaf(pkcs1=pkcs1)
    pem = Path(key).read_bytes()
    if pkcs1:  # (the "traditional" format: PKCS#1 for RSA, SEC1 for EC keys)
        assert b"BEGIN RSA PRIVATE KEY" in pem or b"BEGIN EC PRIVATE KEY" in pem
    else:
        assert b"BEGIN PRIVATE KEY" in pem
    assert list(tls.check_server(server_cfg(cert_path=cert, key_path=key))) == []
    ctx = tls.server_context(server_cfg(cert_path=cert, key_path=key))
    client = ssl.create_default_context(cafile=str(pki.ca_path))
    client.set_alpn_protocols(["h2", "http/1.1"])
    obj = handshake(ctx, client, "svc.example")
    assert obj.selected_alpn_protocol() == "http/1.1"


def test_intermediate_certs_are_sent(tmp_path: Path) -> None:
    root = trustme.CA()
    inter = root.create_child_ca()
    leaf = inter.issue_cert("svc.example")
    cert, key, chain = tmp_path / "leaf.crt", tmp_path / "leaf.key", tmp_path / "inter.crt"
    cert.write_bytes(leaf.cert_chain_pems[0].bytes())
    key.write_bytes(leaf.private_key_pem.bytes())
    chain.write_bytes(inter.cert_pem.bytes())
    cfg = server_cfg(cert_path=str(cert), key_path=str(key), intermediate_certs_path=str(chain))
    assert list(tls.check_server(cfg)) == []
    client = ssl.create_default_context()
    root.configure_trust(client)  # trusts the root only: the intermediate must come from us
    handshake(tls.server_context(cfg), client, "svc.example")
    # without it, the client cannot build the chain
    bare = tls.server_context(server_cfg(cert_path=str(cert), key_path=str(key)))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(bare, client, "svc.example")


def test_protocols_and_ciphers(pki: Pki) -> None:
    cert, key = pki.leaf()
    ctx = tls.server_context(
        server_cfg(cert_path=cert, key_path=key, protocols=["TLSv1.2"], ciphers=["ECDHE+AESGCM"])
    )
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    client = ssl.create_default_context(cafile=str(pki.ca_path))
    assert handshake(ctx, client, "svc.example").version() == "TLSv1.2"


def test_require_client_auth(pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.leaf()
    cfg = server_cfg(
        cert_path=cert, key_path=key, ca_cert_path=str(pki.ca_path), require_client_auth=True
    )
    ctx = tls.server_context(cfg)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    optional = server_cfg(cert_path=cert, key_path=key, ca_cert_path=str(pki.ca_path))
    assert tls.server_context(optional).verify_mode == ssl.CERT_OPTIONAL
    # a client with a certificate of this CA
    ccert, ckey = pki.leaf("client.example", stem="client")
    client = tls.new_client_context(
        ClientTlsConfig(
            common_name="svc.example",
            trust_certs=[str(pki.ca_path)],
            client_auth={"certPath": ccert, "keyPath": ckey},
        )
    )
    handshake(ctx, client, "svc.example")
    # ... and one without: refused (TLS 1.3 reports it to the server during the handshake)
    bare = ssl.create_default_context(cafile=str(pki.ca_path))
    with pytest.raises(ssl.SSLError):
        handshake(ctx, bare, "svc.example")


def test_client_context_common_name_captures_and_enabled(pki: Pki) -> None:
    cfg = ClientTlsConfig(common_name="{service}.example", trust_certs_bundle=str(pki.ca_path))
    made = tls.client_tls(cfg, {"service": "web"})
    assert made is not None and made.server_hostname == "web.example"
    assert made.kwargs()["server_hostname"] == "web.example"
    assert tls.client_tls(cfg, {"service": "web"}) is made  # cached
    assert tls.render_common_name("{a}-{b}.{c}", {"a": "x", "b": "y"}) == "x-y.{c}"
    assert tls.client_tls(ClientTlsConfig(enabled=False), {}) is None
    assert tls.client_tls(None, {}) is None
    insecure = tls.new_client_context(ClientTlsConfig(disable_validation=True))
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname


# -- config errors, located ----------------------------------------------------------------------


def problems(base: type, text: str) -> list[str]:
    _, found = read_entry(REGISTRY, base, text)
    return [str(p) for p in found]


def one(base: type, text: str) -> str:
    found = problems(base, text)
    assert len(found) == 1, found
    return found[0]


def test_missing_file_is_located(pki: Pki, tmp_path: Path) -> None:
    _, key = pki.leaf()
    msg = one(TlsServerConfig, f"certPath: {tmp_path}/nope.crt\nkeyPath: {key}\n")
    assert msg.startswith("config.yaml:1:11: certPath: no such file: ") and "nope.crt" in msg


def test_unreadable_file(pki: Pki, tmp_path: Path) -> None:
    cert, _ = pki.leaf()
    msg = one(TlsServerConfig, f"certPath: {cert}\nkeyPath: {tmp_path}\n")
    assert msg.startswith("config.yaml:2:10: keyPath:") and "is a directory" in msg


def test_mismatched_key(pki: Pki) -> None:
    cert, _ = pki.leaf(stem="a")
    _, other_key = pki.leaf(stem="b")
    msg = one(TlsServerConfig, f"certPath: {cert}\nkeyPath: {other_key}\n")
    assert msg.startswith("config.yaml:2:10: keyPath: the key in ")
    assert "does not match the certificate" in msg


def test_expired_and_not_yet_valid(pki: Pki) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert, key = pki.leaf(stem="old", not_before=past, not_after=past + datetime.timedelta(days=1))
    msg = one(TlsServerConfig, f"certPath: {cert}\nkeyPath: {key}\n")
    assert msg.startswith("config.yaml:1:11: certPath: the certificate ")
    assert "expired on 2020-01-02" in msg
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    cert, key = pki.leaf(stem="new", not_before=future, not_after=future + datetime.timedelta(1))
    assert "is not valid before" in one(TlsServerConfig, f"certPath: {cert}\nkeyPath: {key}\n")


def test_intermediate_that_does_not_verify_the_chain(tmp_path: Path) -> None:
    root = trustme.CA()
    leaf = root.create_child_ca().issue_cert("svc.example")
    stranger = trustme.CA().create_child_ca()
    (tmp_path / "c").write_bytes(leaf.cert_chain_pems[0].bytes())
    (tmp_path / "k").write_bytes(leaf.private_key_pem.bytes())
    (tmp_path / "i").write_bytes(stranger.cert_pem.bytes())
    msg = one(
        TlsServerConfig,
        f"certPath: {tmp_path}/c\nkeyPath: {tmp_path}/k\nintermediateCertsPath: {tmp_path}/i\n",
    )
    assert msg.startswith("config.yaml:3:24: intermediateCertsPath: the chain does not verify")


def test_bad_ca_file(pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.leaf()
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    text = f"certPath: {cert}\nkeyPath: {key}\ncaCertPath: {tmp_path}/junk.pem\n"
    msg = one(TlsServerConfig, text)
    assert msg.startswith("config.yaml:3:13: caCertPath: ") and "holds no PEM certificate" in msg


def test_bad_protocol_and_ciphers(pki: Pki) -> None:
    cert, key = pki.leaf()
    msg = one(TlsServerConfig, f"certPath: {cert}\nkeyPath: {key}\nprotocols: [TLSv1.2, SSLv3]\n")
    assert msg.startswith("config.yaml:3:12: protocols: unknown TLS protocol 'SSLv3'")
    msg = one(TlsServerConfig, f"certPath: {cert}\nkeyPath: {key}\nciphers: [NOT-A-CIPHER]\n")
    assert msg.startswith("config.yaml:3:10: ciphers: OpenSSL accepts none of the ciphers")


def test_require_client_auth_needs_a_ca(pki: Pki) -> None:
    cert, key = pki.leaf()
    msg = one(TlsServerConfig, f"certPath: {cert}\nkeyPath: {key}\nrequireClientAuth: true\n")
    assert "requireClientAuth needs caCertPath" in msg


def test_client_config_errors(pki: Pki, tmp_path: Path) -> None:
    assert "commonName is required" in one(ClientTlsConfig, "trustCerts: []\n")
    assert problems(ClientTlsConfig, "enabled: false\n") == []
    assert problems(ClientTlsConfig, "disableValidation: true\n") == []
    cert, key = pki.leaf()
    msg = one(
        ClientTlsConfig,
        f"disableValidation: true\nclientAuth: {{certPath: {cert}, keyPath: {key}}}\n",
    )
    assert "disableValidation is incompatible with clientAuth" in msg
    msg = one(ClientTlsConfig, f"commonName: x\ntrustCerts: [{tmp_path}/none.pem]\n")
    assert msg.startswith("config.yaml:2:") and "no such file" in msg
    _, other = pki.leaf(stem="other")
    text = f"commonName: x\nclientAuth: {{certPath: {cert}, keyPath: {other}}}\n"
    msg = one(ClientTlsConfig, text)
    assert "clientAuth: the key in" in msg


def test_turnout_check_and_run_refuse_a_bad_tls_config(pki: Pki, tmp_path: Path) -> None:
    cert, _ = pki.leaf(stem="a")
    _, wrong = pki.leaf(stem="b")
    config = tmp_path / "linkerd.yaml"
    config.write_text(
        "admin: {port: 0}\nrouters:\n- protocol: http\n  servers:\n  - port: 0\n"
        f"    tls: {{certPath: {cert}, keyPath: {wrong}}}\n"
    )
    for command in ("check", "run"):
        out = subprocess.run(
            [sys.executable, "-m", "turnout", command, str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0, (command, out)
        assert f"{config}:6:" in out.stderr and "does not match the certificate" in out.stderr


def test_insecure_warnings(tmp_path: Path) -> None:
    from turnout.config.loader import load_text

    text = (
        "routers:\n- protocol: http\n  servers: [{port: 4140}]\n"
        "  client: {tls: {disableValidation: true}}\n"
    )
    from turnout.plugin_manager import load_plugins

    registry = load_plugins().registry
    if registry.config_class("router", "http") is None:
        pytest.skip("needs the http plugin")
    loaded = load_text(text, registry=registry)
    assert isinstance(loaded.config, LinkerConfig)
    (warning,) = tls.insecure_warnings(loaded.config)
    assert "disableValidation" in warning and "NOT verified" in warning


# -- rotation ------------------------------------------------------------------------------------


def test_file_watcher_reloads_and_keeps_the_old_pair_on_errors(pki: Pki) -> None:
    cert, key = pki.leaf(stem="one")
    installed: list[object] = []
    reloads, failures = Counter(), Counter()
    watcher = tls.FileWatcher(
        "test", [cert, key], lambda: "new", installed.append, reloads, failures, 0.01
    )
    assert not watcher.poll()
    # a key that does not match (the certificate was replaced first): kept, counted once
    new_cert, new_key = pki.leaf(stem="two")
    Path(cert).write_bytes(Path(new_cert).read_bytes())
    assert not watcher.poll() and not watcher.poll()
    assert (reloads.value, failures.value, installed) == (0, 1, [])
    Path(key).write_bytes(Path(new_key).read_bytes())
    assert watcher.poll()
    assert (reloads.value, failures.value, installed) == (1, 1, ["new"])
    assert not watcher.poll()


def test_reloading_the_same_context_changes_new_handshakes(pki: Pki) -> None:
    """OpenSSL lets load_cert_chain run on a context in use: new handshakes get the new
    certificate (what the admin server relies on; HTTP servers swap contexts instead)."""
    cert, key = pki.leaf("svc.example", stem="one")
    ctx = tls.server_context(server_cfg(cert_path=cert, key_path=key))
    client = ssl.create_default_context(cafile=str(pki.ca_path))
    first = handshake(ctx, client, "svc.example").getpeercert(binary_form=True)
    cert2, key2 = pki.leaf("svc.example", stem="two")
    ctx.load_cert_chain(cert2, key2)
    second = handshake(ctx, client, "svc.example").getpeercert(binary_form=True)
    assert first != second and second == ssl.PEM_cert_to_DER_cert(Path(cert2).read_text())


def test_asyncio_server_handshake(pki: Pki) -> None:
    """A real socket: turnout's server context with Python's client (ALPN http/1.1)."""
    cert, key = pki.leaf("localhost")
    ctx = tls.server_context(server_cfg(cert_path=cert, key_path=key))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]

    def serve() -> None:
        conn, _ = sock.accept()
        with ctx.wrap_socket(conn, server_side=True) as s:
            s.sendall(s.recv(10))

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    async def talk() -> tuple[bytes, str | None]:
        client = ssl.create_default_context(cafile=str(pki.ca_path))
        client.set_alpn_protocols(["http/1.1"])
        r, w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        w.write(b"ping")
        data = await r.readexactly(4)
        alpn = w.get_extra_info("ssl_object").selected_alpn_protocol()
        w.close()
        return data, alpn

    assert asyncio.run(talk()) == (b"ping", "http/1.1")
    t.join(5)
    sock.close()


def test_client_contexts_follow_their_files(pki: Pki, tmp_path: Path) -> None:
    """A new trusted CA and a new client certificate take effect for new connections without
    a restart; a new set that does not load keeps the old context and is counted."""
    ca_file = tmp_path / "trust.pem"
    ca_file.write_bytes(pki.ca_path.read_bytes())
    cert, key = pki.leaf("client.example", stem="client")
    cfg = ClientTlsConfig(
        common_name="svc.example",
        trust_certs_bundle=str(ca_file),
        client_auth={"certPath": cert, "keyPath": key},
    )
    made = tls.client_tls(cfg, {})
    assert made is not None
    old = made.context
    before = list(tls.CLIENT_RELOADS)
    other = Pki(tmp_path, name="other")  # the servers' certificates move to another CA
    server_cert, server_key = other.leaf("svc.example", stem="server")
    server = tls.server_context(server_cfg(cert_path=server_cert, key_path=server_key))
    with pytest.raises(ssl.SSLError):
        handshake(server, made.kwargs()["ssl"], "svc.example")
    ca_file.write_bytes(other.ca_path.read_bytes())
    made._follow_files(interval=0)
    assert made.context is not old and (made.reloads, made.reload_failures) == (1, 0)
    handshake(server, made.kwargs()["ssl"], "svc.example")  # the new CA is trusted
    # a key that no longer matches its certificate: the last good context stays
    Path(key).write_bytes(Path(pki.leaf(stem="stray")[1]).read_bytes())
    current = made.context
    made._follow_files(interval=0)
    assert made.context is current and (made.reloads, made.reload_failures) == (1, 1)
    made._follow_files(interval=0)  # (reported once, not at every connection)
    assert made.reload_failures == 1
    assert [a - b for a, b in zip(tls.CLIENT_RELOADS, before, strict=True)] == [1, 1]
