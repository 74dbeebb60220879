"""namerd's ``io.l5d.consul`` dtab store: one Consul KV key per dtab namespace (Linkerd's
``namerd/storage/consul``).

- The dtab of namespace ``ns`` is the key ``<pathPrefix>/<ns>`` (``namerd/dtabs/default`` by
  default), its value the dtab's text (``/svc=>/#/io.l5d.fs;...``).
- Its version is the key's ``ModifyIndex`` as a decimal string, in UTF-8 (Linkerd:
  ``Buf.Utf8(index)``): the first ``ETag`` of a key written at index 42 is ``NDI=``.
- ``create`` is ``PUT ?cas=0`` (``false``: :class:`NamespaceExists`); ``put`` with an expected
  version is ``PUT ?cas=<index>`` (``false``: :class:`VersionMismatch`, or
  :class:`NamespaceNotFound` when the key is missing); ``put`` without one is a plain ``PUT``;
  ``delete`` is a ``GET`` (404: :class:`NamespaceNotFound`) then a ``DELETE``, as Linkerd did.
- ``list`` is ``GET <pathPrefix>/?keys&separator=/``: keys of nested "directories" and keys that
  are not valid namespace names are skipped, as Linkerd did.
- Watches are blocking queries (``index`` + ``wait``) on the key or on the key listing: the
  current state first, then each change. When Consul cannot be reached (or answers an error)
  a watch retries with a jittered backoff (Linkerd's: 1 ms to 1 min) and, once it answers,
  yields the state it then has.

A write answers only ``true``/``false``, not the index it made, so the version a write returns
is read back with a ``GET`` right after it. When another writer changed the key between the
two, that version is not this write's: the version returned is then ``0``, which matches no
key (a later ``put`` with it fails with :class:`VersionMismatch`, so no write of the other
writer is lost).

Namespace names are Linkerd's for this store: letters, digits, ``_`` and ``-`` (no ``.``).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from turnout.api import (
    BackoffConfig,
    Dtab,
    DtabStore,
    DtabStoreConfig,
    DtabStoreForbidden,
    InvalidNamespace,
    NamerdContext,
    NamespaceExists,
    NamespaceNotFound,
    Path,
    TurnoutError,
    Versioned,
    VersionMismatch,
    decode_decimal_version,
    decorrelated_jittered_backoff,
    encode_decimal_version,
    option,
)

from .config import ConsulTlsConfig
from .tls import TlsSetupError, ssl_context_of

if TYPE_CHECKING:
    from .client import ConsulClient

log = logging.getLogger("turnout.namerd.consul")

__all__ = [
    "ConsulDtabStore",
    "ConsulDtabStoreConfig",
    "ConsulStoreError",
    "decode_version",
    "encode_version",
]

ConsistencyMode = Literal["default", "stale", "consistent"]

#: Linkerd's namespace names for this store (``ConsulDtabStore.validNs``)
_VALID_NS = re.compile(r"[A-Za-z0-9_-]+")
#: a version that matches no key (Consul's indexes start at 1)
UNKNOWN_VERSION = b"0"


class ConsulStoreError(TurnoutError):
    """Consul could not be reached, or answered something other than the KV API's answers."""


#: (Linkerd's versions of this store: the write number in decimal UTF-8; names kept here)
encode_version = encode_decimal_version
decode_version = decode_decimal_version


def _check_ns(ns: str) -> str:
    if not _VALID_NS.fullmatch(ns):
        raise InvalidNamespace(
            ns, "the io.l5d.consul store takes letters, digits, '_' and '-' (as Linkerd's)"
        )
    return ns


class _Answer:
    """What the KV API answered: status, ``X-Consul-Index`` and the body."""

    def __init__(self, status: int, index: int | None, body: bytes) -> None:
        self.status = status
        self.index = index
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ConsulStoreError(f"Consul answered invalid JSON: {self.body[:100]!r}") from None


def _answer(response: Any) -> _Answer:
    raw = response.headers.get("X-Consul-Index")
    try:
        index = int(raw) if raw is not None else None
    except ValueError:
        index = None
    return _Answer(int(response.code), index, bytes(response.content))


