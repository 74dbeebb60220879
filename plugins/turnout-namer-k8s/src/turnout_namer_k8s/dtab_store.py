"""namerd's ``io.l5d.k8s`` dtab store: one ``DTab`` custom resource per dtab namespace
(Linkerd's ``namerd/storage/k8s``).

- The dtab of namespace ``ns`` is the object ``ns`` of the custom resource ``dtabs``
  (group/version ``l5d.io/v1alpha1``, kind ``DTab``) in the Kubernetes namespace ``namespace``:
  ``{"apiVersion": "l5d.io/v1alpha1", "kind": "DTab", "metadata": {"name": "default"},
  "dentries": [{"prefix": "/svc", "dst": "/#/io.l5d.fs"}]}`` (Linkerd's JSON shape). The
  resource must be defined in the cluster (a CustomResourceDefinition, as for Linkerd).
- Its version is ``metadata.resourceVersion`` in UTF-8 (Linkerd: ``Buf.Utf8(resourceVersion)``).
- ``create`` is a ``POST`` (``409``: :class:`NamespaceExists`); ``put`` with an expected
  version is a ``PUT`` carrying that ``resourceVersion`` (``409 Conflict``:
  :class:`VersionMismatch`; ``404``: :class:`NamespaceNotFound`); ``put`` without one reads
  the current ``resourceVersion`` and ``PUT``\\s with it (``POST`` when the object is missing,
  as Linkerd), retried a few times when another writer gets in between; ``delete`` is a
  ``DELETE`` (``404``: :class:`NamespaceNotFound`); ``list`` is a ``GET`` of the list.
- Watches share one list-then-watch of the namespace's ``dtabs`` (Linkerd's too), from the
  list's ``resourceVersion``; a ``410 Gone`` (status or ``ERROR`` event) re-lists. When the
  API cannot be reached, it retries with a jittered backoff, resuming from the last
  resourceVersion seen (re-listing when that is too old), and watchers then get the state
  the API has.

Dtab namespace names must be Kubernetes object names (lower-case DNS subdomains).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from turnout.api import (
    Dtab,
    DtabStore,
    DtabStoreConfig,
    DtabStoreForbidden,
    InvalidNamespace,
    NamerdContext,
    NamespaceExists,
    NamespaceNotFound,
    TurnoutError,
    Versioned,
    VersionMismatch,
    decorrelated_jittered_backoff,
    option,
)

from .model import valid_namespace

if TYPE_CHECKING:  # aiohttp and the API client are imported when a store is built
    from .api import KubeApi

log = logging.getLogger("turnout.namerd.k8s")

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "K8sDtabStore", "K8sDtabStoreConfig"]

#: the custom resource of Linkerd's store (``kubernetes/resources.scala``, ``Dtab.scala``)
GROUP = "l5d.io"
VERSION = "v1alpha1"
KIND = "DTab"
PLURAL = "dtabs"

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
#: attempts of an upsert that keeps meeting other writers
UPSERT_ATTEMPTS = 5


class K8sStoreError(TurnoutError):
    """The Kubernetes API could not be reached, or answered an error."""


def _check_ns(ns: str) -> str:
    if len(ns) > 253 or not _NAME.fullmatch(ns):
        raise InvalidNamespace(
            ns,
            "the io.l5d.k8s store keeps each namespace as a Kubernetes object: lower-case "
            "letters, digits, '-' and '.' (a DNS subdomain)",
        )
    return ns


def dtab_to_dentries(dtab: Dtab) -> list[dict[str, str]]:
    return [{"prefix": e.prefix.show, "dst": e.dst.show} for e in dtab]


def dtab_of(obj: Mapping[str, Any]) -> tuple[str, Dtab, bytes]:
    """(name, dtab, version) of a ``DTab`` object; :class:`K8sStoreError` if malformed."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise K8sStoreError(f"the Kubernetes API returned a DTab with no name: {obj}")
    if not isinstance(rv, str) or not rv:
        raise K8sStoreError(f"the Kubernetes API returned DTab {name} with no resourceVersion")
    dentries = obj.get("dentries") or []
    try:
        if not isinstance(dentries, list):
            raise ValueError("dentries is not a list")
        text = ";".join(f"{d['prefix']}=>{d['dst']}" for d in dentries)
        dtab = Dtab.read(text)
    except Exception as e:
        raise K8sStoreError(f"DTab {name} does not hold a valid dtab: {e}") from None
    return name, dtab, rv.encode("utf-8")


