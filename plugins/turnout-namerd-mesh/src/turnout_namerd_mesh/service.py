"""namerd's ``io.l5d.mesh`` interface: the ``io.linkerd.mesh`` gRPC services (Linkerd's
``namerd/iface/mesh``) served by a ``grpc.aio`` server inside namerd's event loop.

=====================================  ==========================================================
``Interpreter.GetBoundTree``           the bound tree of ``name`` in namespace ``root`` (with the
                                       request's ``dtab`` appended); ``StreamBoundTree``: it, then
                                       every change
``Resolver.GetReplicas``               the address set of a bound ``id`` (namers only, no dtab);
                                       ``StreamReplicas``: it, then every change (pending too)
``Delegator.GetDtab``                  the namespace's dtab and version; ``StreamDtab``: then
                                       every change
``Delegator.GetDelegateTree``          the delegate tree of ``tree``; ``StreamDelegateTree``: one
                                       tree, then the end (deprecated in Linkerd)
``Codec.ReadPath/ShowPath/...``        parse and print paths and dtabs
=====================================  ==========================================================

Errors are Linkerd's (``Errors.scala``): no ``root`` is ``INVALID_ARGUMENT`` "No namespace
specified"; a root that is not one element ``INVALID_ARGUMENT`` "Invalid root: `<root>` must
have exactly one segment"; no ``name`` (or an empty one) ``NOT_FOUND`` "No name given"; a
namespace without a dtab in ``GetDtab``/``StreamDtab`` ``NOT_FOUND`` "Root not found"; a
binding or store failure ``INTERNAL`` with its message; text that does not parse in
``ReadPath``/``ReadDtab`` ``INVALID_ARGUMENT`` with the parser's message. turnout adds:
a namespace name turnout refuses (``/``, ``..``) and a message that is not a valid value (an
empty path label, a dentry without prefix) are ``INVALID_ARGUMENT``; a unary call whose
answer stays pending 10 s is ``UNAVAILABLE`` "Request timed out." (2 s for a delegate tree,
as ``/delegator.json``); ``GetReplicas`` answers ``pending`` after 10 s (Linkerd answered
the first value, pending or not).
"""

# mypy: disable-error-code="import-untyped"
# (grpcio ships no type information: grpc is Any here)

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import grpc
from turnout.api import (
    Activity,
    Addr,
    AddrBound,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Dtab,
    DtabStore,
    Empty,
    Fail,
    Failed,
    InvalidNamespace,
    Leaf,
    MetricsTree,
    NameBound,
    NameTree,
    Neg,
    Ok,
    ParseError,
    Path,
    Pending,
    State,
    Var,
    derive,
    derive_activity,
)

