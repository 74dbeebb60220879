"""The ``io.l5d.marathon`` namer: ``/#/io.l5d.marathon/<app id…>[/<residual…>]``.

As in Linkerd 1 (``io.buoyant.namer.marathon.AppIdNamer``):

- The namer polls ``GET /v2/apps`` every ``ttlMs`` (± ``jitterMs``) while any name is in use,
  and matches a path, lower-cased, against those ids: the **shortest** leading part of the
  path that is an app id names the app, the rest is the residual. ``/web/v1`` is app ``/web``
  with residual ``/v1`` when ``/web`` exists; with only ``/web/v1`` it is that app. No match
  is ``Neg``: the next dtab alternative is tried.
- Each app in use is polled with ``GET /v2/apps/<id>?embed=app.tasks`` every ``ttlMs``
  (± ``jitterMs``); each answer is published. No addresses (no tasks, or none healthy with
  ``useHealthCheck``), or a 404, is ``Neg``.
- The bound id is ``/#/<prefix>/<app id>``.

Outages follow :class:`turnout.api.DiscoveryNamer`: once Marathon answered, errors (refused, 5xx,
timeouts, 401) keep the last app list and the last address sets, with the error and the
staleness shown in ``/namer_state`` and the ``namer/<prefix>/stale_seconds`` gauge; before
any answer, names fail at once (502 with Marathon's error). Failed polls are retried after a
jittered backoff from 100 ms up to ``ttlMs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from turnout.api import (
    Activity,
    AddrBound,
    AddrNeg,
    AddrPending,
    DiscoveryNamer,
    Failed,
    Freshness,
    Leaf,
    MetricsTree,
    Name,
    NameBound,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    Publish,
    State,
    Var,
    cancelled,
    derive_activity,
    reconnect_backoff,
)

from .api import AppNotFound, MarathonApi, MarathonError, app_addresses
from .auth import describe

if TYPE_CHECKING:
    from .dst import DstBinding

log = logging.getLogger("turnout.namer.marathon")

#: lookups remembered before unobserved ones are forgotten (names come from requests)
MAX_CACHED_LOOKUPS = 10_000


class _AppsPending:
    def __repr__(self) -> str:
        return "AppsPending"


APPS_PENDING: Any = _AppsPending()


@dataclass(frozen=True)
class AppsFailed:
    """The app list could not be read before any good answer."""

    error: str


AppIds = frozenset[Path]


def match_app(path: Path, apps: AppIds) -> tuple[Path, int] | None:
    """The app ``path`` names and how many labels that takes: the shortest lower-cased
    leading part of ``path`` that is an app id (Linkerd's rule), or None."""
    labels = [label.decode("utf-8", "replace").lower() for label in path]
    for n in range(1, len(labels) + 1):
        candidate = Path.of(*labels[:n])
        if candidate in apps:
            return candidate, n
    return None


class AppList(Freshness):
    """The polled ``GET /v2/apps`` answer and what operators need to know about it."""

    def __init__(self) -> None:
        super().__init__()
        self.var: Var[Any] = Var(APPS_PENDING)
        self.task: asyncio.Task[None] | None = None

    def state(self, now: float) -> dict[str, Any]:
        value = self.var.value
        if isinstance(value, frozenset):
            status, ids = "ok", sorted(str(p) for p in value)
        else:
            status, ids = ("failed" if isinstance(value, AppsFailed) else "pending"), []
        return {
            "state": status,
            "appIds": ids,
            **self.freshness(now),
            "polling": self.task is not None,
        }


class MarathonNamer(DiscoveryNamer[Path]):
    """See the module docstring. Keys are lower-cased app ids (``Path('prod', 'web')``).

    :param id_prefix: ``/#/<prefix>``.
    :param api: the Marathon client (closed by :meth:`shutdown`).
    :param ttl: seconds between polls. :param jitter: each wait is ``ttl ± jitter``.
    :param use_health_check: keep only running tasks whose health checks pass.
    :param dst: the followed ``dst`` name the API client connects through (its state is
        shown in ``/namer_state``; closed with the namer), or None.
    """

    kind = "io.l5d.marathon"

    def __init__(
        self,
        id_prefix: Path,
        api: MarathonApi,
        *,
        ttl: float = 5.0,
        jitter: float = 0.05,
        use_health_check: bool = False,
        metrics: MetricsTree | None = None,
        rng: random.Random | None = None,
        dst: DstBinding | None = None,
    ) -> None:
        super().__init__(
            id_prefix, metrics=metrics, backoff=reconnect_backoff(0.1, max(ttl, 0.1), rng)
        )
        self.api = api
        self.dst = dst
        self.ttl = ttl
        self.jitter = jitter
        self.use_health_check = use_health_check
        self.rng = rng or random.Random()
        self.apps = AppList()
        self.apps.var = Var(APPS_PENDING, start=self._start_apps)
        self._marathon_lookups: dict[Path, Activity[NameTree[Name]]] = {}
        self._apps_errors = metrics.counter(*self.stats_scope, "errors") if metrics else None

    def next_ttl(self) -> float:
        """The wait before the next poll: ``ttl`` ± up to ``jitter`` (at least 1 ms)."""
        return max(self.ttl + self.rng.uniform(-1.0, 1.0) * self.jitter, 0.001)

    # -- DiscoveryNamer --------------------------------------------------------------------
    def key_of(self, path: Path) -> tuple[Path, int] | None:
        """The app ``path`` names among the app ids known now (None: Neg, or not known)."""
        apps = self.apps.var.value
        return match_app(path, apps) if isinstance(apps, frozenset) else None

    async def watch(self, key: Path, publish: Publish) -> None:
        while True:
            try:
                doc = await self.api.app(key)
            except AppNotFound:
                publish(AddrNeg)
            else:
                addresses = app_addresses(doc, self.use_health_check)
                publish(AddrBound(addresses) if addresses else AddrNeg)
            await asyncio.sleep(self.next_ttl())

    async def shutdown(self) -> None:
        await self.api.close()

    # -- lookups ---------------------------------------------------------------------------
    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        # The base's lookup maps a path to its key at once; here the key depends on the app
        # list, which is itself watched: so the Activity follows the list, then the app.
        act = self._marathon_lookups.get(path)
        if act is None:
            if len(self._marathon_lookups) > MAX_CACHED_LOOKUPS:
                self._marathon_lookups = {
                    p: a for p, a in self._marathon_lookups.items() if a.observed
                }
            act = self._marathon_lookups[path] = self._activity_of(path)
        return act

    def _activity_of(self, path: Path) -> Activity[NameTree[Name]]:
        if len(path) == 0:
            return Activity.of(Neg)
        bound_cache: dict[Path, NameBound] = {}

        def state() -> State[NameTree[Name]]:
            apps = self.apps.var.sample()
            if apps is APPS_PENDING:
                return Pending
            if isinstance(apps, AppsFailed):
                return Failed(MarathonError(apps.error))
            found = match_app(path, apps)
            if found is None:
                return Ok(Neg)
            key, consumed = found
            watch = self.watch_var(key)
            addr = watch.var.sample()
            if addr is AddrPending:
                return Pending
            if addr is AddrNeg:
                return Ok(Neg)
            bound = bound_cache.get(key)
            if bound is None or bound.addr is not watch.var:
                bound_cache.clear()
                bound = bound_cache[key] = NameBound(
                    self.id_prefix + key, watch.var, path.drop(consumed)
                )
            return Ok(Leaf(bound))  # bound, or failed before any answer: 502 at once

        return derive_activity(state)

    # -- the app list ----------------------------------------------------------------------
    def _start_apps(self, var: Var[Any]) -> Callable[[], None]:
        if self.closed:
            var.update(AppsFailed(f"{self.kind}: the namer is closed"))
            return lambda: None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: a synchronous caller (turnout check, tests)
            return lambda: None
        task = self.apps.task = loop.create_task(self._poll_apps())

        def stop() -> None:
            task.cancel()
            if self.apps.task is task:
                self.apps.task = None

        return stop

    async def _poll_apps(self) -> None:
        apps = self.apps
        backoffs = self.backoff()
        while True:
            try:
                ids = await self.api.app_ids()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure of Marathon or of the client
                if cancelled():  # the client turned our cancellation into an error
                    raise asyncio.CancelledError from e
                self._apps_failed(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
                await asyncio.sleep(min(next(backoffs), self.next_ttl()))
                continue
            now = time.time()
            if apps.answered(now):
                log.info("%s app list: answering again", self.kind)
                backoffs = self.backoff()
            if ids != apps.var.value:
                apps.changed(now)
                apps.var.update(ids)
            await asyncio.sleep(self.next_ttl())

    def _apps_failed(self, error: str) -> None:
        apps = self.apps
        if apps.failed(time.time(), error):
            log.warning("%s app list: %s (keeping the last good list)", self.kind, error)
        if self._apps_errors is not None:
            self._apps_errors.incr()
        if not isinstance(apps.var.value, frozenset):
            apps.var.update(AppsFailed(f"{self.kind} app list: {error}"))

    # -- observability ---------------------------------------------------------------------
    def stalest(self) -> float:
        return max(super().stalest(), self.apps.stale_seconds(time.time()))

    def bound_names(self) -> Iterable[Path] | None:
        apps = self.apps.var.value
        if not isinstance(apps, frozenset):
            return None
        return sorted(self.id_prefix + app for app in apps)

    def state(self) -> dict[str, Any]:
        out = super().state()
        out["apps"] = self.apps.state(time.time())
        out["marathon"] = {
            "url": self.api.base_url + self.api.api_prefix,
            "auth": describe(self.api.credentials),
            "ttlMs": round(self.ttl * 1000),
            "jitterMs": round(self.jitter * 1000),
            "useHealthCheck": self.use_health_check,
        }
        if self.dst is not None:
            dst = self.dst.state()
            out["marathon"]["dst"] = dst
            current = dst["current"]
            out["marathon"]["url"] = (
                None if current is None else f"{self.api.scheme}://{current}{self.api.api_prefix}"
            )
        return out

    async def close(self) -> None:
        task, self.apps.task = self.apps.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().close()
        if self.dst is not None:
            self.dst.close()
