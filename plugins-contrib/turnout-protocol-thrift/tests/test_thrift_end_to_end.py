"""``protocol: thrift`` end to end: real thriftpy2 clients and servers through a started
turnout."""

from __future__ import annotations

import json
import socket
import struct
import time
import urllib.request
from typing import Any

import pytest
from thriftpy2.protocol import TBinaryProtocolFactory
from thriftpy2.thrift import TApplicationException, TMessageType
from thriftpy2.transport import TMemoryBuffer
from turnout.testing import free_port, wait_until
from turnout_protocol_thrift.testing import demo, thrift_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def metrics(proxy: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proxy.admin_url + "/admin/metrics.json", timeout=10) as r:
        values: dict[str, Any] = json.load(r)
        return values


def at(backend: Any) -> tuple[str, int]:
    return ("127.0.0.1", backend.port)


TRACELOG = [{"kind": "io.l5d.tracelog", "sampleRate": 1.0, "level": "INFO"}]


def spans(proxy: Any) -> list[dict[str, Any]]:
    """The spans the io.l5d.tracelog telemeter wrote to turnout's log."""
    marker = "turnout.tracelog: "
    lines = [line for line in proxy.log().splitlines() if marker in line]
    return [json.loads(line.split(marker, 1)[1]) for line in lines]


def stops_cleanly(proxy: Any) -> None:
    assert proxy.stop() == 0, proxy.log()
    assert "Traceback" not in proxy.log(), proxy.log()


@pytest.mark.parametrize(
    ("framed", "compact"), [(True, False), (False, False), (True, True), (False, True)]
)
def test_calls_are_routed_in_each_transport_and_protocol(
    thrift_proxy, disco_dir, thrift_backend, thrift_client, framed, compact
):
    backend = thrift_backend("cat", framed=framed, compact=compact)
    disco_dir.write("demo", at(backend))
    proxy = thrift_proxy(
        router={
            "dtab": "/svc => /#/io.l5d.fs/demo;",
            "thriftProtocol": "compact" if compact else "binary",
            "client": {"thriftFramed": framed},
        },
        server={"thriftFramed": framed},
    )
    client = thrift_client(proxy.port, framed=framed, compact=compact)
    assert client.echo("hello") == "cat:hello"
    assert client.echo("x" * 100_000) == "cat:" + "x" * 100_000  # (many reads, buffered)
    assert client.other("again") == "cat-other:again"
    assert backend.count() == 3
    m = metrics(proxy)
    assert m["rt/thrift/service/svc/requests"] == 3
    assert m["rt/thrift/client/#/io.l5d.fs/demo/success"] == 3
    stops_cleanly(proxy)


def test_method_in_dst_routes_two_methods_to_two_backends(
    thrift_proxy, disco_dir, thrift_backend, thrift_client
):
    one, two = thrift_backend("one"), thrift_backend("two")
    disco_dir.write("echo", at(one))
    disco_dir.write("other", at(two))
    proxy = thrift_proxy(router={"thriftMethodInDst": True})
    client = thrift_client(proxy.port)
    assert client.echo("a") == "one:a"
    assert client.other("b") == "two-other:b"
    assert client.echo("c") == "one:c"
    assert one.calls == [("echo", "a"), ("echo", "c")]
    assert two.calls == [("other", "b")]
    m = metrics(proxy)
    assert m["rt/thrift/service/svc/echo/requests"] == 2
    assert m["rt/thrift/service/svc/other/requests"] == 1
    # a method with no service file: the client gets a TApplicationException, not a hang
    with pytest.raises(TApplicationException) as e:
        client.boom("x")
    assert e.value.type == TApplicationException.INTERNAL_ERROR
    assert "Unable to route request" in e.value.message
    assert client.echo("d") == "one:d"  # (the connection is still good)


