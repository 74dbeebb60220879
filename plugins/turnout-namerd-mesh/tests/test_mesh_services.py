"""namerd's ``io.l5d.mesh`` interface against a grpcio client: a real ``turnout namerd``
(io.l5d.inMemory, io.l5d.fs, io.l5d.httpController and io.l5d.mesh), each service and its
errors, on uvloop (turnout's default) and on the stdlib loop (namerd and client alike)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import yaml
from turnout.api import Dtab, Path
from turnout.testing import DiscoDir, free_port
from turnout_namerd_mesh.delegate_json import delegate_tree_json
from turnout_namerd_mesh.generated import (
    codec_pb2,
    codec_pb2_grpc,
    delegator_pb2,
    delegator_pb2_grpc,
    dtab_pb2,
    interpreter_pb2,
    interpreter_pb2_grpc,
    resolver_pb2,
    resolver_pb2_grpc,
)
from turnout_namerd_mesh.testing import LOOPS, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SEED = "/svc => /#/io.l5d.fs"


def path(text: str) -> dtab_pb2.Path:
    return dtab_pb2.Path(elems=[e.encode() for e in text.strip("/").split("/") if e])


class Mesh:
    """A started namerd and what the tests need of it."""

    def __init__(self, proc: Any, loop: str, api: int, mesh: int, admin: int, disco: DiscoDir):
        self.proc, self.loop, self.api, self.mesh, self.admin = proc, loop, api, mesh, admin
        self.disco = disco

    def run(self, coro: Any) -> Any:
        return run(coro, self.loop)

    def channel(self) -> Any:
        return grpc.aio.insecure_channel(
            f"127.0.0.1:{self.mesh}", options=[("grpc.enable_http_proxy", 0)]
        )

    def put(self, ns: str, dtab: str) -> None:
        r = self.proc.http(
            self.api,
            "PUT",
            f"/api/1/dtabs/{ns}",
            dtab.encode(),
            **{"Content-Type": "application/dtab"},
        )
        assert r.status == 204, (r.status, r.text)

    def delete(self, ns: str) -> None:
        r = self.proc.http(self.api, "DELETE", f"/api/1/dtabs/{ns}")
        assert r.status == 204, (r.status, r.text)

    def api_json(self, target: str) -> Any:
        r = self.proc.http(self.api, "GET", target)
        assert r.status == 200, (r.status, r.text)
        return json.loads(r.body)


@pytest.fixture(scope="module", params=LOOPS)
def mesh(request: Any, module_namerd_process: Any, tmp_path_factory: Any) -> Mesh:
    loop = request.param
    disco = DiscoDir(tmp_path_factory.mktemp("disco"))
    disco.write("web", "127.0.0.1 8001")
    disco.write("api", "127.0.0.1 8002", "::1 8003")
    api, mesh_port, admin = free_port(), free_port(), free_port()
    config = {
        "admin": {"port": admin},
        "storage": {"kind": "io.l5d.inMemory", "namespaces": {"default": SEED}},
        "namers": [{"kind": "io.l5d.fs", "rootDir": str(disco.root), "pollIntervalMs": 50}],
        "interfaces": [
            {"kind": "io.l5d.httpController", "port": api},
            {"kind": "io.l5d.mesh", "port": mesh_port},
        ],
    }
    proc = module_namerd_process(yaml.safe_dump(config), api, mesh_port, admin, loop=loop)
    return Mesh(proc, loop, api, mesh_port, admin, disco)


async def first(stream: AsyncIterator[Any], n: int = 1) -> list[Any]:
    out = []
    async for msg in stream:
        out.append(msg)
        if len(out) == n:
            break
    return out


def status_of(mesh: Mesh, coro_fn: Any) -> tuple[Any, str]:
    """The status code and details of the RPC ``coro_fn(channel)`` (it must fail)."""

    async def go() -> tuple[Any, str]:
        async with mesh.channel() as ch:
            try:
                await coro_fn(ch)
            except grpc.aio.AioRpcError as e:
                return e.code(), e.details()
        raise AssertionError("the call succeeded")

    return mesh.run(go())


# -- Interpreter ---------------------------------------------------------------------------------
def test_get_bound_tree(mesh: Mesh) -> None:
    async def go() -> Any:
        async with mesh.channel() as ch:
            stub = interpreter_pb2_grpc.InterpreterStub(ch)
            plain = await stub.GetBoundTree(
                interpreter_pb2.BindReq(root=path("default"), name=path("/svc/web/extra"))
            )
            override = await stub.GetBoundTree(
                interpreter_pb2.BindReq(
                    root=path("default"),
                    name=path("/svc/web"),
                    dtab=dtab_pb2.Dtab(
                        dentries=[
                            dtab_pb2.Dtab.Dentry(
                                prefix=dtab_pb2.Dtab.Dentry.Prefix(
                                    elems=[
                                        dtab_pb2.Dtab.Dentry.Prefix.Elem(label=b"svc"),
                                        dtab_pb2.Dtab.Dentry.Prefix.Elem(
                                            wildcard=dtab_pb2.Dtab.Dentry.Prefix.Elem.Wildcard()
                                        ),
                                    ]
                                ),
                                dst=dtab_pb2.PathNameTree(
                                    leaf=dtab_pb2.PathNameTree.Leaf(id=path("/#/io.l5d.fs/api"))
                                ),
                            )
                        ]
                    ),
                )
            )
            missing = await stub.GetBoundTree(
                interpreter_pb2.BindReq(root=path("nosuchns"), name=path("/svc/web"))
            )
            return plain, override, missing

    plain, override, missing = mesh.run(go())
    assert plain.tree.WhichOneof("node") == "leaf"
    assert list(plain.tree.leaf.id.elems) == [b"#", b"io.l5d.fs", b"web"]
    assert list(plain.tree.leaf.residual.elems) == [b"extra"]
    # the request's dtab is appended to the namespace's (and wins): /svc/* => /#/io.l5d.fs/api
    assert list(override.tree.leaf.id.elems) == [b"#", b"io.l5d.fs", b"api"]
    # a namespace without a dtab binds with the empty dtab (Linkerd's ConfiguredDtabNamer)
    assert missing.tree.WhichOneof("node") == "neg"


def test_bind_errors_are_linkerds(mesh: Mesh) -> None:
    def bind(req: Any) -> Any:
        return status_of(
            mesh, lambda ch: interpreter_pb2_grpc.InterpreterStub(ch).GetBoundTree(req)
        )

    no_root = bind(interpreter_pb2.BindReq(name=path("/svc/web")))
    assert no_root == (grpc.StatusCode.INVALID_ARGUMENT, "No namespace specified")
    two = bind(interpreter_pb2.BindReq(root=path("/a/b"), name=path("/svc/web")))
    assert two == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Invalid root: `/a/b` must have exactly one segment",
    )
    assert bind(interpreter_pb2.BindReq(root=path("default"))) == (
        grpc.StatusCode.NOT_FOUND,
        "No name given",
    )
    empty_name = bind(interpreter_pb2.BindReq(root=path("default"), name=dtab_pb2.Path()))
    assert empty_name == (grpc.StatusCode.NOT_FOUND, "No name given")
    code, details = bind(interpreter_pb2.BindReq(root=path(".."), name=path("/svc/web")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "invalid dtab namespace" in details
    bad_label = interpreter_pb2.BindReq(root=path("default"), name=dtab_pb2.Path(elems=[b"a", b""]))
    code, details = bind(bad_label)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "label must not be empty" in details
    bad_dentry = interpreter_pb2.BindReq(
        root=path("default"),
        name=path("/svc/web"),
        dtab=dtab_pb2.Dtab(dentries=[dtab_pb2.Dtab.Dentry()]),
    )
    code, details = bind(bad_dentry)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Invalid dtab: illegal dentry" in details
    # the stream answers the same
    code, details = status_of(
        mesh,
        lambda ch: first(
            interpreter_pb2_grpc.InterpreterStub(ch).StreamBoundTree(
                interpreter_pb2.BindReq(root=path("/a/b"), name=path("/svc/web"))
            )
        ),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "exactly one segment" in details


def test_stream_bound_tree_follows_dtab_changes(mesh: Mesh) -> None:
    mesh.put("streambind", "/svc => /#/io.l5d.fs")

    async def go() -> list[Any]:
        async with mesh.channel() as ch:
            stream = interpreter_pb2_grpc.InterpreterStub(ch).StreamBoundTree(
                interpreter_pb2.BindReq(root=path("streambind"), name=path("/svc/web"))
            )
            seen = []
            async for rsp in stream:
                seen.append(list(rsp.tree.leaf.id.elems))
                if len(seen) == 1:  # the current tree first; then a write through /api/1
                    mesh.put("streambind", "/svc => /#/io.l5d.fs; /svc/web => /svc/api")
                else:
                    break
            stream.cancel()
            return seen

    assert mesh.run(go()) == [[b"#", b"io.l5d.fs", b"web"], [b"#", b"io.l5d.fs", b"api"]]


# -- Resolver ------------------------------------------------------------------------------------
def test_get_replicas(mesh: Mesh) -> None:
    async def go() -> Any:
        async with mesh.channel() as ch:
            stub = resolver_pb2_grpc.ResolverStub(ch)
            api = await stub.GetReplicas(resolver_pb2.ReplicasReq(id=path("/#/io.l5d.fs/api")))
            neg = await stub.GetReplicas(resolver_pb2.ReplicasReq(id=path("/#/io.l5d.fs/nope")))
            no_id = await stub.GetReplicas(resolver_pb2.ReplicasReq())
            transformed = await stub.GetReplicas(
                resolver_pb2.ReplicasReq(id=path("/%/io.l5d.port/4141/#/io.l5d.fs/web"))
            )
            return api, neg, no_id, transformed

    api, neg, no_id, transformed = mesh.run(go())
    assert api.WhichOneof("result") == "bound"
    endpoints = sorted((e.inet_af, bytes(e.address), e.port) for e in api.bound.endpoints)
    assert endpoints == [
        (resolver_pb2.Endpoint.INET4, bytes([127, 0, 0, 1]), 8002),
        (resolver_pb2.Endpoint.INET6, bytes(15) + b"\x01", 8003),
    ]
    assert neg.WhichOneof("result") == "neg"
    assert no_id.WhichOneof("result") == "failed" and no_id.failed.message == "No ID provided"
    # a transformer's prefix is stripped (Linkerd's Paths.stripTransformerPrefix)
    assert [e.port for e in transformed.bound.endpoints] == [8001]


def test_stream_replicas_follows_discovery(mesh: Mesh) -> None:
    mesh.disco.write("moving", "127.0.0.1 9001")

    async def go() -> list[list[int]]:
        async with mesh.channel() as ch:
            stream = resolver_pb2_grpc.ResolverStub(ch).StreamReplicas(
                resolver_pb2.ReplicasReq(id=path("/#/io.l5d.fs/moving"))
            )
            seen: list[list[int]] = []
            async for rsp in stream:
                if rsp.WhichOneof("result") != "bound":
                    continue  # (pending first, possibly)
                seen.append(sorted(e.port for e in rsp.bound.endpoints))
                if len(seen) == 1:
                    mesh.disco.write("moving", "127.0.0.1 9001", "127.0.0.1 9002")
                else:
                    break
            stream.cancel()
            return seen

    assert mesh.run(go()) == [[9001], [9001, 9002]]


# -- Delegator -----------------------------------------------------------------------------------
def test_get_dtab_and_errors(mesh: Mesh) -> None:
    mesh.put("getdtab", "/a => /b;/c => /d | /e")

    async def go() -> Any:
        async with mesh.channel() as ch:
            stub = delegator_pb2_grpc.DelegatorStub(ch)
            return await stub.GetDtab(delegator_pb2.DtabReq(root=path("getdtab")))

    rsp = mesh.run(go())
    etag = mesh.proc.http(mesh.api, "HEAD", "/api/1/dtabs/getdtab").header("etag")
    assert base64.b64encode(rsp.dtab.version.id).decode() == etag

    async def shown() -> str:
        async with mesh.channel() as ch:
            codec = codec_pb2_grpc.CodecStub(ch)
            return (await codec.ShowDtab(codec_pb2.ShowDtabReq(dtab=rsp.dtab.dtab))).text

    assert mesh.run(shown()) == Dtab.read("/a => /b;/c => /d | /e").show

    def get(req: Any) -> Any:
        return status_of(mesh, lambda ch: delegator_pb2_grpc.DelegatorStub(ch).GetDtab(req))

    assert get(delegator_pb2.DtabReq(root=path("nosuchns"))) == (
        grpc.StatusCode.NOT_FOUND,
        "Root not found",
    )
    assert get(delegator_pb2.DtabReq()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "No namespace specified",
    )
    assert get(delegator_pb2.DtabReq(root=path("/x/y"))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Invalid root: `/x/y` must have exactly one segment",
    )


def test_stream_dtab_follows_writes_and_ends_on_delete(mesh: Mesh) -> None:
    mesh.put("streamdtab", "/a => /b")

    async def go() -> tuple[list[str], Any]:
        async with mesh.channel() as ch:
            stub = delegator_pb2_grpc.DelegatorStub(ch)
            codec = codec_pb2_grpc.CodecStub(ch)
            stream = stub.StreamDtab(delegator_pb2.DtabReq(root=path("streamdtab")))
            seen: list[str] = []
            try:
                async for rsp in stream:
                    text = (await codec.ShowDtab(codec_pb2.ShowDtabReq(dtab=rsp.dtab.dtab))).text
                    seen.append(text)
                    if len(seen) == 1:
                        mesh.put("streamdtab", "/a => /c")
                    elif len(seen) == 2:
                        mesh.delete("streamdtab")
            except grpc.aio.AioRpcError as e:
                return seen, (e.code(), e.details())
            return seen, None

    seen, ended = mesh.run(go())
    assert seen == ["/a=>/b", "/a=>/c"]
    # Linkerd ends the stream when the namespace is gone
    assert ended == (grpc.StatusCode.NOT_FOUND, "Root not found")
    code, details = status_of(
        mesh,
        lambda ch: first(
            delegator_pb2_grpc.DelegatorStub(ch).StreamDtab(
                delegator_pb2.DtabReq(root=path("nope"))
            )
        ),
    )
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "Root not found")


def _strip_addrs(tree: Any) -> Any:
    if isinstance(tree, dict):
        out = {k: _strip_addrs(v) for k, v in tree.items() if k != "addr"}
        return out
    if isinstance(tree, list):
        return [_strip_addrs(t) for t in tree]
    return tree


def test_get_delegate_tree_matches_the_http_apis(mesh: Mesh) -> None:
    mesh.put("delegate", "/svc => /#/io.l5d.fs; /svc/web => /svc/nope | /svc/api; /x => !")

    async def go(name: str) -> Any:
        async with mesh.channel() as ch:
            stub = delegator_pb2_grpc.DelegatorStub(ch)
            tree = dtab_pb2.PathNameTree(leaf=dtab_pb2.PathNameTree.Leaf(id=path(name)))
            rsp = await stub.GetDelegateTree(
                delegator_pb2.DelegateTreeReq(root=path("delegate"), tree=tree)
            )
            streamed = await first(
                stub.StreamDelegateTree(
                    delegator_pb2.DelegateTreeReq(root=path("delegate"), tree=tree)
                )
            )
            return rsp, streamed

    for name in ("/svc/web", "/x/y", "/nowhere"):
        rsp, streamed = mesh.run(go(name))
        assert streamed == [rsp]
        expected = mesh.api_json(f"/api/1/delegate/delegate?path={name}")
        assert delegate_tree_json(rsp.tree) == _strip_addrs(expected), name

    code, details = status_of(
        mesh,
        lambda ch: delegator_pb2_grpc.DelegatorStub(ch).GetDelegateTree(
            delegator_pb2.DelegateTreeReq(root=path("delegate"))
        ),
    )
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "No name given")


# -- Codec ---------------------------------------------------------------------------------------
def test_codec(mesh: Mesh) -> None:
    async def go() -> Any:
        async with mesh.channel() as ch:
            codec = codec_pb2_grpc.CodecStub(ch)
            read = await codec.ReadPath(codec_pb2.ReadPathReq(text="/a/b\\x2fc"))
            empty = await codec.ReadPath(codec_pb2.ReadPathReq(text=""))
            shown = await codec.ShowPath(codec_pb2.ShowPathReq(path=read.path))
            dtab = await codec.ReadDtab(codec_pb2.ReadDtabReq(text="/s/* => /a | 0.5*/b & 0.5*/c"))
            back = await codec.ShowDtab(codec_pb2.ShowDtabReq(dtab=dtab.dtab))
            return read, empty, shown, dtab, back

    read, empty, shown, dtab, back = mesh.run(go())
    assert list(read.path.elems) == [b"a", b"b/c"]
    assert list(empty.path.elems) == []
    assert shown.text == Path.read("/a/b\\x2fc").show == "/a/\\x62\\x2f\\x63"
    prefix = dtab.dtab.dentries[0].prefix.elems
    assert prefix[0].label == b"s" and prefix[1].WhichOneof("value") == "wildcard"
    assert dtab.dtab.dentries[0].dst.WhichOneof("node") == "alt"
    assert back.text == Dtab.read("/s/* => /a | 0.5*/b & 0.5*/c").show

    def codec_error(call: Any) -> tuple[Any, str]:
        return status_of(mesh, lambda ch: call(codec_pb2_grpc.CodecStub(ch)))

    code, details = codec_error(lambda c: c.ReadPath(codec_pb2.ReadPathReq(text="no/slash")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'/' expected" in details
    code, details = codec_error(lambda c: c.ReadDtab(codec_pb2.ReadDtabReq(text="/a => ;")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details


def test_unknown_method_is_unimplemented(mesh: Mesh) -> None:
    async def go() -> Any:
        async with mesh.channel() as ch:
            call = ch.unary_unary("/io.linkerd.mesh.Interpreter/Nope")
            try:
                await call(b"")
            except grpc.aio.AioRpcError as e:
                return e.code()
        return None

    assert mesh.run(go()) == grpc.StatusCode.UNIMPLEMENTED


def test_metrics_count_the_requests(mesh: Mesh) -> None:
    status_of(
        mesh,
        lambda ch: delegator_pb2_grpc.DelegatorStub(ch).GetDtab(
            delegator_pb2.DtabReq(root=path("nosuchns"))
        ),
    )
    metrics = mesh.proc.admin_json(mesh.admin, "/admin/metrics.json")
    assert metrics["interface/io.l5d.mesh/requests"] >= 1
    assert metrics["interface/io.l5d.mesh/GetDtab/requests"] >= 1
    assert metrics["interface/io.l5d.mesh/status/NOT_FOUND"] >= 1
    assert metrics["interface/io.l5d.mesh/failures"] >= 1
    assert "interface/io.l5d.mesh/open_streams" in metrics
