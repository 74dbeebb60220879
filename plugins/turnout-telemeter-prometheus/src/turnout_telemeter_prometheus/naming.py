"""How a path of the metrics tree becomes a Prometheus metric name and labels.

Two steps, both pure functions of the key (so their results are cached per key):

1. :func:`split` (core's :func:`turnout.api.split_metric_key`) finds the *scope* of a key
   under ``rt/<router>/``: a server, a service, a client (or a client/service pair) and,
   below a client, an endpoint; where a multi-segment id ends is learnt from the tree's
   *anchors* (:func:`anchors_of`; see :mod:`turnout.metric_scopes`).
2. A :class:`Naming` turns the scope and the rest of the path into a family name, labels and
   a unit scale: :class:`PrometheusNaming` (``turnout_client_requests_total{router, client}``,
   latencies in seconds) or :class:`LinkerdNaming` (Linkerd 1's names exactly:
   ``rt:client:requests{rt="http", client="#/io.l5d.fs/foo"}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from turnout.api import MetricScope, metric_anchors, split_metric_key

Key = tuple[str, ...]  # (the same as turnout.api's metric keys)
#: what a metric of the tree is, as far as naming goes
Kind = Literal["counter", "gauge", "stat"]

#: (the scope splitting is core's, shared with other telemeters: turnout.metric_scopes)
Scope = MetricScope
anchors_of = metric_anchors
split = split_metric_key


@dataclass(frozen=True, slots=True)
class Series:
    """One metric of the tree as Prometheus sees it."""

    #: family name; counters without ``_total`` (the encoder adds it)
    name: str
    labels: tuple[tuple[str, str], ...]
    #: family type: ``counter``, ``gauge``, ``unknown``, ``histogram`` or ``summary``
    type: str
    #: multiply the tree's values by this (milliseconds → seconds: 0.001)
    scale: float
    #: HELP text
    doc: str


def _lift_exception(rest: Key) -> tuple[Key, str | None, str | None]:
    """``failures/<exn...>`` / ``exn/<exn...>`` → (rest up to it, which, exception)."""
    for i, part in enumerate(rest[:-1]):
        if part in ("failures", "exn"):
            return rest[:i], part, ":".join(rest[i + 1 :])
    return rest, None, None


def _generic_path(scope: Scope) -> str:
    head = {
        "server": "rt/<router>/server/<ip>/<port>",
        "client": "rt/<router>/client/<id>",
        "service": "rt/<router>/service/<name>",
        "router": "rt/<router>",
    }.get(scope.kind)
    parts: list[str] = [head] if head else []
    if scope.kind == "client" and scope.service is not None:
        parts.append("service/<name>")
    if scope.endpoint is not None:
        parts.append("endpoint/<address>")
    parts.extend(scope.rest)
    return "/".join(parts)


class Naming:
    """Base of the two naming schemes: :meth:`series` of one key (``None``: not exported)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def series(self, key: Key, scope: Scope, kind: Kind) -> Series | None:
        raise NotImplementedError


# -- Linkerd 1 ----------------------------------------------------------------------------------

_LINKERD_DISALLOWED = re.compile(r"[^a-zA-Z0-9:]")


class LinkerdNaming(Naming):
    """Linkerd 1's ``io.l5d.prometheus`` names.

    The path is joined with ``:`` and every character outside ``[a-zA-Z0-9:]`` becomes ``_``;
    ``rt/<router>`` → label ``rt``; ``server/<ip>/<port>`` → ``server="<ip>/<port>"``;
    ``client/<id>`` → ``client="<id>"``; ``service/<name>`` → ``service="<name>"`` (ids
    without their leading ``/``, as Linkerd prints them); ``failures/<exn>`` and
    ``exn/<exn>`` → ``exception="<exn>"`` (nested names joined with ``:``; ``exn`` is renamed
    ``exceptions``). Counters and gauges are plain samples; stats are ``_count``, ``_sum``,
    ``_avg`` and quantile lines. Trees other than ``rt`` are not relabelled. turnout's own
    ``client/<id>/endpoint/<address>`` is lifted too (label ``endpoint``): Linkerd has no such
    metric, so no name of Linkerd's changes.
    """

    def series(self, key: Key, scope: Scope, kind: Kind) -> Series | None:
        labels: list[tuple[str, str]] = []
        if scope.kind:
            assert scope.router is not None
            labels.append(("rt", scope.router))
            parts = ["rt", scope.kind]
            if scope.server is not None:
                labels.append(("server", "/".join(scope.server)))
            if scope.client is not None:
                labels.append(("client", "/".join(scope.client)))
            if scope.service is not None:
                if scope.kind == "client":
                    parts.append("service")
                labels.append(("service", "/".join(scope.service)))
            if scope.endpoint is not None:
                parts.append("endpoint")
                labels.append(("endpoint", scope.endpoint))
            if scope.kind == "router":
                parts = ["rt"]
            rest, which, exception = _lift_exception(scope.rest)
            parts.extend(rest)
            if which is not None:
                parts.append("failures" if which == "failures" else "exceptions")
                labels.append(("exception", exception or ""))
        else:
            parts = list(key)
        name = _LINKERD_DISALLOWED.sub("_", self.prefix + ":".join(parts))
        if not name or name[0].isdigit():
            name = "_" + name
        typ = {"counter": "unknown", "gauge": "gauge", "stat": "summary"}[kind]
        return Series(name, tuple(labels), typ, 1.0, _generic_path(scope) or "/".join(key))