def test_a_oneway_call_gets_no_reply_and_reaches_the_backend(
    thrift_proxy, disco_dir, thrift_backend, thrift_client
):
    backend = thrift_backend()
    disco_dir.write("svc", at(backend))
    proxy = thrift_proxy(router={"dtab": "/svc => /#/io.l5d.fs/svc;"})
    client = thrift_client(proxy.port)
    client.fire("and-forget")
    # the next call's reply is its own (no reply was owed for the oneway call)
    assert client.echo("after") == "backend:after"
    assert wait_until(lambda: backend.count("fire") == 1, timeout=10)
    assert ("fire", "and-forget") in backend.calls  # (on its own connection: in any order)
    assert metrics(proxy)["rt/thrift/service/svc/success"] == 2


def encode_call(name: str, seqid: int, msg: str, mtype: int = TMessageType.CALL) -> bytes:
    buf = TMemoryBuffer()
    proto = TBinaryProtocolFactory().get_protocol(buf)
    proto.write_message_begin(name, mtype, seqid)
    getattr(demo.Demo, name + "_args")(msg=msg).write(proto)
    proto.write_message_end()
    data: bytes = buf.getvalue()
    return struct.pack(">i", len(data)) + data


def read_frames(sock: socket.socket, n: int) -> list[tuple[str, int, int, Any]]:
    """``n`` framed replies: (name, type, seqid, decoded result or exception)."""
    data = b""
    out = []
    while len(out) < n:
        while len(data) >= 4 and len(data) >= 4 + struct.unpack(">i", data[:4])[0]:
            size = struct.unpack(">i", data[:4])[0]
            proto = TBinaryProtocolFactory().get_protocol(TMemoryBuffer(data[4 : 4 + size]))
            name, mtype, seqid = proto.read_message_begin()
            if mtype == TMessageType.EXCEPTION:
                value: Any = TApplicationException()
            else:
                value = getattr(demo.Demo, name + "_result")()
            value.read(proto)
            out.append((name, mtype, seqid, value))
            data = data[4 + size :]
        if len(out) >= n:
            break
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {out}"
        data += chunk
    return out


def test_pipelined_calls_on_one_connection_are_answered_in_order(
    thrift_proxy, disco_dir, thrift_backend
):
    one, two = thrift_backend("one"), thrift_backend("two")
    disco_dir.write("echo", at(one))
    disco_dir.write("other", at(two))
    proxy = thrift_proxy(router={"thriftMethodInDst": True})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
        # 40 calls written at once, seqids repeating, to two backends
        names = ["echo" if i % 3 else "other" for i in range(40)]
        sock.sendall(b"".join(encode_call(n, i % 4, str(i)) for i, n in enumerate(names)))
        replies = read_frames(sock, 40)
    for i, (name, mtype, seqid, value) in enumerate(replies):
        assert (name, mtype, seqid) == (names[i], TMessageType.REPLY, i % 4)
        owner = "one" if names[i] == "echo" else "two-other"
        assert value.success == f"{owner}:{i}"


def test_an_exception_reply_is_relayed_and_counted_as_a_failure(
    thrift_proxy, disco_dir, thrift_backend, thrift_client
):
    backend = thrift_backend()
    disco_dir.write("svc", at(backend))
    retries = {"retries": {"budget": {"minRetriesPerSec": 10}}}
    proxy = thrift_proxy(router={"dtab": "/svc => /#/io.l5d.fs/svc;", "service": retries})
    client = thrift_client(proxy.port)
    with pytest.raises(TApplicationException) as e:
        client.boom("x")
    assert e.value.message == "boom x"  # (the backend's own exception, unchanged)
    assert backend.count("boom") == 1  # (never retried)
    m = metrics(proxy)
    assert m["rt/thrift/service/svc/failures"] == 1
    assert m["rt/thrift/client/#/io.l5d.fs/svc/failures"] == 1
    assert m["rt/thrift/service/svc/failures/exception"] == 1
    assert client.echo("ok") == "backend:ok"