from .config import KIND, check_namespace
from .convert import (
    from_dtab,
    from_path,
    from_path_tree,
    to_bound_tree,
    to_dtab,
    to_path,
    to_replicas,
)
from .delegation import delegate_once, to_delegate_tree
from .generated import (
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

log = logging.getLogger("turnout.namerd.mesh")

T = TypeVar("T")

#: longest a unary bind or replicas call waits for a value that is pending
REQUEST_TIMEOUT = 10.0
#: longest GetDelegateTree waits for pending namer lookups (as /delegator.json)
DELEGATE_TIMEOUT = 2.0

#: the generated registration functions (untyped: grpcio's generated code)
_ADD: dict[str, Any] = {
    "Interpreter": interpreter_pb2_grpc.add_InterpreterServicer_to_server,
    "Resolver": resolver_pb2_grpc.add_ResolverServicer_to_server,
    "Delegator": delegator_pb2_grpc.add_DelegatorServicer_to_server,
    "Codec": codec_pb2_grpc.add_CodecServicer_to_server,
}


class Status(Exception):
    """Ends an RPC with a gRPC status (Linkerd's ``GrpcStatus``)."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def no_root() -> Status:
    return Status(grpc.StatusCode.INVALID_ARGUMENT, "No namespace specified")


def root_not_found() -> Status:
    return Status(grpc.StatusCode.NOT_FOUND, "Root not found")


def no_name() -> Status:
    return Status(grpc.StatusCode.NOT_FOUND, "No name given")


def invalid_root(root: Path) -> Status:
    return Status(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Invalid root: `{root.show}` must have exactly one segment",
    )


def invalid(message: str) -> Status:
    return Status(grpc.StatusCode.INVALID_ARGUMENT, message)


def internal(error: BaseException) -> Status:
    return Status(grpc.StatusCode.INTERNAL, str(error) or type(error).__name__)


async def latest(var: Var[T]) -> AsyncIterator[T]:
    """The values of ``var``: the current one, then the latest after each change (values a
    slow reader missed are skipped). Observes ``var`` while iterated."""
    changed = asyncio.Event()
    box: list[T] = []

    def on(value: T) -> None:
        box[:] = [value]
        changed.set()

    obs = var.observe(on)
    try:
        while True:
            await changed.wait()
            changed.clear()
            yield box[0]
    finally:
        obs.close()


def strip_transformer_prefix(path: Path) -> Path:
    """``/%/io.l5d.port/4141/#/io.l5d.fs/web`` → ``/#/io.l5d.fs/web`` (Linkerd's
    ``Paths.stripTransformerPrefix``)."""
    e = path.elems
    if not e or e[0] != b"%":
        return path
    for i, elem in enumerate(e):
        if elem in (b"#", b"$"):
            return path.drop(i)
    return Path.empty


class MeshServices:
    """The four services over namerd's store and namespace interpreters."""

    def __init__(self, store: DtabStore, namespaces: Any) -> None:
        self.store = store
        #: namerd's ``NamespaceInterpreters``: ``interpreter(ns)`` and ``namers_only``
        self.namespaces = namespaces
        self._addrs: dict[Path, Var[Addr]] = {}

    # -- request fields ------------------------------------------------------------------------
    @staticmethod
    def namespace(msg: Any) -> str:
        if not msg.HasField("root"):
            raise no_root()
        try:
            root = from_path(msg.root)
        except ValueError as e:
            raise invalid(f"Invalid root: {e}") from None
        if len(root) != 1:
            raise invalid_root(root)
        try:
            return check_namespace(root.elems[0].decode("utf-8"))
        except UnicodeDecodeError:
            raise invalid_root(root) from None
        except InvalidNamespace as e:
            raise invalid(str(e)) from None

    @staticmethod
    def path(msg: Any, field: str, what: str) -> Path:
        try:
            return from_path(getattr(msg, field))
        except ValueError as e:
            raise invalid(f"Invalid {what}: {e}") from None

    @staticmethod
    def dtab(msg: Any) -> Dtab:
        if not msg.HasField("dtab"):
            return Dtab.empty
        try:
            return from_dtab(msg.dtab)
        except ValueError as e:
            raise invalid(f"Invalid dtab: {e}") from None

    # -- Interpreter ---------------------------------------------------------------------------
    def _bind(self, req: interpreter_pb2.BindReq) -> Activity[NameTree[NameBound]]:
        ns = self.namespace(req)
        if not req.HasField("name") or not req.name.elems:
            raise no_name()
        name = self.path(req, "name", "name")
        dtab = self.dtab(req)
        act: Activity[NameTree[NameBound]] = self.namespaces.interpreter(ns).bind(dtab, name)
        return act

    async def get_bound_tree(self, req: interpreter_pb2.BindReq) -> interpreter_pb2.BoundTreeRsp:
        activity = self._bind(req)
        tree = await _await(activity, REQUEST_TIMEOUT)
        return interpreter_pb2.BoundTreeRsp(tree=to_bound_tree(tree))

    async def stream_bound_tree(
        self, req: interpreter_pb2.BindReq
    ) -> AsyncIterator[interpreter_pb2.BoundTreeRsp]:
        activity = self._bind(req)
        async for rsp in _dedup(_states(activity, self._bound_tree_rsp)):
            yield rsp

    @staticmethod
    def _bound_tree_rsp(tree: NameTree[NameBound]) -> interpreter_pb2.BoundTreeRsp:
        return interpreter_pb2.BoundTreeRsp(tree=to_bound_tree(tree))

    # -- Resolver ------------------------------------------------------------------------------
    def addr(self, bound_id: Path) -> Var[Addr]:
        """The address set of a bound id through namerd's namers (Linkerd's
        ``ResolverService.bind``)."""
        path = strip_transformer_prefix(bound_id)
        var = self._addrs.get(path)
        if var is None:
            if len(self._addrs) > 10_000:
                self._addrs = {k: v for k, v in self._addrs.items() if v.observed}
            bound = self.namespaces.namers_only.bind(Dtab.empty, path)

            def compute() -> Addr:
                state = bound.sample()
                if state is Pending:
                    return AddrPending
                if isinstance(state, Failed):
                    return AddrFailed(state.error)
                assert isinstance(state, Ok)
                tree = state.value
                if isinstance(tree, Leaf):
                    found: Addr = tree.value.addr.sample()
                    return found
                if tree is Empty:
                    return AddrBound()
                if tree is Fail:
                    return AddrFailed("name tree failed")
                if tree is Neg:
                    return AddrNeg
                return AddrFailed(f"{path.show} is not a concrete bound id")

            var = self._addrs[path] = derive(compute)
        return var

    def _replicas_id(self, req: resolver_pb2.ReplicasReq) -> Path | None:
        if not req.HasField("id") or not req.id.elems:
            return None
        return self.path(req, "id", "id")

    async def get_replicas(self, req: resolver_pb2.ReplicasReq) -> resolver_pb2.Replicas:
        bound_id = self._replicas_id(req)
        if bound_id is None:
            return _no_id()
        var = self.addr(bound_id)
        try:
            addr = await asyncio.wait_for(
                var.changes(lambda a: a is not AddrPending), REQUEST_TIMEOUT
            )
        except TimeoutError:
            addr = AddrPending
        return to_replicas(addr)

    async def stream_replicas(
        self, req: resolver_pb2.ReplicasReq
    ) -> AsyncIterator[resolver_pb2.Replicas]:
        bound_id = self._replicas_id(req)
        if bound_id is None:
            yield _no_id()
            return
        var = self.addr(bound_id)

        async def values() -> AsyncIterator[resolver_pb2.Replicas]:
            async for addr in latest(var):
                yield to_replicas(addr)

        async for rsp in _dedup(values()):
            yield rsp

    # -- Delegator -----------------------------------------------------------------------------
    @staticmethod
    def _dtab_rsp(dtab: Dtab, version: bytes) -> delegator_pb2.DtabRsp:
        versioned = dtab_pb2.VersionedDtab(
            version=dtab_pb2.VersionedDtab.Version(id=version), dtab=to_dtab(dtab)
        )
        return delegator_pb2.DtabRsp(dtab=versioned)

    async def get_dtab(self, req: delegator_pb2.DtabReq) -> delegator_pb2.DtabRsp:
        ns = self.namespace(req)
        try:
            found = await self.store.get(ns)
        except Exception as e:
            raise internal(e) from None
        if found is None:
            raise root_not_found()
        return self._dtab_rsp(*found)

    async def stream_dtab(self, req: delegator_pb2.DtabReq) -> AsyncIterator[delegator_pb2.DtabRsp]:
        ns = self.namespace(req)
        try:
            async for dtab, version in self.store.watch(ns):
                if dtab is None or version is None:
                    raise root_not_found()
                yield self._dtab_rsp(dtab, version)
        except (Status, asyncio.CancelledError):
            raise
        except Exception as e:
            raise internal(e) from None

    async def get_delegate_tree(
        self, req: delegator_pb2.DelegateTreeReq
    ) -> delegator_pb2.DelegateTreeRsp:
        ns = self.namespace(req)
        if not req.HasField("tree"):
            raise no_name()
        try:
            tree = from_path_tree(req.tree)
        except ValueError as e:
            raise invalid(f"Invalid tree: {e}") from None
        dtab = self.dtab(req)
        interpreter = self.namespaces.interpreter(ns)
        activity = derive_activity(lambda: delegate_once(interpreter, dtab, tree))
        try:
            node = await activity.wait(DELEGATE_TIMEOUT)
        except TimeoutError:
            raise Status(grpc.StatusCode.UNAVAILABLE, "Request timed out.") from None
        except Exception as e:
            raise internal(e) from None
        return delegator_pb2.DelegateTreeRsp(tree=to_delegate_tree(node))

    async def stream_delegate_tree(
        self, req: delegator_pb2.DelegateTreeReq
    ) -> AsyncIterator[delegator_pb2.DelegateTreeRsp]:
        yield await self.get_delegate_tree(req)

    # -- Codec ---------------------------------------------------------------------------------
    async def read_path(self, req: codec_pb2.ReadPathReq) -> codec_pb2.ReadPathRsp:
        try:
            path = Path.read(req.text) if req.text else Path.empty
        except ParseError as e:
            raise invalid(str(e)) from None
        return codec_pb2.ReadPathRsp(path=to_path(path))

    async def show_path(self, req: codec_pb2.ShowPathReq) -> codec_pb2.ShowPathRsp:
        if not req.HasField("path"):
            return codec_pb2.ShowPathRsp()
        return codec_pb2.ShowPathRsp(text=self.path(req, "path", "path").show)

    async def read_dtab(self, req: codec_pb2.ReadDtabReq) -> codec_pb2.ReadDtabRsp:
        try:
            dtab = Dtab.read(req.text) if req.text else Dtab.empty
        except ParseError as e:
            raise invalid(str(e)) from None
        return codec_pb2.ReadDtabRsp(dtab=to_dtab(dtab))

    async def show_dtab(self, req: codec_pb2.ShowDtabReq) -> codec_pb2.ShowDtabRsp:
        if not req.HasField("dtab"):
            return codec_pb2.ShowDtabRsp()
        return codec_pb2.ShowDtabRsp(text=self.dtab(req).show)


