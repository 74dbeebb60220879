"""``io.l5d.namerd.http``: a router interpreter that lets namerd bind (Linkerd's
``NamerdHttpInterpreterConfig`` and ``StreamingNamerClient``).

For every name the router binds, the interpreter holds a watch on namerd's
``/api/1/bind/<namespace>?path=<name>&watch=1`` (plus ``&dtab=`` with the request's dtab
overrides), and for every bound id in the trees it receives, a watch on
``/api/1/addr/<namespace>?path=<id>&watch=1``. The linker's own namers are not used.

When a watch breaks (namerd stopped, network down, namerd answered an error), the last good
tree and address sets stay in force, and the watch is opened again after an exponential,
jittered backoff between ``retry.baseSeconds`` and ``retry.maxSeconds``. A name that was
never bound stays pending (the router answers it after ``bindingTimeoutMs``); an error
line from namerd for a name that never had a good tree fails that binding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from ..naming import (
    Activity,
    Addr,
    AddrBound,
    AddrPending,
    ConfiguredNamersInterpreter,
    Dtab,
    Failed,
    GlobalNamer,
    NameBound,
    NameInterpreter,
    Namer,
    NameTree,
    Ok,
    Path,
    Pending,
    State,
    Var,
)
from ..router.backoff import exponential_jittered_backoff
from .codec import addr_from_json, bound_tree_from_json
from .http_api import pick_leaf

log = logging.getLogger("turnout.namerd.interpreter")

#: the longest line (one JSON document) read from namerd
MAX_LINE = 16 * 1024 * 1024


class NamerdError(Exception):
    """namerd answered something other than a good watch stream."""


def jittered_backoff(base: float, maximum: float) -> Iterator[float]:
    """The delays between reconnections to namerd (``retry``): Finagle's
    ``Backoff.exponentialJittered``, as Linkerd's namerd interpreter used."""
    return exponential_jittered_backoff(base, maximum)()