def test_a_dead_backend_gets_the_client_an_internal_error(thrift_proxy, disco_dir, thrift_client):
    disco_dir.write("svc", ("127.0.0.1", free_port()))  # (nothing listens there)
    proxy = thrift_proxy(router={"dtab": "/svc => /#/io.l5d.fs/svc;"})
    client = thrift_client(proxy.port)
    started = time.monotonic()
    with pytest.raises(TApplicationException) as e:
        client.echo("x")
    assert e.value.type == TApplicationException.INTERNAL_ERROR
    assert "Internal error processing echo" in e.value.message
    assert "connect to" in e.value.message
    assert time.monotonic() - started < 15  # (an answer, not a hang until the client's timeout)


def test_a_refused_connection_is_requeued_to_another_endpoint(
    thrift_proxy, disco_dir, thrift_backend, thrift_client
):
    live = thrift_backend("live")
    dead = ("127.0.0.1", free_port())
    disco_dir.write("svc", dead, at(live))
    proxy = thrift_proxy(router={"dtab": "/svc => /#/io.l5d.fs/svc;"})
    client = thrift_client(proxy.port)
    for i in range(40):  # (p2c picks the dead endpoint about every other call)
        assert client.echo(str(i)) == f"live:{i}"
    m = metrics(proxy)
    assert m["rt/thrift/client/#/io.l5d.fs/svc/success"] == 40
    assert m["rt/thrift/service/svc/failures"] == 0
    # the balancer picked the dead endpoint at least once: requeued, never seen by the client
    assert m["rt/thrift/client/#/io.l5d.fs/svc/retries/requeues"] >= 1


@pytest.mark.parametrize("framed", [True, False])
def test_malformed_and_oversize_requests_close_the_connection(
    thrift_proxy, disco_dir, thrift_backend, framed
):
    backend = thrift_backend(framed=framed)
    disco_dir.write("svc", at(backend))
    proxy = thrift_proxy(
        router={
            "dtab": "/svc => /#/io.l5d.fs/svc;",
            "maxMessageBytes": 1024,
            "client": {"thriftFramed": framed},
        },
        server={"thriftFramed": framed},
    )
    big = encode_call("echo", 1, "x" * 2000)
    bad_version = struct.pack(">I", 0x80020001) + b"\x00\x00\x00\x04echo" + b"\x00" * 8
    cases = [big, struct.pack(">i", len(bad_version)) + bad_version]
    if not framed:
        cases = [
            big[4:],
            bad_version,
            encode_call("echo", 1, "y")[4:-1] + b"\x09\x00\x01" + b"\x00" * 8,
        ]
    for data in cases:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
            sock.sendall(data)
            sock.settimeout(20)
            assert sock.recv(1024) == b""  # closed, no reply
    assert backend.count() == 0
    assert metrics(proxy)[f"rt/thrift/server/127.0.0.1/{proxy.port}/malformed"] == len(cases)
    assert "malformed request" in proxy.log()


def test_ttwitter_upgrade_against_a_plain_server_falls_back(
    thrift_proxy, disco_dir, thrift_backend, thrift_client
):
    backend = thrift_backend()
    disco_dir.write("svc", at(backend))
    proxy = thrift_proxy(
        router={"dtab": "/svc => /#/io.l5d.fs/svc;", "client": {"attemptTTwitterUpgrade": True}}
    )
    client = thrift_client(proxy.port)
    assert client.echo("plain") == "backend:plain"
    assert client.echo("again") == "backend:again"
    m = metrics(proxy)
    assert m["rt/thrift/ttwitter/plain_connections"] == 1
    assert m.get("rt/thrift/ttwitter/upgraded_connections", 0) == 0


