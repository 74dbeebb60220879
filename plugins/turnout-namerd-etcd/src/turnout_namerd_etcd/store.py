"""namerd's ``io.l5d.etcd`` dtab store: one etcd key per dtab namespace, through etcd's v3
API (Linkerd's ``namerd/storage/etcd`` used the v2 API, which etcd 3.4 turns off by default and
3.6 removed).

- The dtab of namespace ``ns`` is the key ``<pathPrefix>/<ns>`` (``/namerd/dtabs/default`` by
  default), its value the dtab's text (``/svc=>/#/io.l5d.fs;...``), as Linkerd wrote it.
- Its version is the key's ``mod_revision`` as a decimal string in UTF-8 (Linkerd: the v2
  ``modifiedIndex`` the same way): the ``ETag`` of a key written at revision 42 is ``NDI=``.
- Every write is one transaction, so a compare-and-set is atomic in etcd: ``create`` puts only
  if the key's ``create_revision`` is 0 (it does not exist; else :class:`NamespaceExists`);
  ``put`` with an expected version puts only if ``mod_revision`` equals it (else, read in the
  same transaction, :class:`NamespaceNotFound` or :class:`VersionMismatch`); ``put`` without
  one is a plain put; ``delete`` is a ``deleterange`` of the key (nothing deleted:
  :class:`NamespaceNotFound`). The version a write returns is the revision etcd answered for
  it, never read back.
- ``list`` is a keys-only range over ``<pathPrefix>/``: keys of nested "directories" and keys
  that are not namespace names are skipped.
- Watches read the current state (a range, whose answer carries the store's revision R), then
  open a ``/v3/watch`` stream from R + 1, so no write between the two is missed. When the
  stream breaks or etcd cannot be reached, the watch retries with a jittered backoff (1 ms to
  1 min, as Linkerd's stores) and, once etcd answers, reads the state again and yields it if it
  changed: a watcher that reconnects always ends on the current state. A watch cancelled by a
  compaction (its start revision is gone) starts over the same way.

The client is etcd's JSON gateway (``POST /v3/kv/range``, ``/v3/kv/txn``, ``/v3/watch``, ...)
over aiohttp, which turnout already uses: every etcd v3 server serves it on its client port,
and it needs no generated protobuf code or gRPC runtime. Keys and values are base64 in the
gateway's JSON, 64-bit numbers decimal strings, and fields equal to zero are left out.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
from turnout.api import (
    Dtab,
    DtabStore,
    DtabStoreForbidden,
    NamespaceExists,
    NamespaceNotFound,
    TurnoutError,
    Versioned,
    VersionMismatch,
    check_namespace,
    decode_decimal_version,
    decorrelated_jittered_backoff,
    encode_decimal_version,
)

from .config import EtcdDtabStoreConfig

log = logging.getLogger("turnout.namerd.etcd")

__all__ = [
    "EtcdDtabStore",
    "EtcdDtabStoreConfig",
    "EtcdStoreError",
    "decode_version",
    "encode_version",
]

#: gRPC status codes etcd answers when the credentials do not allow an operation
_PERMISSION_DENIED, _UNAUTHENTICATED = 7, 16
#: the longest line of a watch stream accepted (one event batch of the namespace listing)
MAX_LINE = 16 * 1024 * 1024


class EtcdStoreError(TurnoutError):
    """etcd could not be reached, or answered something other than the v3 API's answers."""


