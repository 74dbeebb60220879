"""``io.l5d.mesh``, the linker side: a router interpreter that lets namerd bind through its
gRPC API (Linkerd's ``io.buoyant.interpreter.mesh.Client``).

For every name the router binds, the interpreter holds an ``Interpreter.StreamBoundTree``
stream (``root`` = the namespace, the dtab given to ``bind`` — the router's ``dtab`` and the
request's overrides — as ``dtab``), and for every bound id of the trees it receives, a
``Resolver.StreamReplicas`` stream. All streams share one HTTP/2 connection to namerd
(``grpc.aio``, in the linker's event loop); ``dst`` is bound through the linker's own namers
to find namerd, one of its addresses at random.

When a stream breaks (namerd stopped or unreachable, an error status), the last good tree and
address sets stay in force, and the stream is opened again after an exponential jittered
backoff between ``retry.baseSeconds`` and ``retry.maxSeconds`` (on a new connection when
namerd was unreachable, to an address ``dst`` binds to then). A name that was never bound stays
pending (the router answers it after ``bindingTimeoutMs``); an error status from namerd (it
answered, but refused) for a name that never had a good tree fails that binding, as core's
``io.l5d.namerd.http`` does.
"""

# mypy: disable-error-code="import-untyped"
# (grpcio ships no type information: grpc is Any here)

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from turnout.api import (
    Activity,
    Addr,
    AddrBound,
    AddrPending,
    Dtab,
    Failed,
    Leaf,
    NameBound,
    NameInterpreter,
    NameTree,
    Ok,
    Path,
    Pending,
    State,
    Var,
)

from .config import KIND
from .convert import from_bound_tree, from_replicas, to_dtab, to_path, to_path_tree
from .generated import delegator_pb2, interpreter_pb2, resolver_pb2

log = logging.getLogger("turnout.namerd.mesh.interpreter")

_BIND = "/io.linkerd.mesh.Interpreter/StreamBoundTree"
_REPLICAS = "/io.linkerd.mesh.Resolver/StreamReplicas"
_DELEGATE = "/io.linkerd.mesh.Delegator/GetDelegateTree"

#: status codes that say namerd was not reached (or the call was cut), rather than refused
_TRANSPORT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class MeshError(Exception):
    """namerd answered something other than a good stream."""


def exponential_jittered(base: float, maximum: float) -> Iterator[float]:
    """Finagle's ``Backoff.exponentialJittered`` (Linkerd's ``retry``): ``base`` first, then
    a random delay between ``base`` and ``min(base * 2**n, maximum)``."""
    yield base
    n = 1
    while True:
        ceiling = min(base * 2**n, maximum)
        yield random.uniform(base, ceiling) if ceiling > base else base
        if base * 2**n < maximum:
            n += 1


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime())


class _Channel:
    """One connection to namerd and the streams using it."""

    def __init__(self, channel: Any, target: str) -> None:
        self.channel = channel
        self.target = target
        self.users = 0
        self.broken = False