class NamerdHttpInterpreter(NameInterpreter):
    """See the module docstring."""

    def __init__(
        self,
        dst: Path,
        namespace: str,
        *,
        namers: list[tuple[Path, Namer]],
        global_namer: GlobalNamer,
        retry: tuple[float, float] = (5.0, 600.0),
        label: str = "",
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        self.dst = dst
        self.namespace = namespace
        self.retry = retry
        self.label = label
        #: TLS to namerd (None: plain HTTP) and the name its certificate must carry
        self.ssl_context = ssl_context
        self.server_name = server_name
        self._dst_binder = ConfiguredNamersInterpreter(namers, global_namer)
        self._binds: dict[tuple[Dtab, Path], Activity[NameTree[NameBound]]] = {}
        self._addrs: dict[Path, Var[Addr]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        #: counters (``rt/<router>/interpreter/io.l5d.namerd.http/...``): watch connections
        #: opened, watches that broke or failed to open, documents received
        self.connects = 0
        self.failures = 0
        self.updates = 0
        #: each open watch: (path, params) → {"connected", "last_error", "updates"}
        self.watches: dict[tuple[str, str], dict[str, Any]] = {}

    # -- NameInterpreter -------------------------------------------------------------------
    @property
    def can_delegate(self) -> bool:
        return False

    def namer_lookup(self, path: Path) -> State[Any]:
        return Failed(NotImplementedError("io.l5d.namerd.http binds through namerd"))

    async def remote_delegate(self, dtab: Dtab, path: Path) -> Any:
        """namerd's delegate tree (``GET /api/1/delegate/<namespace>?path=&dtab=``, the
        stored dtab followed by ``dtab``), as Linkerd's namerd interpreters delegate."""
        base = await self._base_url()
        tls: dict[str, Any] = {}
        if self.ssl_context is not None:
            tls = {"ssl": self.ssl_context, "server_hostname": self.server_name}
        params = {"path": path.show, "dtab": dtab.show}
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{base}/api/1/delegate/{self.namespace}", params=params, **tls) as resp,
        ):
            text = await resp.text()
            if resp.status == 400:
                raise ValueError(f"namerd: {text.strip()[:500]}")
            if resp.status != 200:
                raise NamerdError(f"namerd answered {resp.status}: {text.strip()[:500]}")
            return json.loads(text)

    def bind(self, dtab: Dtab, path: Path) -> Activity[NameTree[NameBound]]:
        key = (dtab, path)
        act = self._binds.get(key)
        if act is None:
            if len(self._binds) > 10_000:
                self._binds = {k: a for k, a in self._binds.items() if a.observed}
            act = self._binds[key] = Activity(
                Pending, start=self._starter(self._bind_url(dtab, path))
            )
        return act

    def addr(self, bound_id: Path) -> Var[Addr]:
        var = self._addrs.get(bound_id)
        if var is None:
            if len(self._addrs) > 10_000:
                self._addrs = {k: v for k, v in self._addrs.items() if v.observed}
            params = {"path": bound_id.show, "watch": "1"}
            var = self._addrs[bound_id] = Var(
                AddrPending,
                start=self._starter((f"/api/1/addr/{self.namespace}", params), addr=True),
            )
        return var

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def state(self) -> dict[str, Any]:
        """What ``/<router>/interpreter_state/io.l5d.namerd.http/<namespace>.json`` shows."""
        watches: dict[str, list[dict[str, Any]]] = {"bind": [], "addr": []}
        for (path, name), info in sorted(self.watches.items()):
            kind = "addr" if path.startswith("/api/1/addr/") else "bind"
            watches[kind].append({"path": name, **info})
        return {
            "kind": "io.l5d.namerd.http",
            "dst": self.dst.show,
            "namespace": self.namespace,
            "connects": self.connects,
            "failures": self.failures,
            "updates": self.updates,
            "watches": watches,
        }

    # -- watching --------------------------------------------------------------------------
    def _bind_url(self, dtab: Dtab, path: Path) -> tuple[str, dict[str, str]]:
        params = {"path": path.show, "watch": "1"}
        if len(dtab):
            params["dtab"] = dtab.show
        return f"/api/1/bind/{self.namespace}", params

    def _starter(
        self, request: tuple[str, dict[str, str]], *, addr: bool = False
    ) -> Callable[[Any], Callable[[], None]]:
        def start(var: Any) -> Callable[[], None]:
            if self._closed:
                return lambda: None
            task = asyncio.get_running_loop().create_task(self._watch(request, var, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

            def stop() -> None:
                task.cancel()

            return stop

        return start

    async def _watch(self, request: tuple[str, dict[str, str]], var: Any, addr: bool) -> None:
        path, params = request
        name = params.get("path", "")
        if "dtab" in params:
            name += f" dtab {params['dtab']}"
        key = (path, name)
        info: dict[str, Any] = {"connected": False, "lastError": None, "updates": 0}
        self.watches[key] = info
        try:
            await self._watch_loop(path, params, var, addr, info)
        finally:
            if self.watches.get(key) is info:  # (a restarted watch may have replaced it)
                del self.watches[key]

    async def _watch_loop(
        self, path: str, params: dict[str, str], var: Any, addr: bool, info: dict[str, Any]
    ) -> None:
        delays = jittered_backoff(*self.retry)
        good = False
        while True:
            try:
                async for value in self._lines(path, params):
                    good = True
                    info["connected"] = True
                    info["updates"] += 1
                    self.updates += 1
                    delays = jittered_backoff(*self.retry)  # connected: start over
                    var.update(value if addr else Ok(value))
                raise NamerdError("namerd ended the watch stream")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.failures += 1
                message = str(e) or type(e).__name__
                info["connected"] = False
                info["lastError"] = message
                if not good and not addr and isinstance(e, NamerdError):
                    var.update(Failed(e))
                delay = next(delays)
                log.warning(
                    "namerd watch %s?path=%s failed: %s; %s; again in %.1fs",
                    path,
                    params.get("path"),
                    message,
                    "keeping the last good value" if good else "nothing bound yet",
                    delay,
                )
            await asyncio.sleep(delay)

    async def _lines(self, path: str, params: dict[str, str]) -> Any:
        """The parsed documents of one watch stream (bound trees or address sets)."""
        base = await self._base_url()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # one long-lived connection per watch: aiohttp's default limit of 100
                # connections would leave every watch past the 100th waiting forever
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None),
            )
        self.connects += 1
        tls: dict[str, Any] = {}
        if self.ssl_context is not None:
            tls = {"ssl": self.ssl_context, "server_hostname": self.server_name}
        async with self._session.get(base + path, params=params, **tls) as resp:
            if resp.status != 200:
                text = (await resp.text())[:500]
                raise NamerdError(f"namerd answered {resp.status}: {text.strip()}")
            is_addr = path.startswith("/api/1/addr/")
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                if len(buffer) > MAX_LINE:
                    raise NamerdError(f"a line from namerd is longer than {MAX_LINE} bytes")
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        data = json.loads(line)
                    except ValueError:
                        raise NamerdError(line.decode("utf-8", "replace")) from None
                    if is_addr:
                        yield addr_from_json(data)
                    else:
                        yield bound_tree_from_json(data, self.addr)

    async def _base_url(self) -> str:
        """``http://host:port`` of namerd, from ``dst`` bound through the linker's namers."""
        act = self._dst_binder.bind(Dtab.empty, self.dst)
        obs = act.observe(lambda _: None)
        try:
            tree = await act.wait(10.0)
            picked = pick_leaf(tree)
            if picked is None:
                raise NamerdError(f"dst {self.dst.show} does not bind to an address")
            leaf = next(b for b in tree.eval() or () if b.id == picked)
            addr = await asyncio.wait_for(leaf.addr.changes(lambda a: a is not AddrPending), 10.0)
        except TimeoutError:
            raise NamerdError(f"dst {self.dst.show} did not bind within 10s") from None
        finally:
            obs.close()
        if not isinstance(addr, AddrBound) or not addr.addresses:
            raise NamerdError(f"dst {self.dst.show} has no addresses ({addr!r})")
        address = random.choice(addr.sorted())
        host = f"[{address.host}]" if ":" in address.host else address.host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{address.port}"


__all__ = ["MAX_LINE", "NamerdError", "NamerdHttpInterpreter", "jittered_backoff"]