#: (Linkerd's versions of this store: the write number in decimal UTF-8; names kept here)
encode_version = encode_decimal_version
decode_version = decode_decimal_version


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _int(value: Any) -> int:
    """A 64-bit field of the gateway's JSON (a decimal string; absent when 0)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise EtcdStoreError(f"etcd answered {value!r} where a number was expected") from None


def _range_end(prefix: str) -> str:
    """The end of the range of every key starting with ``prefix`` (its last byte plus one)."""
    raw = prefix.encode("utf-8")
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode("ascii")


class EtcdDtabStore(DtabStore):
    """The store (see the module docstring). ``url`` is etcd's client URL
    (``http://127.0.0.1:2379``); ``tls`` gives the ``ssl`` and ``server_hostname`` of each
    request (a callable, asked per request, so that changed certificate files are followed).
    """

    def __init__(
        self,
        url: str,
        path_prefix: str = "/namerd/dtabs",
        *,
        tls: Callable[[], dict[str, Any]] | None = None,
        backoff: Callable[[], Iterator[float]] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        self.tls = tls
        self.backoff = backoff or decorrelated_jittered_backoff(0.001, 60.0)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def is_closed(self) -> bool:
        """Whether :meth:`close` ran (a method: watches ask again after each await)."""
        return self._closed

    # -- HTTP ------------------------------------------------------------------------------
    def key(self, ns: str) -> str:
        return f"{self.prefix}/{ns}"

    def session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise EtcdStoreError("the io.l5d.etcd dtab store is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # one long-lived connection per watch: no pool limit (see io.l5d.namerd.http)
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None),
            )
        return self._session

    def _kwargs(self) -> dict[str, Any]:
        return self.tls() if self.tls is not None else {}

    async def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """One unary call of the gateway (``/v3/kv/<method>``); its JSON answer."""
        url = f"{self.url}/v3/kv/{method}"
        try:
            async with self.session().post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=10), **self._kwargs()
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except EtcdStoreError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as e:
            raise EtcdStoreError(
                f"io.l5d.etcd dtab store: POST {url} failed: {type(e).__name__}: {e}"
            ) from e
        try:
            answer = json.loads(raw)
        except ValueError:
            raise EtcdStoreError(
                f"io.l5d.etcd dtab store: {url} answered {status} with no JSON: {raw[:200]!r}"
            ) from None
        if status != 200 or not isinstance(answer, dict) or "error" in answer:
            raise _error(url, status, answer)
        return answer

    # -- the contract ----------------------------------------------------------------------
    async def list(self) -> builtins.list[str]:
        names, _ = await self._list_now()
        return names

    async def _list_now(self) -> tuple[builtins.list[str], int]:
        """The namespaces, and the store's revision they were read at."""
        start = f"{self.prefix}/"
        answer = await self._call(
            "range", {"key": _b64(start), "range_end": _range_end(start), "keys_only": True}
        )
        names = set()
        for kv in answer.get("kvs") or ():
            name = _decode(kv.get("key"))[len(start) :]
            if _is_namespace(name):
                names.add(name)
        return sorted(names), _int(answer.get("header", {}).get("revision"))

    async def _get_now(self, ns: str) -> tuple[Versioned, int]:
        """The state of ``ns``, and the store's revision it was read at."""
        answer = await self._call("range", {"key": _b64(self.key(ns))})
        state = self._state(ns, answer.get("kvs") or [])
        return state, _int(answer.get("header", {}).get("revision"))

    def _state(self, ns: str, kvs: builtins.list[Any]) -> Versioned:
        if not kvs:
            return None, None
        kv = kvs[0]
        text = _decode(kv.get("value"))
        try:
            dtab = Dtab.read(text)
        except Exception as e:
            raise EtcdStoreError(
                f"the value of etcd key {self.key(ns)} is not a dtab: {e}"
            ) from None
        return dtab, encode_version(_int(kv.get("mod_revision")))

    async def get(self, ns: str) -> tuple[Dtab, bytes] | None:
        check_namespace(ns)
        (dtab, version), _ = await self._get_now(ns)
        return None if dtab is None or version is None else (dtab, version)

    async def _txn(self, ns: str, compare: dict[str, Any], dtab: Dtab) -> tuple[bool, Any]:
        """Put ``dtab`` if ``compare`` holds; (succeeded, the revision of the put or the key's
        state read in the same transaction when it did not hold)."""
        key = _b64(self.key(ns))
        answer = await self._call(
            "txn",
            {
                "compare": [{"key": key, **compare}],
                "success": [{"request_put": {"key": key, "value": _b64(dtab.show)}}],
                "failure": [{"request_range": {"key": key}}],
            },
        )
        if answer.get("succeeded"):
            return True, _int(answer.get("header", {}).get("revision"))
        responses = answer.get("responses") or [{}]
        kvs = (responses[0].get("response_range") or {}).get("kvs") or []
        return False, self._state(ns, kvs)

    async def create(self, ns: str, dtab: Dtab) -> bytes:
        check_namespace(ns)
        compare = {"target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        ok, found = await self._txn(ns, compare, dtab)
        if not ok:
            raise NamespaceExists(ns)
        return encode_version(found)

    async def put(self, ns: str, dtab: Dtab, expected: bytes | None = None) -> bytes:
        check_namespace(ns)
        if expected is None:
            key = _b64(self.key(ns))
            answer = await self._call("put", {"key": key, "value": _b64(dtab.show)})
            return encode_version(_int(answer.get("header", {}).get("revision")))
        revision = decode_version(expected)
        if revision is None:  # a version no key can have
            if await self.get(ns) is None:
                raise NamespaceNotFound(ns)
            raise VersionMismatch()
        compare = {"target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}
        ok, found = await self._txn(ns, compare, dtab)
        if ok:
            return encode_version(found)
        if found == (None, None):
            raise NamespaceNotFound(ns)
        raise VersionMismatch()

    async def delete(self, ns: str) -> None:
        check_namespace(ns)
        answer = await self._call("deleterange", {"key": _b64(self.key(ns))})
        if _int(answer.get("deleted")) == 0:
            raise NamespaceNotFound(ns)

    # -- watches ---------------------------------------------------------------------------
    def watch(self, ns: str) -> AsyncIterator[Versioned]:
        check_namespace(ns)
        key = self.key(ns)
        return self._follow(
            f"io.l5d.etcd dtab store: watch of {key}",
            lambda: self._get_now(ns),
            {"key": _b64(key)},
        )

    def watch_list(self) -> AsyncIterator[builtins.list[str]]:
        start = f"{self.prefix}/"
        return self._follow(
            f"io.l5d.etcd dtab store: watch of {start}",
            self._list_now,
            {"key": _b64(start), "range_end": _range_end(start)},
        )

    async def _follow(
        self,
        what: str,
        read: Callable[[], Awaitable[tuple[Any, int]]],
        watched: dict[str, Any],
    ) -> AsyncIterator[Any]:
        """Read the state, yield it if it changed, follow a watch stream from the revision
        after the read, and read again after each event batch; start over (after a backoff
        when it failed) when the stream ends."""
        last: Any = object()
        delays: Iterator[float] | None = None
        while not self.is_closed():
            try:
                state, revision = await read()
                if state != last:
                    last = state
                    yield state
                async for _ in self._events(watched, revision + 1):
                    delays = None
                    state, _ = await read()
                    if state != last:
                        last = state
                        yield state
            except EtcdStoreError as e:
                if self.is_closed():
                    return
                delays = delays or self.backoff()
                delay = next(delays)
                log.warning("%s: %s (retrying in %.3fs)", what, e, delay)
                await asyncio.sleep(delay)

    async def _events(self, watched: dict[str, Any], start: int) -> AsyncIterator[None]:
        """One item per event batch of a ``/v3/watch`` stream from revision ``start``; ends
        when etcd cancels the watch (a compaction), raises :class:`EtcdStoreError` when the
        stream fails."""
        url = f"{self.url}/v3/watch"
        body = {"create_request": {**watched, "start_revision": str(start)}}
        try:
            async with self.session().post(url, json=body, **self._kwargs()) as resp:
                if resp.status != 200:
                    raw = await resp.read()
                    try:
                        answer = json.loads(raw)
                    except ValueError:
                        answer = {"error": raw[:200].decode("utf-8", "replace")}
                    raise _error(url, resp.status, answer)
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    if len(buffer) > MAX_LINE:
                        raise EtcdStoreError(f"a line of {url} is longer than {MAX_LINE} bytes")
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if not line.strip():
                            continue
                        try:
                            message = json.loads(line)
                        except ValueError:
                            raise EtcdStoreError(f"{url} sent {line[:200]!r}") from None
                        if "error" in message:
                            raise _error(url, resp.status, message["error"])
                        result = message.get("result") or {}
                        if result.get("canceled"):
                            log.info(
                                "etcd cancelled the watch of %s (compacted to %s): reading again",
                                url,
                                result.get("compact_revision"),
                            )
                            return
                        if result.get("events"):
                            yield None
        except EtcdStoreError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as e:
            raise EtcdStoreError(f"the watch stream {url} failed: {type(e).__name__}: {e}") from e
        raise EtcdStoreError(f"etcd closed the watch stream {url}")

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


def _decode(value: Any) -> str:
    if not value:
        return ""
    try:
        return base64.b64decode(value).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise EtcdStoreError(f"etcd answered a key or value that is not UTF-8: {value!r}") from None


def _is_namespace(name: str) -> bool:
    try:
        check_namespace(name)
    except TurnoutError:
        return False
    return True


def _error(url: str, status: int, answer: Any) -> TurnoutError:
    """The error of a refused call: the gateway answers ``{"error", "message", "code"}``."""
    message = answer.get("message") or answer.get("error") if isinstance(answer, dict) else answer
    code = answer.get("code") if isinstance(answer, dict) else None
    if code in (_PERMISSION_DENIED, _UNAUTHENTICATED):
        return DtabStoreForbidden(f"io.l5d.etcd dtab store: {url}: {message}")
    return EtcdStoreError(f"io.l5d.etcd dtab store: {url} answered {status}: {message}")