def finagle_style_call(port: int, dest: str, delegations: list[tuple[str, str]]) -> Any:
    """What a Finagle client with the TTwitter upgrade does on a new connection: the
    ``__can__finagle__trace__v3__`` probe, then a call behind a ``RequestHeader`` (written with
    this plugin's encoder of tracing.thrift, checked against Finagle's field ids in
    test_codec.py); the reply behind a ``ResponseHeader``, decoded with thriftpy2."""
    from turnout_protocol_thrift import codec

    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        probe = codec.empty_struct_call(codec.CAN_TRACE, codec.CALL, 0, False)
        sock.sendall(struct.pack(">i", len(probe)) + probe)
        [(name, mtype, _, _)] = read_raw(sock, 1)
        assert (name, mtype) == (codec.CAN_TRACE, TMessageType.REPLY)
        header = codec.request_header(False, 0x1234, 0x5678, None, True, 0, dest, delegations)
        call = encode_call("echo", 7, "hi")[4:]
        sock.sendall(struct.pack(">i", len(header) + len(call)) + header + call)
        [(_, _, seqid, payload)] = read_raw(sock, 1, header_struct=True)
        assert seqid == 7
        proto = TBinaryProtocolFactory().get_protocol(TMemoryBuffer(payload))
        _, mtype, _ = proto.read_message_begin()
        if mtype == TMessageType.EXCEPTION:
            exc = TApplicationException()
            exc.read(proto)
            return exc
        result = demo.Demo.echo_result()
        result.read(proto)
        return result.success


def read_raw(sock: socket.socket, n: int, header_struct: bool = False) -> list[Any]:
    """``n`` framed replies as (name, type, seqid, message bytes), after an (empty)
    ResponseHeader struct when ``header_struct``."""
    from turnout_protocol_thrift import codec

    out = []
    data = b""
    while len(out) < n:
        if len(data) >= 4 and len(data) >= 4 + struct.unpack(">i", data[:4])[0]:
            size = struct.unpack(">i", data[:4])[0]
            payload, data = data[4 : 4 + size], data[4 + size :]
            if header_struct:
                assert payload[:1] == b"\x00"  # (an empty ResponseHeader)
            head, body = codec.read_header(payload, False, header_struct)
            out.append((head.name, head.mtype, head.seqid, payload[body:]))
            continue
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        data += chunk
    return out


@pytest.mark.parametrize("framed", [True, False])
def test_ttwitter_upgrade_between_two_turnouts_carries_dest_and_delegations(
    thrift_proxy, turnout_process, disco_dir, thrift_backend, tmp_path, framed
):
    from turnout.testing import DiscoDir

    cat = thrift_backend("cat")
    dog = thrift_backend("dog")
    disco_dir.write("cat", at(cat))
    disco_dir.write("dog", at(dog))
    # incoming: /pets/<dest> goes to cat, unless the request's delegations say otherwise
    incoming = thrift_proxy(
        router={"label": "incoming", "dstPrefix": "/pets", "dtab": "/pets => /#/io.l5d.fs/cat;"},
        server={"thriftFramed": framed},  # (between the turnouts: framed or buffered)
        telemetry=TRACELOG,
    )
    outer = DiscoDir(tmp_path / "outer")
    outer.write("in", ("127.0.0.1", incoming.port))
    # outgoing: /svc/<dest> goes to the incoming turnout, upgraded
    outgoing = turnout_process(
        thrift_config(
            outer,
            router={
                "label": "outgoing",
                "dtab": "/svc => /#/io.l5d.fs/in;",
                "client": {"attemptTTwitterUpgrade": True, "thriftFramed": framed},
            },
            telemetry=TRACELOG,
        )
    )
    # a Finagle-style client names /dog and delegates /pets/dog to the dog backend: the
    # outgoing turnout routes /svc/dog to the incoming one and passes dest and dtab on
    dtab = [("/pets/dog", f"/$/inet/127.0.0.1/{dog.port}")]
    assert finagle_style_call(outgoing.port, "/dog", dtab) == "dog:hi"
    assert finagle_style_call(outgoing.port, "/dog", []) == "cat:hi"  # (no delegation)
    # a plain client through the same pair: no dest, the name is /pets at incoming
    assert finagle_style_call(outgoing.port, "/", []) == "cat:hi"
    assert dog.calls == [("echo", "hi")] and cat.count() == 2
    assert metrics(outgoing)["rt/outgoing/ttwitter/upgraded_connections"] >= 1
    server = f"rt/incoming/server/127.0.0.1/{incoming.port}"
    assert metrics(incoming)[f"{server}/ttwitter_upgrades"] >= 1
    assert metrics(incoming)["rt/incoming/service/pets/dog/requests"] == 2
    # the trace ids of the RequestHeader go on: the client's trace 0x1234, its span 0x5678 is
    # the outgoing server span; that one's client span is the incoming server span
    assert wait_until(lambda: len(spans(outgoing)) >= 6 and len(spans(incoming)) >= 3)
    out_server = next(s for s in spans(outgoing) if s["kind"] == "SERVER")
    out_client = next(s for s in spans(outgoing) if s["kind"] == "CLIENT")
    in_server = next(s for s in spans(incoming) if s["kind"] == "SERVER")
    assert int(out_server["traceId"], 16) == 0x1234 and int(out_server["id"], 16) == 0x5678
    assert out_server["name"] == "echo"
    assert in_server["traceId"] == out_client["traceId"] == out_server["traceId"]
    assert in_server["id"] == out_client["id"]
    assert in_server["tags"]["l5d.service"] == "/pets/dog"