# -- Prometheus conventions ---------------------------------------------------------------------

_PROM_DISALLOWED = re.compile(r"[^a-zA-Z0-9_]+")
_STATUS_CODE = re.compile(r"^\d{3}$")
_STATUS_CLASS = re.compile(r"^\dXX$")


def _clean(part: str) -> str:
    return _PROM_DISALLOWED.sub("_", part).strip("_")


def _address(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class PrometheusNaming(Naming):
    """Prometheus naming conventions (the default).

    ``turnout_<scope>_<metric>``: the scope (``server``, ``client``, ``service``,
    ``client_service``, ``client_endpoint``, ``router``) is in the name, its ids are labels
    (``router``, ``server="<ip>:<port>"``, ``client="/#/io.l5d.fs/foo"``,
    ``service="/svc/foo"``, ``endpoint="<host>:<port>"``). Counters end in ``_total``;
    ``..._ms``/``..._us`` metrics are converted to seconds (``request_latency_ms`` →
    ``request_latency_seconds``), latency stats become Prometheus histograms and other stats
    summaries. ``status/<code>`` → ``status_total{status="200"}`` (``status/error`` →
    ``status="error"``), ``status/<N>XX`` → ``status_class_total{class="2XX"}``,
    ``time/<class>`` → ``time_seconds{class=...}``, ``failures/<exn>`` →
    ``failures_by_exception_total{exception=...}`` (so that ``failures_total`` stays the
    total) and ``exn/<exn>`` → ``exceptions_total{exception=...}``. Other trees
    (``process/...``, ``namer/...``) keep their path, sanitized: ``turnout_process_rss_bytes``.
    """

    def series(self, key: Key, scope: Scope, kind: Kind) -> Series | None:
        labels: list[tuple[str, str]] = []
        parts: list[str] = []
        timed = False
        if scope.kind:
            assert scope.router is not None
            labels.append(("router", scope.router))
            parts.append(scope.kind)
            if scope.server is not None:
                labels.append(("server", _address(*scope.server)))
            if scope.client is not None:
                labels.append(("client", "/" + "/".join(scope.client)))
            if scope.service is not None:
                if scope.kind == "client":
                    parts.append("service")
                labels.append(("service", "/" + "/".join(scope.service)))
            if scope.endpoint is not None:
                parts.append("endpoint")
                labels.append(("endpoint", scope.endpoint))
            rest, which, exception = _lift_exception(scope.rest)
            if which is not None:
                parts.extend(rest)
                parts.append("failures_by_exception" if which == "failures" else "exceptions")
                labels.append(("exception", exception or ""))
            elif len(rest) == 2 and rest[0] == "status":
                code = rest[1]
                if _STATUS_CLASS.match(code):
                    parts.append("status_class")
                    labels.append(("class", code))
                else:
                    parts.append("status")
                    labels.append(("status", code))
            elif len(rest) == 2 and rest[0] == "time" and kind == "stat":
                parts.append("time")
                labels.append(("class", rest[1]))
                timed = True
            else:
                parts.extend(rest)
        else:
            parts.extend(key)
        words = [w for w in (_clean(p) for p in parts) if w]
        if not words:
            return None
        last, scale = words[-1], 1.0
        if last.endswith("_ms") or last == "ms":
            words[-1], scale = last[:-2] + "seconds", 1e-3
        elif last.endswith("_us") or last == "us":
            words[-1], scale = last[:-2] + "seconds", 1e-6
        elif timed:
            words[-1], scale = last + "_seconds", 1e-3
        name = _PROM_DISALLOWED.sub("_", self.prefix) + "turnout_" + "_".join(words)
        if kind == "counter":
            typ = "counter"
            if name.endswith("_total"):
                name = name[: -len("_total")]
        elif kind == "gauge":
            typ = "gauge"
        else:
            typ = "histogram" if scale != 1.0 else "summary"
        if name[0].isdigit():
            name = "_" + name
        doc = _generic_path(scope) or "/".join(key)
        if scale != 1.0:
            unit = "milliseconds" if scale == 1e-3 else "microseconds"
            doc += f" (tree unit: {unit})"
        return Series(name, tuple(labels), typ, scale, doc)


NAMINGS: dict[str, type[Naming]] = {"prometheus": PrometheusNaming, "linkerd": LinkerdNaming}