class ConsulDtabStore(DtabStore):
    """The store (see the module docstring). Construct it inside a running event loop, or
    give ``client_factory`` (called on first use, inside the loop).

    :param client_factory: makes the :class:`~turnout_namer_consul.client.ConsulClient`.
    :param path_prefix: the KV "directory" of the dtabs, without leading or trailing ``/``.
    :param backoff: the delays between attempts of a watch that failed, in seconds.
    """

    def __init__(
        self,
        client_factory: Callable[[], ConsulClient],
        path_prefix: str = "namerd/dtabs",
        *,
        token: str | None = None,
        datacenter: str | None = None,
        read_consistency: ConsistencyMode | None = None,
        write_consistency: ConsistencyMode | None = None,
        backoff: Callable[[], Iterator[float]] | None = None,
        where: str = "Consul",
    ) -> None:
        self._client_factory = client_factory
        self._client: ConsulClient | None = None
        self.prefix = path_prefix.strip("/")
        self.token = token
        self.datacenter = datacenter
        self.read_consistency = read_consistency
        self.write_consistency = write_consistency
        self.backoff = backoff or decorrelated_jittered_backoff(0.001, 60.0)
        self.where = where
        self._closed = False

    # -- HTTP ------------------------------------------------------------------------------
    def client(self) -> ConsulClient:
        if self._closed:
            raise ConsulStoreError("the io.l5d.consul dtab store is closed")
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def key(self, ns: str) -> str:
        return f"{self.prefix}/{ns}" if self.prefix else ns

    def _params(self, consistency: ConsistencyMode | None) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        if self.datacenter:
            params.append(("dc", self.datacenter))
        if consistency in ("stale", "consistent"):
            params.append((consistency, "1"))
        return params

    async def _request(
        self,
        method: str,
        key: str,
        params: list[tuple[str, str]],
        data: bytes | None = None,
    ) -> _Answer:
        client = self.client()
        http = client.api.http
        headers = {"X-Consul-Token": self.token} if self.token else {}
        path = f"/v1/kv/{key}"
        try:
            if method == "GET":
                got = await http.get(_answer, path=path, params=params, headers=headers)
            elif method == "PUT":
                got = await http.put(
                    _answer, path=path, params=params, data=data or b"", headers=headers
                )
            else:
                got = await http.delete(_answer, path=path, params=params, headers=headers)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._closed and (task is None or not task.cancelling()):
                # the session was closed under the request: the store is closing
                raise ConsulStoreError("the io.l5d.consul dtab store is closed") from None
            raise
        except Exception as e:
            raise ConsulStoreError(
                f"io.l5d.consul dtab store: {method} {path} at {self.where} failed: "
                f"{type(e).__name__}: {e}"
            ) from e
        answer: _Answer = got
        if answer.status >= 400 and answer.status != 404:
            text = answer.body.decode("utf-8", errors="replace").strip()
            if answer.status == 403:  # the ACL token lacks the right (or is unknown)
                raise DtabStoreForbidden(
                    f"io.l5d.consul dtab store: {method} {path} at {self.where}: 403 "
                    f"{text[:200]} (check the token option and its ACL policy)"
                )
            raise ConsulStoreError(
                f"io.l5d.consul dtab store: {method} {path} at {self.where}: "
                f"{answer.status} {text[:200]}"
            )
        return answer

    async def _read(self, ns: str, *, index: int = 0, wait: str | None = None) -> _Answer:
        params = self._params(self.read_consistency)
        if index > 0:
            params += [("index", str(index)), ("wait", wait or self.client().wait_param)]
        return await self._request("GET", self.key(ns), params)

    def _entry(self, ns: str, answer: _Answer) -> tuple[Dtab, bytes] | None:
        """The dtab and version of a read of the key; None when it is missing."""
        if answer.status == 404:
            return None
        items = answer.json()
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            raise ConsulStoreError(f"Consul answered an unexpected KV entry for {self.key(ns)}")
        item = items[0]
        value = item.get("Value")
        try:
            text = base64.b64decode(value).decode("utf-8") if value else ""
            dtab = Dtab.read(text)
        except Exception as e:
            raise ConsulStoreError(
                f"the value of Consul key {self.key(ns)} is not a dtab: {e}"
            ) from None
        modify = item.get("ModifyIndex")
        if not isinstance(modify, int):
            raise ConsulStoreError(f"Consul answered no ModifyIndex for {self.key(ns)}")
        return dtab, encode_version(modify)

    # -- the contract ----------------------------------------------------------------------
    async def list(self) -> builtins.list[str]:
        answer = await self._list(0)
        return self._names(answer)

    async def _list(self, index: int) -> _Answer:
        params = [("keys", ""), ("separator", "/"), *self._params(self.read_consistency)]
        if index > 0:
            params += [("index", str(index)), ("wait", self.client().wait_param)]
        return await self._request("GET", f"{self.prefix}/" if self.prefix else "", params)

    def _names(self, answer: _Answer) -> builtins.list[str]:
        if answer.status == 404:
            return []
        keys = answer.json()
        if not isinstance(keys, list):
            raise ConsulStoreError("Consul answered an unexpected key listing")
        root = f"{self.prefix}/" if self.prefix else ""
        names = set()
        for key in keys:
            if not isinstance(key, str) or not key.startswith(root):
                continue
            name = key[len(root) :]
            # nested "directories" and names this store cannot observe are skipped (Linkerd)
            if name and not name.endswith("/") and _VALID_NS.fullmatch(name):
                names.add(name)
        return sorted(names)

    async def get(self, ns: str) -> tuple[Dtab, bytes] | None:
        _check_ns(ns)
        return self._entry(ns, await self._read(ns))

    async def _version_after_write(self, ns: str, dtab: Dtab) -> bytes:
        found = self._entry(ns, await self._read(ns))
        if found is None or found[0] != dtab:
            return UNKNOWN_VERSION  # another writer came in between: this write's is unknown
        return found[1]

    async def _put(self, ns: str, dtab: Dtab, cas: int | None) -> bool:
        params = self._params(self.write_consistency)
        if cas is not None:
            params.append(("cas", str(cas)))
        answer = await self._request("PUT", self.key(ns), params, dtab.show.encode("utf-8"))
        result = answer.json()
        if not isinstance(result, bool):
            raise ConsulStoreError(f"Consul answered {result!r} to a KV write (not true/false)")
        return result

    async def create(self, ns: str, dtab: Dtab) -> bytes:
        _check_ns(ns)
        if not await self._put(ns, dtab, 0):
            raise NamespaceExists(ns)
        return await self._version_after_write(ns, dtab)

    async def put(self, ns: str, dtab: Dtab, expected: bytes | None = None) -> bytes:
        _check_ns(ns)
        if expected is None:
            await self._put(ns, dtab, None)
            return await self._version_after_write(ns, dtab)
        index = decode_version(expected)
        if index is None or not await self._put(ns, dtab, index):
            if await self.get(ns) is None:
                raise NamespaceNotFound(ns)
            raise VersionMismatch()
        return await self._version_after_write(ns, dtab)

    async def delete(self, ns: str) -> None:
        _check_ns(ns)
        params = self._params(self.write_consistency)
        if (await self._request("GET", self.key(ns), params)).status == 404:
            raise NamespaceNotFound(ns)
        await self._request("DELETE", self.key(ns), params)

    async def _follow(
        self, what: str, read: Callable[[int], Any], state_of: Callable[[_Answer], Any]
    ) -> AsyncIterator[Any]:
        """A blocking-query loop: the state now, then each different state. Failures are
        retried with the backoff; the index restarts (a plain read) after one."""
        from .client import TokenBucket

        bucket = TokenBucket()
        index = 0
        last: Any = object()
        delays: Iterator[float] | None = None
        while True:
            try:
                await bucket.acquire()
                answer: _Answer = await read(index)
                state = state_of(answer)
            except ConsulStoreError as e:
                if self._closed:
                    return
                delays = delays or self.backoff()
                delay = next(delays)
                log.warning("%s: %s (retrying in %.3fs)", what, e, delay)
                index = 0
                await asyncio.sleep(delay)
                continue
            delays = None
            if state != last:
                last = state
                yield state
            new = answer.index or 0
            # Consul's rules: an index that goes backwards resets; below 1 is used as 1
            index = 0 if new < index else max(new, 1)

    def watch(self, ns: str) -> AsyncIterator[Versioned]:
        _check_ns(ns)

        def state(answer: _Answer) -> Versioned:
            found = self._entry(ns, answer)
            return (None, None) if found is None else found

        return self._follow(
            f"io.l5d.consul dtab store: watch of {self.key(ns)}",
            lambda index: self._read(ns, index=index),
            state,
        )

    def watch_list(self) -> AsyncIterator[builtins.list[str]]:
        return self._follow(
            f"io.l5d.consul dtab store: watch of {self.prefix}/", self._list, self._names
        )

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            await self._client.close()