class K8sDtabStore(DtabStore):
    """The store (see the module docstring).

    :param backoff: the delays between attempts of the shared watch after a failure.
    :param watch_seconds: ``(low, high)`` bounds of each watch request's ``timeoutSeconds``.
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 8001,
        namespace: str = "default",
        *,
        backoff: Any = None,
        watch_seconds: tuple[int, int] = (300, 600),
    ) -> None:
        from .api import KubeApi

        self.api: KubeApi = KubeApi(host, port)
        self.namespace = namespace
        self.base = (
            f"{self.api.base}/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/"
            f"{PLURAL}"
        )
        self.backoff = backoff or decorrelated_jittered_backoff(0.001, 60.0)
        self.watch_seconds = watch_seconds
        self._closed = False
        self._cache: dict[str, tuple[Dtab, bytes]] = {}
        self._synced = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: the resourceVersion the shared watch resumes from (None: list first)
        self.resource_version: str | None = None
        self.relists = 0

    # -- requests --------------------------------------------------------------------------
    def _url(self, name: str | None = None) -> str:
        return self.base if name is None else f"{self.base}/{quote(name, safe='')}"

    def _object(self, ns: str, dtab: Dtab, version: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": ns, "namespace": self.namespace}
        if version is not None:
            meta["resourceVersion"] = version
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": meta,
            "dentries": dtab_to_dentries(dtab),
        }

    async def _request(
        self, method: str, url: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        import aiohttp

        from .api import CONNECT_TIMEOUT, REQUEST_TIMEOUT

        if self._closed:
            raise K8sStoreError("the io.l5d.k8s dtab store is closed")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self.api.session().request(
                method,
                url,
                data=data,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT, sock_connect=CONNECT_TIMEOUT),
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise K8sStoreError(
                f"io.l5d.k8s dtab store: {method} {url} failed: {type(e).__name__}: {e}"
            ) from e
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        return status, answer

    def _error(self, method: str, url: str, status: int, answer: Any) -> Exception:
        from .api import _status_fields

        reason, message = _status_fields(answer)
        if status == 403:  # RBAC: namerd's identity may not do this to dtabs
            return DtabStoreForbidden(
                f"io.l5d.k8s dtab store: {method} {url}: 403 {reason} {message}".rstrip()
            )
        return K8sStoreError(
            f"io.l5d.k8s dtab store: {method} {url}: {status} {reason} {message}".rstrip()
        )

    # -- the contract ----------------------------------------------------------------------
    async def _list_objects(self) -> tuple[dict[str, tuple[Dtab, bytes]], str]:
        from .api import ResourceExpired

        status, answer = await self._request("GET", self._url())
        if status == 410:
            raise ResourceExpired("list dtabs", 410)
        if status != 200 or not isinstance(answer, Mapping):
            raise self._error("GET", self._url(), status, answer)
        items = answer.get("items")
        meta = answer.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        if not isinstance(items, list) or not isinstance(rv, str):
            raise K8sStoreError("the Kubernetes API answered a DTab list without items")
        found: dict[str, tuple[Dtab, bytes]] = {}
        for item in items:
            name, dtab, version = dtab_of(item)
            found[name] = (dtab, version)
        return found, rv

    async def list(self) -> builtins.list[str]:
        found, _ = await self._list_objects()
        return sorted(found)

    async def get(self, ns: str) -> tuple[Dtab, bytes] | None:
        _check_ns(ns)
        url = self._url(ns)
        status, answer = await self._request("GET", url)
        if status == 404:
            return None
        if status != 200 or not isinstance(answer, Mapping):
            raise self._error("GET", url, status, answer)
        _, dtab, version = dtab_of(answer)
        return dtab, version

    async def create(self, ns: str, dtab: Dtab) -> bytes:
        _check_ns(ns)
        status, answer = await self._request("POST", self._url(), self._object(ns, dtab))
        if status == 409:
            raise NamespaceExists(ns)
        if status not in (200, 201) or not isinstance(answer, Mapping):
            raise self._error("POST", self._url(), status, answer)
        return dtab_of(answer)[2]

    async def _replace(self, ns: str, dtab: Dtab, version: str) -> bytes:
        url = self._url(ns)
        status, answer = await self._request("PUT", url, self._object(ns, dtab, version))
        if status == 409:
            raise VersionMismatch()
        if status == 404:
            raise NamespaceNotFound(ns)
        if status not in (200, 201) or not isinstance(answer, Mapping):
            raise self._error("PUT", url, status, answer)
        return dtab_of(answer)[2]

    async def put(self, ns: str, dtab: Dtab, expected: bytes | None = None) -> bytes:
        _check_ns(ns)
        if expected is not None:
            try:
                version = expected.decode("utf-8")
            except UnicodeDecodeError:
                version = ""
            if not version.isascii() or not version.isdigit():
                if await self.get(ns) is None:
                    raise NamespaceNotFound(ns)
                raise VersionMismatch()
            return await self._replace(ns, dtab, version)
        for attempt in range(UPSERT_ATTEMPTS):
            current = await self.get(ns)
            try:
                if current is None:
                    return await self.create(ns, dtab)
                return await self._replace(ns, dtab, current[1].decode("utf-8"))
            except (NamespaceExists, NamespaceNotFound, VersionMismatch):
                if attempt == UPSERT_ATTEMPTS - 1:
                    raise VersionMismatch() from None
        raise AssertionError("unreachable")

    async def delete(self, ns: str) -> None:
        _check_ns(ns)
        url = self._url(ns)
        status, answer = await self._request("DELETE", url)
        if status == 404:
            raise NamespaceNotFound(ns)
        if status not in (200, 202):
            raise self._error("DELETE", url, status, answer)

    # -- the shared list + watch -------------------------------------------------------------
    def _notify(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def _start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(
                self._sync(), name=f"io.l5d.k8s dtab store watch {self.namespace}"
            )

    async def _sync(self) -> None:
        from .api import ResourceExpired

        delays: Iterator[float] | None = None
        while not self._closed:
            try:
                if self.resource_version is None:
                    found, rv = await self._list_objects()
                    self.relists += 1
                    self._cache = found
                    self.resource_version = rv
                    self._synced = True
                    delays = None
                    self._notify()
                if await self._watch_from(self.resource_version):
                    delays = None
                else:  # ended at once, without an event: do not reconnect in a tight loop
                    delays = delays or self.backoff()
                    await asyncio.sleep(next(delays))
            except ResourceExpired:
                log.info("io.l5d.k8s dtab store: resourceVersion too old (410): re-listing")
                self.resource_version = None
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the API is down or misbehaving: retry
                delays = delays or self.backoff()
                delay = next(delays)
                log.warning("io.l5d.k8s dtab store: %s (retrying in %.3fs)", e, delay)
                await asyncio.sleep(delay)

    async def _watch_from(self, rv: str) -> int:
        """Follow the watch from ``rv`` until it ends; how many events it carried."""
        import aiohttp

        from .api import (
            REQUEST_TIMEOUT,
            K8sApiError,
            ResourceExpired,
            _events,
            _status_fields,
            watch_timeout,
        )

        params = {
            "watch": "true",
            "resourceVersion": rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(watch_timeout(*self.watch_seconds)),
        }
        what = f"watch dtabs in {self.namespace}"
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                response = await self.api.session().get(self._url(), params=params)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise K8sStoreError(f"io.l5d.k8s dtab store: {what}: {type(e).__name__}: {e}") from e
        try:
            if response.status != 200:
                body = json.loads(await response.read() or b"null")
                reason, message = _status_fields(body)
                error = ResourceExpired if response.status == 410 else K8sApiError
                raise error(what, response.status, reason, message)
            seen = 0
            async for event in _events(response, what):
                self._apply(event)
                seen += 1
            return seen
        finally:
            response.close()

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event["object"]
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        if kind in ("ADDED", "MODIFIED"):
            name, dtab, version = dtab_of(obj)
            self._cache[name] = (dtab, version)
        elif kind == "DELETED":
            gone = meta.get("name") if isinstance(meta, Mapping) else None
            if isinstance(gone, str):
                self._cache.pop(gone, None)
        elif kind != "BOOKMARK":
            return
        if isinstance(rv, str) and rv:
            self.resource_version = rv
        if kind != "BOOKMARK":
            self._notify()

    async def _follow(self, state: Any) -> AsyncIterator[Any]:
        self._start()
        unset = object()
        last: Any = unset
        while not self._closed:
            changed = self._changed
            if self._synced:
                value = state()
                if last is unset or value != last:
                    last = value
                    yield value
            await changed.wait()

    def watch(self, ns: str) -> AsyncIterator[Versioned]:
        _check_ns(ns)

        def state() -> Versioned:
            return self._cache.get(ns, (None, None))

        return self._follow(state)

    def watch_list(self) -> AsyncIterator[builtins.list[str]]:
        return self._follow(lambda: sorted(self._cache))

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._notify()
        await self.api.close()


class K8sDtabStoreConfig(DtabStoreConfig):
    """Dtabs as ``DTab`` custom resources (``l5d.io/v1alpha1``, plural ``dtabs``) in one
    Kubernetes namespace, through the API (plain HTTP: run ``kubectl proxy`` beside namerd).
    The CustomResourceDefinition must exist in the cluster."""

    kind = "io.l5d.k8s"
    host: str = option("localhost", doc="The Kubernetes API host (usually kubectl proxy).")
    port: int = option(8001, min=1, max=65535, doc="The Kubernetes API port.")
    namespace: str = option("default", doc="The Kubernetes namespace holding the DTab objects.")

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.host:
            yield "host", "must not be empty"
        if not valid_namespace(self.namespace):
            yield (
                "namespace",
                f"{self.namespace!r} is not a Kubernetes namespace name (lower-case letters, "
                "digits and '-', at most 63 characters)",
            )

    def new_store(self, ctx: NamerdContext) -> K8sDtabStore:
        return K8sDtabStore(self.host, self.port, self.namespace)
