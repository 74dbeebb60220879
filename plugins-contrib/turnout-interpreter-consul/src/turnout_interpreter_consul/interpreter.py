"""The runtime of ``io.l5d.consul.interpreter``: a blocking-query watch of one Consul KV key
(:class:`DtabWatch`) and the interpreter that binds with the dtab it holds
(:class:`ConsulDtabInterpreter`).

The watch follows Linkerd 1's ``ConsulDtabStore.observe``: ``GET /v1/kv/<key>?raw=true``
with the last ``X-Consul-Index`` (plus an explicit ``wait``), the ``dc`` and the read
consistency mode, the ACL token as ``X-Consul-Token``;

- 200: the value is the dtab's text. A dtab that parses is the new dtab; one that does not
  is logged and counted, shown in the state page, and the last good dtab stays in force
  (Linkerd's ``Activity.stabilize``);
- 404 (no such key): the empty dtab (Linkerd's ``Ok(None)`` → ``Dtab.empty``);
- anything else (Consul unreachable, 5xx, 403): logged and counted, the last good dtab
  stays in force, and the query is retried after the configured backoff, with no index.

Before a first answer the dtab is pending; if the first answer is an error or a bad dtab,
it is failed (requests fail with that error) until a good answer arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from turnout.api import (
    Activity,
    Backoff,
    Dtab,
    Failed,
    Name,
    NameBound,
    NameInterpreter,
    NameTree,
    Ok,
    Path,
    Pending,
    State,
    derive_activity,
)
from turnout_namer_consul.client import ConsulClient, TokenBucket, consistency_params
from turnout_namer_consul.namer import next_index, parse_index

from .config import KIND

log = logging.getLogger("turnout.interpreter.consul")

__all__ = ["ConsulDtabInterpreter", "DtabWatch"]

#: seconds of each blocking query (Consul's default is 5 minutes; Linkerd sent none)
BLOCKING_WAIT = 60.0


def _time(t: float | None) -> str | None:
    """A wall-clock time as Linkerd's ``Time.toString`` writes it."""
    if t is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime(t))


class ConsulError(Exception):
    """Consul answered something other than the value or 404."""