def _no_id() -> resolver_pb2.Replicas:
    return resolver_pb2.Replicas(failed=resolver_pb2.Replicas.Failed(message="No ID provided"))


async def _await(activity: Activity[T], timeout: float) -> T:
    try:
        return await activity.wait(timeout)
    except TimeoutError:
        raise Status(grpc.StatusCode.UNAVAILABLE, "Request timed out.") from None
    except Exception as e:  # a failed binding
        raise internal(e) from None


async def _states(activity: Activity[T], render: Callable[[T], Any]) -> AsyncIterator[Any]:
    """Each Ok value of ``activity`` rendered; pending is skipped; a failure ends the stream
    with ``INTERNAL`` (Linkerd's ``VarEventStream`` of ``Activity.values``)."""
    state: State[T]
    async for state in latest(activity):
        if state is Pending:
            continue
        if isinstance(state, Failed):
            raise internal(state.error)
        assert isinstance(state, Ok)
        yield render(state.value)


async def _dedup(messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``messages`` without a message equal to the one before it."""
    last: bytes | None = None
    async for msg in messages:
        data = msg.SerializeToString(deterministic=True)
        if data != last:
            last = data
            yield msg


class MeshInterface:
    """The ``grpc.aio`` server of the four services (a ``NamerdInterface``), counting requests
    under ``interface/io.l5d.mesh/``."""

    def __init__(
        self,
        store: DtabStore,
        namespaces: Any,
        *,
        ip: str = "127.0.0.1",
        port: int = 4321,
        credentials: Any = None,
        metrics: MetricsTree | None = None,
    ) -> None:
        self.services = MeshServices(store, namespaces)
        self.ip = ip
        self.port = port
        self.credentials = credentials
        self.server: Any = None
        self._bound: tuple[str, int] | None = None
        self.open_streams = 0
        self.metrics = metrics
        if metrics is not None:
            metrics.gauge("interface", KIND, "open_streams", fn=lambda: float(self.open_streams))

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        options = [
            ("grpc.so_reuseport", 0),  # (grpcio's default would let two servers share a port)
            # namerd's streams are long and mostly idle: accept keepalive pings from linkers
            # (failureThreshold) at any rate, without data and without calls
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", 1000),
        ]
        server = grpc.aio.server(options=options)
        s = self.services
        self._add(
            server,
            "Interpreter",
            GetBoundTree=self._unary("GetBoundTree", s.get_bound_tree),
            StreamBoundTree=self._streaming("StreamBoundTree", s.stream_bound_tree),
        )
        self._add(
            server,
            "Resolver",
            GetReplicas=self._unary("GetReplicas", s.get_replicas),
            StreamReplicas=self._streaming("StreamReplicas", s.stream_replicas),
        )
        self._add(
            server,
            "Delegator",
            GetDtab=self._unary("GetDtab", s.get_dtab),
            StreamDtab=self._streaming("StreamDtab", s.stream_dtab),
            GetDelegateTree=self._unary("GetDelegateTree", s.get_delegate_tree),
            StreamDelegateTree=self._streaming("StreamDelegateTree", s.stream_delegate_tree),
        )
        self._add(
            server,
            "Codec",
            ReadPath=self._unary("ReadPath", s.read_path),
            ShowPath=self._unary("ShowPath", s.show_path),
            ReadDtab=self._unary("ReadDtab", s.read_dtab),
            ShowDtab=self._unary("ShowDtab", s.show_dtab),
        )
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        address = f"{host}:{self.port}"
        try:
            if self.credentials is not None:
                port = server.add_secure_port(address, self.credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError:  # (grpcio: "Failed to bind to address ...")
            port = 0
        if not port:
            raise OSError(errno.EADDRINUSE, "the address is in use or not available")
        await server.start()
        self.server = server
        self._bound = (self.ip, int(port))
        log.info("namerd io.l5d.mesh on %s:%d", self.ip, port)

    def address(self) -> tuple[str, int]:
        return self._bound if self._bound is not None else (self.ip, self.port)

    async def close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop(None)  # (open streams are cancelled)

    # -- dispatch and counting -----------------------------------------------------------------
    @staticmethod
    def _add(server: Any, service: str, **handlers: Any) -> None:
        _ADD[service](SimpleNamespace(**handlers), server)

    def _count(self, *key: str) -> None:
        if self.metrics is not None:
            self.metrics.counter("interface", KIND, *key).incr()

    def _finished(self, code: Any) -> None:
        self._count("status", code.name)
        ok = code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED)
        self._count("success" if ok else "failures")

    def _unary(
        self, name: str, fn: Callable[[Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def handler(request: Any, context: Any) -> Any:
            self._count("requests")
            self._count(name, "requests")
            try:
                response = await fn(request)
            except Status as s:
                self._finished(s.code)
                await context.abort(s.code, s.message)
            except asyncio.CancelledError:
                self._finished(grpc.StatusCode.CANCELLED)
                raise
            except Exception as e:
                log.exception("io.l5d.mesh %s failed", name)
                self._finished(grpc.StatusCode.INTERNAL)
                await context.abort(grpc.StatusCode.INTERNAL, str(e) or type(e).__name__)
            self._finished(grpc.StatusCode.OK)
            return response

        return handler

    def _streaming(
        self, name: str, fn: Callable[[Any], AsyncIterator[Any]]
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
            self._count("requests")
            self._count(name, "requests")
            self.open_streams += 1
            try:
                stream = fn(request)
                try:
                    async for response in stream:
                        yield response
                finally:
                    with contextlib.suppress(Exception):
                        await stream.aclose()  # type: ignore[attr-defined]
            except Status as s:
                self._finished(s.code)
                await context.abort(s.code, s.message)
            except (asyncio.CancelledError, GeneratorExit):
                self._finished(grpc.StatusCode.CANCELLED)  # (the client went away)
                raise
            except Exception as e:
                log.exception("io.l5d.mesh %s failed", name)
                self._finished(grpc.StatusCode.INTERNAL)
                await context.abort(grpc.StatusCode.INTERNAL, str(e) or type(e).__name__)
            else:
                self._finished(grpc.StatusCode.OK)
            finally:
                self.open_streams -= 1

        return handler


__all__ = [
    "DELEGATE_TIMEOUT",
    "REQUEST_TIMEOUT",
    "MeshInterface",
    "MeshServices",
    "Status",
    "latest",
    "strip_transformer_prefix",
]