class ConsulDtabStoreConfig(DtabStoreConfig):
    """Dtabs in Consul's KV store: one key per namespace under ``pathPrefix``, versioned by
    the key's ModifyIndex, watched with blocking queries."""

    kind = "io.l5d.consul"
    host: str = option("localhost", doc="Consul agent host.")
    port: int = option(8500, min=1, max=65535, doc="Consul agent HTTP port.")
    path_prefix: Path = option(
        default_factory=lambda: Path.read("/namerd/dtabs"),
        doc="The KV path under which each namespace is a key.",
    )
    token: str | None = option(None, secret=True, doc="ACL token, sent as X-Consul-Token.")
    datacenter: str | None = option(
        None, doc="The datacenter of the KV store (?dc=); default: the agent's."
    )
    read_consistency_mode: ConsistencyMode | None = option(
        None, doc="Consistency of reads and watches: default, stale or consistent."
    )
    write_consistency_mode: ConsistencyMode | None = option(
        None, doc="Consistency mode sent with writes (as Linkerd did): default, stale, consistent."
    )
    fail_fast: bool | None = option(
        None,
        doc="Accepted for Linkerd compatibility; no effect (each request goes to the agent).",
    )
    backoff: BackoffConfig | None = option(
        None,
        doc="Delays between a failed watch's retries: {kind: constant, ms} or {kind: jittered, "
        "minMs, maxMs}; default: jittered from 1 ms to 1 min (Linkerd's).",
    )
    tls: ConsulTlsConfig | None = option(
        None,
        doc="Talk HTTPS to the agent: disableValidation, commonName, trustCerts, "
        "trustCertsBundle, clientAuth {certPath, keyPath}, protocols.",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.host:
            yield "host", "must not be empty"
        if len(self.path_prefix) == 0:
            yield "pathPrefix", "must not be empty (the default is /namerd/dtabs)"

    def new_store(self, ctx: NamerdContext) -> ConsulDtabStore:
        tls = self.tls if self.tls is not None and self.tls.enabled else None
        ssl_context: ssl.SSLContext | None = None
        if tls is not None:
            try:
                ssl_context = ssl_context_of(tls)
            except TlsSetupError as e:
                raise TurnoutError(f"{self.kind} dtab store: {e.where()}: {e.message}") from None
        host, port, token = self.host, self.port, self.token
        server_hostname = tls.common_name if tls is not None else None

        def client() -> ConsulClient:
            from .client import ConsulClient

            return ConsulClient(
                host,
                port,
                token=token,
                ssl_context=ssl_context,
                server_hostname=server_hostname,
            )

        return ConsulDtabStore(
            client,
            self.path_prefix.show,
            token=self.token,
            datacenter=self.datacenter,
            read_consistency=self.read_consistency_mode,
            write_consistency=self.write_consistency_mode,
            where=f"{'https' if ssl_context else 'http'}://{host}:{port}",
            backoff=self.backoff.new_backoff() if self.backoff is not None else None,
        )