class MeshInterpreter(NameInterpreter):
    """See the module docstring."""

    def __init__(
        self,
        dst: Path,
        root: Path,
        *,
        dst_binder: NameInterpreter,
        retry: tuple[float, float] = (1.0, 600.0),
        label: str = "",
        credentials: Any = None,
        channel_options: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.dst = dst
        self.root = root
        self.retry = retry
        self.label = label
        self.credentials = credentials
        self.channel_options = list(channel_options or [])
        self._dst_binder = dst_binder
        self._binds: dict[tuple[Dtab, Path], Activity[NameTree[NameBound]]] = {}
        self._addrs: dict[Path, Var[Addr]] = {}
        self._channel: _Channel | None = None
        self._channel_lock: asyncio.Lock | None = None
        self._old: set[_Channel] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        #: counters (``rt/<router>/interpreter/io.l5d.mesh/...``): streams opened, streams
        #: that broke or could not open, messages received
        self.connects = 0
        self.failures = 0
        self.updates = 0
        #: each open stream: (kind, name) → what the state page shows of it
        self.watches: dict[tuple[str, str], dict[str, Any]] = {}

    # -- NameInterpreter -----------------------------------------------------------------------
    @property
    def can_delegate(self) -> bool:
        # names bind in namerd: /delegator.json asks namerd (remote_delegate), as does the
        # interpreter's own admin page (see plugin.py)
        return False

    async def remote_delegate(self, dtab: Dtab, path: Path) -> Any:
        """namerd's delegate tree (``Delegator.GetDelegateTree``) in ``/delegator.json``
        form: what turnout's ``/delegator.json`` answers for this router."""
        from .delegate_json import delegate_tree_json

        try:
            return delegate_tree_json(await self.delegate(dtab, path))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ValueError(f"namerd: {e.details()}") from None
            raise RuntimeError(f"namerd: {e.code().name}: {e.details()}") from None

    def namer_lookup(self, path: Path) -> State[Any]:
        return Failed(NotImplementedError(f"{KIND} binds through namerd"))

    def bind(self, dtab: Dtab, path: Path) -> Activity[NameTree[NameBound]]:
        key = (dtab, path)
        act = self._binds.get(key)
        if act is None:
            if len(self._binds) > 10_000:
                self._binds = {k: a for k, a in self._binds.items() if a.observed}
            request = interpreter_pb2.BindReq(
                root=to_path(self.root), name=to_path(path), dtab=to_dtab(dtab)
            )
            name = path.show + (f" dtab {dtab.show}" if len(dtab) else "")
            act = self._binds[key] = Activity(
                Pending, start=self._starter("bind", name, _BIND, request, self._decode_bind)
            )
        return act

    def addr(self, bound_id: Path) -> Var[Addr]:
        """The address set of a bound id, streamed from namerd's Resolver."""
        var = self._addrs.get(bound_id)
        if var is None:
            if len(self._addrs) > 10_000:
                self._addrs = {k: v for k, v in self._addrs.items() if v.observed}
            request = resolver_pb2.ReplicasReq(id=to_path(bound_id))
            var = self._addrs[bound_id] = Var(
                AddrPending,
                start=self._starter(
                    "resolve", bound_id.show, _REPLICAS, request, self._decode_addr
                ),
            )
        return var

    async def delegate(self, dtab: Dtab, path: Path, timeout: float = 10.0) -> Any:
        """namerd's delegate tree of ``path`` (``Delegator.GetDelegateTree``), as a message."""
        request = delegator_pb2.DelegateTreeReq(
            root=to_path(self.root), tree=to_path_tree_leaf(path), dtab=to_dtab(dtab)
        )
        channel = await self._acquire()
        try:
            call = channel.channel.unary_unary(
                _DELEGATE,
                request_serializer=delegator_pb2.DelegateTreeReq.SerializeToString,
                response_deserializer=delegator_pb2.DelegateTreeRsp.FromString,
            )
            return (await call(request, timeout=timeout)).tree
        finally:
            await self._release(channel, broken=False)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        channels = list(self._old) + ([self._channel] if self._channel is not None else [])
        self._channel, self._old = None, set()
        for ch in channels:
            with contextlib.suppress(Exception):
                await ch.channel.close()

    def state(self) -> dict[str, Any]:
        """What ``/<router>/interpreter_state/io.l5d.mesh/<namespace>.json`` shows."""
        watches: dict[str, list[dict[str, Any]]] = {"bind": [], "resolve": []}
        for (kind, name), info in sorted(self.watches.items()):
            watches[kind].append({"path": name, **info})
        channel = self._channel
        return {
            "kind": KIND,
            "dst": self.dst.show,
            "root": self.root.show,
            "namerd": channel.target if channel is not None else None,
            "connects": self.connects,
            "failures": self.failures,
            "updates": self.updates,
            "watches": watches,
        }

    # -- decoding ------------------------------------------------------------------------------
    def _decode_bind(self, rsp: interpreter_pb2.BoundTreeRsp) -> State[NameTree[NameBound]] | None:
        if not rsp.HasField("tree"):
            return None  # (Linkerd skips such a message)
        return Ok(from_bound_tree(rsp.tree, self.addr))

    @staticmethod
    def _decode_addr(rsp: resolver_pb2.Replicas) -> Addr | None:
        return from_replicas(rsp)

    # -- streams -------------------------------------------------------------------------------
    def _starter(
        self,
        kind: str,
        name: str,
        method: str,
        request: Any,
        decode: Callable[[Any], Any],
    ) -> Callable[[Any], Callable[[], None]]:
        def start(var: Any) -> Callable[[], None]:
            if self._closed:
                return lambda: None
            coro = self._watch(kind, name, method, request, decode, var)
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

            def stop() -> None:
                task.cancel()

            return stop

        return start

    async def _watch(
        self,
        kind: str,
        name: str,
        method: str,
        request: Any,
        decode: Callable[[Any], Any],
        var: Any,
    ) -> None:
        key = (kind, name)
        info: dict[str, Any] = {
            "connected": False,
            "lastError": None,
            "updates": 0,
            "lastRequestAt": None,
            "lastResponseAt": None,
        }
        self.watches[key] = info
        try:
            await self._watch_loop(kind, name, method, request, decode, var, info)
        finally:
            if self.watches.get(key) is info:  # (a restarted watch may have replaced it)
                del self.watches[key]

    async def _watch_loop(
        self,
        kind: str,
        name: str,
        method: str,
        request: Any,
        decode: Callable[[Any], Any],
        var: Any,
        info: dict[str, Any],
    ) -> None:
        delays = exponential_jittered(*self.retry)
        good = False
        response_type = interpreter_pb2.BoundTreeRsp if kind == "bind" else resolver_pb2.Replicas
        while True:
            channel: _Channel | None = None
            broken = False
            try:
                channel = await self._acquire()
                call = channel.channel.unary_stream(
                    method,
                    request_serializer=type(request).SerializeToString,
                    response_deserializer=response_type.FromString,
                )(request)
                self.connects += 1
                info["lastRequestAt"] = _now()
                async for rsp in call:
                    try:
                        value = decode(rsp)
                    except ValueError as e:
                        raise MeshError(f"namerd sent a message turnout cannot read: {e}") from None
                    info["lastResponseAt"] = _now()
                    if value is None:
                        continue
                    good = True
                    info["connected"] = True
                    info["updates"] += 1
                    self.updates += 1
                    delays = exponential_jittered(*self.retry)  # connected: start over
                    var.update(value)
                raise MeshError("namerd ended the stream")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.failures += 1
                answered = isinstance(e, MeshError)
                if isinstance(e, grpc.aio.AioRpcError):
                    code = e.code()
                    message = f"{code.name}: {e.details()}"
                    answered = code not in _TRANSPORT
                    broken = code == grpc.StatusCode.UNAVAILABLE
                else:
                    message = str(e) or type(e).__name__
                    broken = not answered
                info["connected"] = False
                info["lastError"] = message
                if not good and answered and kind == "bind":
                    var.update(Failed(MeshError(f"namerd: {message}")))
                delay = next(delays)
                log.warning(
                    "namerd %s stream %s %s failed: %s; %s; again in %.1fs",
                    KIND,
                    kind,
                    name,
                    message,
                    "keeping the last good value" if good else "nothing bound yet",
                    delay,
                )
            finally:
                if channel is not None:
                    await self._release(channel, broken=broken)
            await asyncio.sleep(delay)

    # -- the connection ------------------------------------------------------------------------
    async def _acquire(self) -> _Channel:
        if self._channel_lock is None:
            self._channel_lock = asyncio.Lock()
        async with self._channel_lock:
            if self._channel is None or self._channel.broken:
                target = await self._target()
                if self.credentials is not None:
                    raw = grpc.aio.secure_channel(target, self.credentials, self.channel_options)
                else:
                    raw = grpc.aio.insecure_channel(target, self.channel_options)
                self._channel = _Channel(raw, target)
            channel = self._channel
            channel.users += 1
            return channel

    async def _release(self, channel: _Channel, *, broken: bool) -> None:
        """A stream is done with ``channel``. A channel namerd could not be reached through
        is replaced (the next stream binds ``dst`` again); it is closed with its last user."""
        channel.users -= 1
        if broken and not channel.broken:
            channel.broken = True
            if self._channel is channel:
                self._channel = None
            self._old.add(channel)
        if channel.broken and channel.users <= 0 and channel in self._old:
            self._old.discard(channel)
            with contextlib.suppress(Exception):
                await channel.channel.close()

    async def _target(self) -> str:
        """``host:port`` of namerd, from ``dst`` bound through the linker's namers."""
        act = self._dst_binder.bind(Dtab.empty, self.dst)
        obs = act.observe(lambda _: None)
        try:
            tree = await act.wait(10.0)
            leaves = sorted(tree.eval() or (), key=lambda b: b.id)
            if not leaves:
                raise MeshError(f"dst {self.dst.show} does not bind to an address")
            leaf = random.choice(leaves)
            addr = await asyncio.wait_for(leaf.addr.changes(lambda a: a is not AddrPending), 10.0)
        except TimeoutError:
            raise MeshError(f"dst {self.dst.show} did not bind within 10s") from None
        finally:
            obs.close()
        if not isinstance(addr, AddrBound) or not addr.addresses:
            raise MeshError(f"dst {self.dst.show} has no addresses ({addr!r})")
        address = random.choice(addr.sorted())
        host = f"[{address.host}]" if ":" in address.host else address.host
        return f"{host}:{address.port}"


def to_path_tree_leaf(path: Path) -> Any:
    return to_path_tree(Leaf(path))


__all__ = ["MeshError", "MeshInterpreter", "exponential_jittered"]
