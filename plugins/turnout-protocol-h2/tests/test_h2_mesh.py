"""gRPC across a two-linker mesh (docs/mesh.md, "gRPC"): an outgoing h2 router sends each call
to the incoming h2 router of the host that runs the service (``io.l5d.port``) over mutual TLS
with ALPN h2; the incoming router keeps this host's instances (``io.l5d.localhost``). Both
linkers are real ``turnout run`` processes on 127.0.0.1, the backend a real grpcio server."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import grpc
import pytest
import trustme
import yaml
from turnout.testing import free_port
from turnout_h2_grpc import GrpcClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def metrics(proc: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proc.admin_url + "/admin/metrics.json", timeout=10) as r:
        values: dict[str, Any] = json.load(r)
        return values


def test_grpc_through_outgoing_and_incoming_linkers_over_mutual_tls(
    turnout_process, grpc_backend, disco_dir, tmp_path
):
    backend = grpc_backend("svc")
    disco_dir.write("test.Echo", ("127.0.0.1", backend.port))
    ca = trustme.CA()
    linker = ca.issue_cert("linker.mesh")
    stranger = trustme.CA().issue_cert("linker.mesh")  # (signed by another CA)
    files = {}
    for name, blob in (
        ("ca.pem", ca.cert_pem),
        ("linker.pem", linker.cert_chain_pems[0]),
        ("linker.key", linker.private_key_pem),
        ("stranger.pem", stranger.cert_chain_pems[0]),
        ("stranger.key", stranger.private_key_pem),
    ):
        path = tmp_path / name
        blob.write_to_path(path)
        files[name] = str(path)
    incoming_port = free_port()
    namers = [{"kind": "io.l5d.fs", "rootDir": str(disco_dir.root)}]
    identifier = {"kind": "io.l5d.header.path", "segments": 1}

    def outgoing(cert: str, key: str) -> Any:
        config = {
            "admin": {"port": free_port()},
            "namers": namers,
            "routers": [
                {
                    "protocol": "h2",
                    "label": "outgoing",
                    "identifier": identifier,
                    "interpreter": {
                        "kind": "default",
                        "transformers": [{"kind": "io.l5d.port", "port": incoming_port}],
                    },
                    "dtab": "/svc => /#/io.l5d.fs;",
                    "client": {
                        "tls": {
                            "commonName": "linker.mesh",
                            "trustCerts": [files["ca.pem"]],
                            "clientAuth": {"certPath": cert, "keyPath": key},
                        }
                    },
                    "servers": [{"port": free_port()}],
                }
            ],
        }
        return turnout_process(yaml.safe_dump(config))

    incoming = turnout_process(
        yaml.safe_dump(
            {
                "admin": {"port": free_port()},
                "namers": namers,
                "routers": [
                    {
                        "protocol": "h2",
                        "label": "incoming",
                        "identifier": identifier,
                        "interpreter": {
                            "kind": "default",
                            "transformers": [{"kind": "io.l5d.localhost"}],
                        },
                        "dtab": "/svc => /#/io.l5d.fs;",
                        "servers": [
                            {
                                "port": incoming_port,
                                "tls": {
                                    "certPath": files["linker.pem"],
                                    "keyPath": files["linker.key"],
                                    "caCertPath": files["ca.pem"],
                                    "requireClientAuth": True,
                                },
                            }
                        ],
                    }
                ],
            }
        )
    )
    member = outgoing(files["linker.pem"], files["linker.key"])
    with GrpcClient(member.port) as client:
        assert client.unary("Unary", b"x", timeout=10) == b"svc:x"
        streamed = client.method("unary_stream", "ServerStream")(b"20", timeout=10)
        assert len(list(streamed)) == 20
    out = metrics(member)
    assert any(k.startswith("rt/outgoing/client/%/io.l5d.port/") for k in out), sorted(out)[:20]
    assert metrics(incoming)["rt/incoming/service/svc/test.Echo/success"] == 2
    # a linker whose certificate another CA signed is refused by the incoming linker
    outsider = outgoing(files["stranger.pem"], files["stranger.key"])
    with GrpcClient(outsider.port) as client, pytest.raises(grpc.RpcError) as err:
        client.unary("Unary", b"x", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert backend.calls["Unary"] == 1
