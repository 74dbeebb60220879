"""``io.l5d.httpController``: namerd's HTTP API under ``/api/1`` (Linkerd's
``HttpControlService``), on loopback port 4180 by default.

==========================================  ===============================================
``GET /api/1/dtabs``                        sorted namespace list (JSON); ``watch``
``GET|HEAD /api/1/dtabs/<ns>``              the dtab (``Accept``: JSON by default,
                                            ``application/dtab``, ``text/plain``) and its
                                            ``ETag``; 404; ``watch`` (GET)
``POST /api/1/dtabs/<ns>``                  create: 204; 409 exists; 400 bad body or type
``PUT /api/1/dtabs/<ns>``                   upsert: 204; with ``If-Match``: 404 missing,
                                            412 stale version; 400 bad body or type
``DELETE /api/1/dtabs/<ns>``                204; 404
``GET /api/1/bind/<ns>?path=&dtab=``        the bound tree; ``watch``
``GET /api/1/addr/<ns>?path=<bound id>``    the address set of a bound id; ``watch``
``GET /api/1/resolve/<ns>?path=&dtab=``     bind, pick one leaf, its address set; ``watch``
``GET /api/1/delegate/<ns>?path=&dtab=``    the delegate tree (``/delegator.json`` form)
``GET /api/1/delegate?path=&dtab=``         the given dtab against the namers only
``GET /api/1/bound-names``                  ids the namers can enumerate
==========================================  ===============================================

``watch=true`` (or ``1``) answers a chunked response that does not end: the current value
first, then each change (deduplicated) as one JSON document (or dtab text) and ``\\n``; a
failure writes its message and ``\\n`` and ends the stream. Anything else is 404, and an
invalid ``path`` is 400 ``Invalid path: <p> / <reason>``, as in Linkerd. A namespace name
with ``/``, or ``.``/``..``, is refused with 400 (Linkerd accepted anything its store did).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from ..errors import BindingError, ParseError
from ..naming import (
    Activity,
    Addr,
    AddrBound,
    AddrNeg,
    AddrPending,
    Alt,
    Dtab,
    Empty,
    Fail,
    Failed,
    Leaf,
    NameBound,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
    Union,
    Var,
    Weighted,
    addr_json,
    delegate,
    derive_activity,
)
from .codec import (
    JSON,
    DtabBodyError,
    accept_media_type,
    body_media_type,
    bound_tree_to_json,
    read_dtab,
    write_dtab,
)
from .runtime import NamespaceInterpreters
from .store import (
    DtabStore,
    DtabStoreForbidden,
    InvalidNamespace,
    NamespaceExists,
    NamespaceNotFound,
    VersionMismatch,
    check_namespace,
    parse_version,
    version_string,
)

log = logging.getLogger("turnout.namerd.http")

PREFIX = "/api/1"
T = TypeVar("T")

#: longest a non-watch bind/addr/resolve waits for a pending value before 503
REQUEST_TIMEOUT = 10.0


class _BadRequest(Exception):
    pass


def _text(status: int, text: str = "") -> web.Response:
    return web.Response(status=status, text=text) if text else web.Response(status=status)


def _json_body(data: Any) -> str:
    return json.dumps(data) + "\n"


def _is_watch(request: web.Request) -> bool:
    return request.query.get("watch", "").lower() in ("true", "1")


def _path_param(request: web.Request) -> Path:
    raw = request.query.get("path")
    try:
        if raw is None:
            raise ParseError("", 0, "a 'path' parameter")
        return Path.read(raw)
    except ParseError as e:
        raise _BadRequest(f"Invalid path: {raw} / {e}") from None


def _dtab_param(request: web.Request) -> Dtab | None:
    raw = request.query.get("dtab")
    if raw is None:
        return None
    try:
        return Dtab.read(raw)
    except ParseError as e:
        raise _BadRequest(f"Invalid dtab: {e}") from None


async def latest(var: Var[T]) -> AsyncIterator[T]:
    """The values of ``var``: the current one, then the latest after each change (values a
    slow reader missed are skipped)."""
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


def pick_leaf(tree: NameTree[NameBound], rng: random.Random | None = None) -> Path | None:
    """One bound id of a tree (Linkerd's ``ResolveHandler.flattenTree``): the first viable
    alternative, a union branch at random by weight."""
    rng = rng or random.Random()
    if isinstance(tree, Leaf):
        bound: NameBound = tree.value
        return bound.id
    if isinstance(tree, Alt):
        for t in tree.trees:
            found = pick_leaf(t, rng)
            if found is not None:
                return found
        return None
    if isinstance(tree, Union):
        if not tree.trees:
            return None
        weights = [max(w.weight, 0.0) for w in tree.trees]
        if sum(weights) <= 0:
            weights = [1.0] * len(weights)
        chosen: Weighted[NameBound] = rng.choices(tree.trees, weights=weights)[0]
        return pick_leaf(chosen.tree, rng)
    return None


class HttpController:
    """The ``/api/1`` application and its listener (a :class:`~turnout.namerd.NamerdInterface`)."""

    def __init__(
        self,
        store: DtabStore,
        namespaces: NamespaceInterpreters,
        *,
        ip: str = "127.0.0.1",
        port: int = 4180,
        ssl_context: Any = None,
        metrics: Any = None,
    ) -> None:
        self.store = store
        self.namespaces = namespaces
        self.ip = ip
        self.port = port
        self.ssl_context = ssl_context
        middlewares: list[Any] = []
        if metrics is not None:  # interface/io.l5d.httpController/... request counts
            from .metrics import http_metrics_middleware

            middlewares.append(http_metrics_middleware(metrics))
        self.app = web.Application(middlewares=middlewares)
        self.app.router.add_route("*", "/{tail:.*}", self.dispatch)
        self.runner: web.AppRunner | None = None
        self._bound: tuple[str, int] | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._addrs: dict[Path, Activity[Addr]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        # handler_cancellation: a watch whose client went away ends at once (its handler is
        # cancelled), instead of at the next change it fails to write
        self.runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.ip, self.port, ssl_context=self.ssl_context)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else self.port
        self._bound = (self.ip, port)
        log.info("namerd io.l5d.httpController on %s:%d", self.ip, port)

    def address(self) -> tuple[str, int]:
        return self._bound if self._bound is not None else (self.ip, self.port)

    async def close(self) -> None:
        for task in list(self._streams):
            task.cancel()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # -- routing ---------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = request.rel_url.raw_path
        method = request.method
        try:
            if raw in (f"{PREFIX}/dtabs", f"{PREFIX}/dtabs/"):
                if method in ("GET", "HEAD"):
                    return await self.list_dtabs(request)
                return _text(404)
            for name, handler in (
                ("dtabs", self.dtab),
                ("bind", self.bind),
                ("addr", self.addr),
                ("resolve", self.resolve),
                ("delegate", self.delegate),
            ):
                head = f"{PREFIX}/{name}/"
                if raw.startswith(head) and len(raw) > len(head):
                    ns = self._namespace(raw[len(head) :])
                    if name != "dtabs" and method != "GET":
                        return _text(404)
                    return await handler(request, ns)
            if raw == f"{PREFIX}/delegate" and method == "GET":
                return await self.delegate(request, None)
            if raw == f"{PREFIX}/bound-names" and method == "GET":
                return await self.bound_names(request)
            return _text(404)
        except _BadRequest as e:
            return _text(400, str(e))
        except InvalidNamespace as e:
            return _text(400, str(e))
        except DtabStoreForbidden as e:
            return _text(403, str(e))
        except web.HTTPException:
            raise
        except Exception as e:  # the store failed (ZooKeeper, etcd... unreachable)
            log.warning("%s %s: dtab store failure: %s: %s", method, raw, type(e).__name__, e)
            return _text(503, f"dtab store unavailable: {type(e).__name__}: {e}")

    def _namespace(self, raw: str) -> str:
        return check_namespace(urllib.parse.unquote(raw))

    # -- dtabs -----------------------------------------------------------------------------
    async def list_dtabs(self, request: web.Request) -> web.StreamResponse:
        if _is_watch(request):

            async def lists() -> AsyncIterator[str]:
                async for names in self.store.watch_list():
                    yield _json_body(names)

            return await self._stream(request, JSON, lists())
        return web.Response(text=_json_body(await self.store.list()), content_type=JSON)

    async def dtab(self, request: web.Request, ns: str) -> web.StreamResponse:
        method = request.method
        if method in ("GET", "HEAD"):
            return await self._get_dtab(request, ns, head=method == "HEAD")
        if method in ("PUT", "POST"):
            media = body_media_type(request.headers.get("Content-Type", ""))
            if media is None:
                ct = request.headers.get("Content-Type", "")
                return _text(400, f'Invalid Content-Type "{ct}". ')
            try:
                dtab = read_dtab(await request.read(), media)
            except DtabBodyError as e:
                return _text(400, str(e))
            if method == "POST":
                try:
                    await self.store.create(ns, dtab)
                except NamespaceExists:
                    return _text(409)
                return _text(204)
            if_match = request.headers.get("If-Match")
            if if_match is None:
                await self.store.put(ns, dtab)
                return _text(204)
            expected = parse_version(if_match)
            try:
                if expected is None:
                    if await self.store.get(ns) is None:
                        raise NamespaceNotFound(ns)
                    raise VersionMismatch()
                await self.store.put(ns, dtab, expected)
            except NamespaceNotFound:
                return _text(404)
            except VersionMismatch:
                return _text(412)
            return _text(204)
        if method == "DELETE":
            try:
                await self.store.delete(ns)
            except NamespaceNotFound:
                return _text(404)
            return _text(204)
        return _text(404)

    async def _get_dtab(self, request: web.Request, ns: str, *, head: bool) -> web.StreamResponse:
        media = accept_media_type(request.headers.get("Accept", ""))
        if _is_watch(request) and not head:

            async def dtabs() -> AsyncIterator[str]:
                async for dtab, _ in self.store.watch(ns):
                    if dtab is not None:  # (Linkerd writes nothing while it is missing)
                        yield write_dtab(dtab, media)

            return await self._stream(request, media, dtabs())
        found = await self.store.get(ns)
        if found is None:
            return _text(404)
        dtab, version = found
        headers = {"ETag": version_string(version)}
        if head:
            return web.Response(status=200, headers=headers)
        return web.Response(text=write_dtab(dtab, media), content_type=media, headers=headers)

    # -- bind, addr, resolve ---------------------------------------------------------------
    def _bind(self, request: web.Request, ns: str) -> Activity[NameTree[NameBound]]:
        path = _path_param(request)
        extra = _dtab_param(request)
        return self.namespaces.interpreter(ns).bind(extra or Dtab.empty, path)

    async def bind(self, request: web.Request, ns: str) -> web.StreamResponse:
        activity = self._bind(request, ns)

        def render(tree: NameTree[NameBound]) -> str:
            return _json_body(bound_tree_to_json(tree))

        if _is_watch(request):
            stream = _rendered(activity, render, prepare=_settle_leaves)
            return await self._stream(request, JSON, stream)
        obs = activity.observe(lambda _: None)  # keep it bound while leaves resolve
        try:
            tree = await self._await(activity)
            await _settle_leaves(tree)
            return web.Response(text=render(tree), content_type=JSON)
        except _Unavailable as e:
            return _text(e.status, e.message)
        finally:
            obs.close()

    def addr_activity(self, path: Path) -> Activity[Addr]:
        """The address set of a bound id, through namerd's namers (no dtab)."""
        path = strip_transformer_prefix(path)
        act = self._addrs.get(path)
        if act is None:
            if len(self._addrs) > 10_000:
                self._addrs = {k: a for k, a in self._addrs.items() if a.observed}
            bound = self.namespaces.namers_only.bind(Dtab.empty, path)

            def compute() -> State[Addr]:
                state = bound.sample()
                if not isinstance(state, Ok):
                    return state  # type: ignore[return-value]  # Pending or Failed
                tree = state.value.simplified
                if isinstance(tree, Leaf):
                    addr = tree.value.addr.sample()
                    return Pending if addr is AddrPending else Ok(addr)
                if tree is Empty:
                    return Ok(AddrBound())
                if tree is Neg:
                    return Ok(AddrNeg)
                if tree is Fail:
                    return Failed(BindingError("name tree failed"))
                return Failed(BindingError(f"{path.show} is not a concrete bound id"))

            act = self._addrs[path] = derive_activity(compute)
        return act

    async def addr(self, request: web.Request, ns: str) -> web.StreamResponse:
        activity = self.addr_activity(_path_param(request))
        return await self._addr_response(request, activity)

    async def resolve(self, request: web.Request, ns: str) -> web.StreamResponse:
        bound = self._bind(request, ns)

        def compute() -> State[Addr]:
            state = bound.sample()
            if not isinstance(state, Ok):
                return state  # type: ignore[return-value]  # Pending or Failed
            picked = pick_leaf(state.value)
            if picked is None:
                return Ok(AddrNeg)
            return self.addr_activity(picked).sample()

        return await self._addr_response(request, derive_activity(compute))

    async def _addr_response(
        self, request: web.Request, activity: Activity[Addr]
    ) -> web.StreamResponse:
        def render(addr: Addr) -> str:
            return _json_body(addr_json(addr))

        if _is_watch(request):
            return await self._stream(request, JSON, _rendered(activity, render))
        try:
            return web.Response(text=render(await self._await(activity)), content_type=JSON)
        except _Unavailable as e:
            return _text(e.status, e.message)

    async def _await(self, activity: Activity[T]) -> T:
        try:
            return await activity.wait(REQUEST_TIMEOUT)
        except TimeoutError:
            raise _Unavailable(503, "Request timed out.") from None
        except Exception as e:  # a failed binding
            raise _Unavailable(500, str(e) or type(e).__name__) from None

    # -- delegate, bound names -------------------------------------------------------------
    async def delegate(self, request: web.Request, ns: str | None) -> web.StreamResponse:
        path = _path_param(request)
        extra = _dtab_param(request) or Dtab.empty
        interpreter = (
            self.namespaces.interpreter(ns) if ns is not None else self.namespaces.namers_only
        )
        try:
            tree = await delegate(interpreter, extra, path, timeout=2.0)
        except TimeoutError:
            return _text(503, "Request timed out.")
        except BindingError as e:
            return _text(400, str(e))
        return web.Response(text=_json_body(tree.to_json()), content_type=JSON)

    async def bound_names(self, request: web.Request) -> web.StreamResponse:
        if _is_watch(request):
            return _text(501, "watch=true is not implemented for /api/1/bound-names yet")
        names: set[str] = set()
        for _prefix, namer in self.namespaces.namers:
            for path in namer.bound_names() or ():
                names.add(str(path))
        return web.Response(text=_json_body(sorted(names)), content_type=JSON)

    # -- streaming -------------------------------------------------------------------------
    async def _stream(
        self, request: web.Request, media: str, chunks: AsyncIterator[str]
    ) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = media
        response.enable_chunked_encoding()
        await response.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            async for chunk in chunks:
                await response.write(chunk.encode("utf-8"))
        except _StreamFailed as e:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write((e.message + "\n").encode("utf-8"))
        except (ConnectionError, RuntimeError):
            return response  # the client went away
        except Exception as e:  # a store failure
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write((f"{type(e).__name__}: {e}\n").encode())
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
            if task is not None:
                self._streams.discard(task)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response


class _Unavailable(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _StreamFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _rendered(
    activity: Activity[T],
    render: Callable[[T], str],
    prepare: Callable[[T], Awaitable[None]] | None = None,
) -> AsyncIterator[str]:
    """Each Ok value of ``activity`` rendered (after ``prepare(value)``, when given),
    deduplicated; a failure ends the stream."""
    last: str | None = None
    async for state in latest(activity):
        if state is Pending:
            continue
        if isinstance(state, Failed):
            raise _StreamFailed(str(state.error) or type(state.error).__name__)
        assert isinstance(state, Ok)
        if prepare is not None:
            await prepare(state.value)
        text = render(state.value)
        if text != last:
            last = text
            yield text


async def _settle_leaves(tree: NameTree[NameBound], timeout: float = 2.0) -> None:
    """Wait (bounded) for the first address set of every leaf, so a bind shows them."""
    leaves = list(tree.eval() or ())
    waits: list[Awaitable[Any]] = [
        b.addr.changes(lambda a: a is not AddrPending) for b in leaves if isinstance(b, NameBound)
    ]
    if waits:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), timeout)


__all__ = ["PREFIX", "HttpController", "latest", "pick_leaf", "strip_transformer_prefix"]