class DtabWatch:
    """The dtab in one Consul KV key, watched by a background task.

    :attr:`dtab` is the Activity routers bind with (the last good dtab). The task starts when
    the dtab is first observed or :meth:`start` is called (at turnout's start-up), inside a
    running event loop, and ends with :meth:`close`.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        key: str,
        namespace: str,
        token: str | None,
        datacenter: str | None,
        consistency: str,
        backoff: Backoff,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        label: str | None = None,
        wait: float = BLOCKING_WAIT,
    ) -> None:
        self.host = host
        self.port = port
        self.key = key
        self.namespace = namespace
        self.token = token
        self.datacenter = datacenter
        self.consistency = consistency
        self.backoff = backoff
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.label = label
        self.wait = wait
        self.dtab: Activity[Dtab] = Activity(Pending, start=self._on_observed)
        self.client: ConsulClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: the next blocking index
        self.index = 0
        # counters (metrics and the state page)
        self.updates = 0
        self.errors = 0
        self.parse_errors = 0
        # Linkerd's VarState of the raw (not stabilized) dtab activity
        self.running = False
        self.last_started_at: float | None = None
        self.last_stopped_at: float | None = None
        self.last_updated_at: float | None = None
        self.value: Any = "Still pending"
        # Linkerd's PollState
        self.request: str | None = None
        self.last_request_at: float | None = None
        self.response: dict[str, Any] | None = None
        self.last_response_at: float | None = None
        self.error: str | None = None
        self._last_logged: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def _on_observed(self, _: Any) -> None:
        self.start()

    def start(self) -> None:
        """Start watching (idempotent); needs a running event loop (no-op without one)."""
        if self._task is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self._run(), name=f"{KIND} {self.key}")

    async def close(self) -> None:
        """Stop watching and close the Consul client (idempotent)."""
        self._closed = True
        client, task = self.client, self._task
        if client is not None:  # first: aborts the blocking query in progress
            await client.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None

    # -- the watch ---------------------------------------------------------------------------
    async def _run(self) -> None:
        self.running = True
        self.last_started_at = time.time()
        try:
            self.client = client = ConsulClient(
                self.host,
                self.port,
                token=self.token,
                consistency=self.consistency,
                wait=self.wait,
                ssl_context=self.ssl_context,
                server_hostname=self.server_hostname,
            )
            bucket = TokenBucket()
            delays: Iterator[float] | None = None
            while True:
                await bucket.acquire()
                try:
                    status, returned, text = await self._get(client)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self._failed(e)
                    self.index = 0
                    if delays is None:
                        delays = iter(self.backoff())
                    await asyncio.sleep(max(0.0, next(delays, 1.0)))
                    continue
                delays = None
                self._answered(status, returned, text)
                new = next_index(self.index, returned)
                if new == 0 and self.index > 0:
                    log.info(
                        "%s %s: the index went backwards (%d → %s); reset",
                        KIND,
                        self.key,
                        self.index,
                        returned,
                    )
                self.index = new
        finally:
            self.running = False
            self.last_stopped_at = time.time()

    def params(self) -> list[tuple[str, str]]:
        """The query parameters of the next request."""
        params = [("raw", "true")]
        if self.index > 0:
            params += [("index", str(self.index)), ("wait", f"{round(self.wait * 1000)}ms")]
        if self.datacenter:
            params.append(("dc", self.datacenter))
        params += consistency_params(self.consistency)
        return params

    async def _get(self, client: ConsulClient) -> tuple[int, int, str | None]:
        """One ``GET /v1/kv/<key>?raw``: (status, index, value text or None for 404)."""
        path = f"/v1/kv/{self.key}"
        params = self.params()
        headers = {"X-Consul-Token": self.token} if self.token else {}
        self.request = f"GET {path}?{urllib.parse.urlencode(params)}"
        self.last_request_at = time.time()
        client.requests += 1
        try:
            response = await client.api.http.get(
                lambda r: r, path=path, params=params, headers=headers
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.last_response_at = time.time()
            self.response = None
            self.error = str(e) or type(e).__name__
            raise
        self.last_response_at = time.time()
        status = int(response.code)
        header = response.headers.get("X-Consul-Index")
        if status == 404:
            self.response = None
            self.error = f"not found: {self.key}"
            return status, parse_index(header), None
        if status != 200:
            body = (response.body or "").strip()
            message = f"consul answered {status} to GET {path}: {body[:200]}"
            self.response = None
            self.error = message
            raise ConsulError(message)
        content = response.content
        text = content.decode("utf-8") if isinstance(content, bytes) else str(response.body)
        index = parse_index(header)
        self.response = {"value": text, "index": header}
        self.error = None
        return status, index, text

    def _publish(self, state: State[Dtab], value: Any) -> None:
        self.value = value
        self.last_updated_at = time.time()
        if state != self.dtab.sample():
            self.updates += 1
            self.dtab.update(state)

    def _answered(self, status: int, index: int, text: str | None) -> None:
        if text is None:  # no such key: Linkerd's empty dtab
            self._last_logged = None
            self._publish(Ok(Dtab.empty), "")
            return
        try:
            dtab = Dtab.read(text)
        except Exception as e:
            self.parse_errors += 1
            message = f"dtab in consul key {self.key} does not parse: {e}"
            if self._last_logged != message:
                self._last_logged = message
                log.warning(
                    "%s%s",
                    message,
                    "; keeping the last good dtab"
                    if isinstance(self.dtab.sample(), Ok)
                    else "; no good dtab yet",
                )
            self.value = message
            self.last_updated_at = time.time()
            if not isinstance(self.dtab.sample(), Ok):
                self.dtab.update(Failed(ValueError(message)))
            return
        if self._last_logged is not None:
            log.info("%s %s: dtab read again", KIND, self.key)
            self._last_logged = None
        self._publish(Ok(dtab), {"version": str(index), "dtab": dtab.show})

    def _failed(self, error: BaseException) -> None:
        self.errors += 1
        message = str(error) or type(error).__name__
        shown = f"consul {self.host}:{self.port} key {self.key}: {message}"
        if self._last_logged != shown:
            self._last_logged = shown
            log.warning(
                "%s%s",
                shown,
                "; keeping the last good dtab, retrying"
                if isinstance(self.dtab.sample(), Ok)
                else "; retrying",
            )
        self.value = message
        self.last_updated_at = time.time()
        if not isinstance(self.dtab.sample(), Ok):
            self.dtab.update(Failed(ConsulError(shown)))

    # -- admin -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Linkerd's ``ConsulDtabStoreHandler`` entry of the namespace (``state``: the
        VarState of the dtab; ``poll``: the last Consul call), plus turnout's ``dtab`` in
        force and counters."""
        current = self.dtab.sample()
        return {
            "state": {
                "running": self.running,
                "lastStartedAt": _time(self.last_started_at),
                "lastStoppedAt": _time(self.last_stopped_at),
                "lastUpdatedAt": _time(self.last_updated_at),
                "value": self.value,
            },
            "poll": {
                "request": self.request,
                "lastRequestAt": _time(self.last_request_at),
                "response": self.response,
                "lastResponseAt": _time(self.last_response_at),
                "error": self.error,
            },
            "dtab": current.value.show if isinstance(current, Ok) else None,
            "index": self.index,
            "updates": self.updates,
            "errors": self.errors,
            "parseErrors": self.parse_errors,
        }


class ConsulDtabInterpreter(NameInterpreter):
    """The ``default`` interpreter (``inner``: configured namers, then ``/$``) binding with
    ``watch.dtab ++ <router and request dtab>``."""

    def __init__(self, inner: NameInterpreter, watch: DtabWatch) -> None:
        self.inner = inner
        self.watch = watch

    def bind(self, dtab: Dtab, path: Path) -> Activity[NameTree[NameBound]]:
        stored_dtab = self.watch.dtab
        inner = self.inner

        def compute() -> State[NameTree[NameBound]]:
            stored = stored_dtab.sample()
            if isinstance(stored, Failed):
                return Failed(stored.error)
            if not isinstance(stored, Ok):
                return Pending
            full = stored.value + dtab if len(stored.value) else dtab
            # sampled unobserved, the inner binding is computed here and its dependencies
            # (namer activities) are tracked by this activity
            return inner.bind(full, path).sample()

        return derive_activity(compute)

    def stored_dtab(self) -> State[Dtab]:
        return self.watch.dtab.sample()

    def namer_lookup(self, path: Path) -> State[NameTree[Name]]:
        return self.inner.namer_lookup(path)

    def transform_delegate(self, node: Any) -> State[Any]:
        return self.inner.transform_delegate(node)

    @property
    def can_delegate(self) -> bool:
        return self.inner.can_delegate

    def state(self) -> dict[str, Any]:
        """``/<router>/interpreter_state/io.l5d.consul.interpreter.json``: by namespace."""
        return {self.watch.namespace: self.watch.state()}

    async def close(self) -> None:
        await self.watch.close()
        await self.inner.close()