def test_clear_context_ignores_dest_and_delegations(thrift_proxy, disco_dir, thrift_backend):
    cat, dog = thrift_backend("cat"), thrift_backend("dog")
    disco_dir.write("cat", at(cat))
    disco_dir.write("dog", at(dog))
    dtab = "/svc => /#/io.l5d.fs/cat; /svc/dog => /#/io.l5d.fs/dog;"
    edge = thrift_proxy(router={"dtab": dtab}, server={"clearContext": True})
    delegation = [("/svc", f"/$/inet/127.0.0.1/{dog.port}")]
    assert finagle_style_call(edge.port, "/dog", delegation) == "cat:hi"
    inner = thrift_proxy(router={"dtab": dtab})
    assert finagle_style_call(inner.port, "/dog", []) == "dog:hi"
    assert finagle_style_call(inner.port, "/", delegation) == "dog:hi"


def test_idle_endpoint_connections_are_closed_after_idle_time_ms(
    thrift_proxy, disco_dir, thrift_backend, thrift_client
):
    backend = thrift_backend()
    disco_dir.write("svc", at(backend))
    proxy = thrift_proxy(
        router={
            "dtab": "/svc => /#/io.l5d.fs/svc;",
            "client": {"hostConnectionPool": {"idleTimeMs": 500}},
        }
    )
    client = thrift_client(proxy.port)
    assert client.echo("one") == "backend:one"
    assert backend.open_connections == 1
    assert wait_until(lambda: backend.open_connections == 0, timeout=15)  # (swept once a second)
    assert client.echo("two") == "backend:two"  # (a new connection)
    assert metrics(proxy)["rt/thrift/client/#/io.l5d.fs/svc/connects"] == 2


@pytest.mark.parametrize(
    ("client", "service", "says"),
    [
        ({"responseIdleTimeoutMs": 300}, {}, "no reply from"),
        ({}, {"totalTimeoutMs": 300}, "exceeded totalTimeoutMs of 300 ms"),
    ],
)
def test_a_slow_reply_is_answered_with_an_exception_at_the_deadline(
    thrift_proxy, disco_dir, thrift_backend, thrift_client, client, service, says
):
    backend = thrift_backend()
    disco_dir.write("svc", at(backend))
    proxy = thrift_proxy(
        router={"dtab": "/svc => /#/io.l5d.fs/svc;", "client": client, "service": service}
    )
    caller = thrift_client(proxy.port)
    with pytest.raises(TApplicationException) as e:
        caller.slow("3")
    assert e.value.type == TApplicationException.INTERNAL_ERROR
    assert says in e.value.message
    assert caller.echo("next") == "backend:next"  # (same client connection, new upstream one)
