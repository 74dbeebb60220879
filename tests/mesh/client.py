"""A mesh test's client, run inside a host's network namespace by tests/test_mesh_netns.py
(``ip netns exec NS python client.py COMMAND ...``); it prints one JSON object.

- ``wait TIMEOUT HOST:PORT...``: until each accepts TCP connections (exit 1 after TIMEOUT s)
- ``get HOST PORT PATH [NAME:VALUE...]``: one HTTP/1.1 request: status, headers, body
- ``load HOST PORT SERVICE STOP_FILE MAX_SECONDS MAX_REQUESTS WORKERS``: GETs with Host
  SERVICE on keep-alive connections until STOP_FILE exists (or a limit is reached): counts
- ``tls HOST PORT SNI CA [CERT KEY]``: a TLS handshake (with a client certificate if given),
  then one request: the server certificate's serial, the response or the error
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time
from collections import Counter

from cryptography import x509

TIMEOUT = 5.0


def wait(timeout: str, *addresses: str) -> dict[str, object]:
    deadline = time.monotonic() + float(timeout)
    pending = list(addresses)
    while pending and time.monotonic() < deadline:
        for address in list(pending):
            host, port = address.rsplit(":", 1)
            try:
                socket.create_connection((host, int(port)), timeout=0.5).close()
                pending.remove(address)
            except OSError:
                pass
        time.sleep(0.05)
    return {"pending": pending}


def get(host: str, port: str, path: str, *headers: str) -> dict[str, object]:
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.putrequest("GET", path, skip_host=True)
        for header in headers:
            name, value = header.split(":", 1)
            conn.putheader(name, value.strip())
        conn.endheaders()
        r = conn.getresponse()
        return {"status": r.status, "headers": r.getheaders(), "body": r.read().decode()}
    finally:
        conn.close()


def load(host: str, port: str, service: str, stop_file: str, *limits: str) -> dict[str, object]:
    max_seconds, max_requests, workers = float(limits[0]), int(limits[1]), int(limits[2])
    deadline = time.monotonic() + max_seconds
    bodies: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = None
        while time.monotonic() < deadline and not os.path.exists(stop_file):
            with lock:
                if sum(bodies.values()) + len(errors) >= max_requests:
                    return
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
                conn.request("GET", "/load", headers={"Host": service})
                r = conn.getresponse()
                body = r.read().decode()
                error = None if r.status == 200 else f"status {r.status}: {body[:200]}"
            except (OSError, http.client.HTTPException) as e:
                error = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                if error is None:
                    bodies[body] += 1
                else:
                    errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()  # (each ends by the deadline: requests time out after TIMEOUT)
    return {"ok": dict(bodies), "failed": len(errors), "errors": errors[:5]}


def tls(host: str, port: str, sni: str, ca: str, *cert_key: str) -> dict[str, object]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if cert_key:
        ctx.load_cert_chain(cert_key[0], cert_key[1])
    out: dict[str, object] = {}
    try:
        with (
            socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw,
            ctx.wrap_socket(raw, server_hostname=sni) as s,
        ):
            der = s.getpeercert(binary_form=True)
            assert der is not None
            out["serial"] = x509.load_der_x509_certificate(der).serial_number
            s.sendall(b"GET /direct HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            out["response"] = data.decode("latin-1")
    except (OSError, ssl.SSLError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


if __name__ == "__main__":
    command = {"wait": wait, "get": get, "load": load, "tls": tls}[sys.argv[1]]
    print(json.dumps(command(*sys.argv[2:])))
