"""Where a path of the metrics tree sits: the router, server, client, service and endpoint
scopes under ``rt/<router>/``, as every telemeter that relabels metrics needs them (the
Prometheus and InfluxDB telemeters).

:func:`split_metric_key` finds the scope of a key: a server (``server/<ip>/<port>``), a
service (``service/<logical name...>``), a client (``client/<bound id...>``, optionally
``.../service/<logical name...>`` for a client/service pair) and, below a client, an
``endpoint/<host:port>``. Client ids and service names have any number of segments, so where
an id ends is learnt from the tree itself: every client and service scope holds
``requests``/``success``/``failures``/``request_latency_ms`` (its *anchors*, see
:func:`metric_anchors`). Both are pure functions of their arguments, so callers cache them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Key = tuple[str, ...]

#: leaves that every client and service scope has (so their parent is a scope)
ANCHOR_LEAVES = frozenset({"requests", "success", "failures", "request_latency_ms"})

#: first segments of metrics below a scope; used only when a scope has no anchor
_METRIC_HEADS = frozenset(
    {
        "available",
        "budget",
        "closes",
        "connect_latency_ms",
        "connection_duration",
        "connections",
        "connects",
        "endpoint",
        "exn",
        "failed_connect_latency_ms",
        "failure_accrual",
        "failures",
        "loadbalancer",
        "pending",
        "pool_cached",
        "pool_num_too_many_waiters",
        "pool_num_waited",
        "pool_size",
        "pool_waiters",
        "received_bytes",
        "rejected",
        "request_latency_ms",
        "requests",
        "retries",
        "sent_bytes",
        "service",
        "status",
        "success",
        "time",
    }
)


@dataclass(frozen=True, slots=True)
class MetricScope:
    """Where a key sits: the ids lifted out of its path and the metric path below them."""

    #: ``server``, ``client``, ``service``, ``router`` (other keys under ``rt/<router>``) or
    #: ``""`` (keys outside ``rt/``: ``process/...``, ``namer/...``)
    kind: str
    rest: Key
    router: str | None = None
    server: tuple[str, str] | None = None
    client: Key | None = None
    #: the logical name of a service scope, or of a client/service pair
    service: Key | None = None
    endpoint: str | None = None


def metric_anchors(keys: Iterable[Key]) -> frozenset[Key]:
    """The client and service scopes present in the tree (see the module docstring)."""
    out = set()
    for key in keys:
        if (
            len(key) >= 5
            and key[-1] in ANCHOR_LEAVES
            and key[0] == "rt"
            and key[2] in ("client", "service")
        ):
            out.add(key[:-1])
    return frozenset(out)


def _id_end(key: Key, start: int, anchors: frozenset[Key]) -> int:
    """Index just past the id that begins at ``start`` (at least one segment long)."""
    for end in range(start + 1, len(key)):
        if key[:end] in anchors:
            return end
    for end in range(start + 1, len(key)):  # no anchor: stop at the first metric name
        if key[end] in _METRIC_HEADS:
            return end
    return max(start + 1, len(key) - 1)


def split_metric_key(key: Key, anchors: frozenset[Key]) -> MetricScope:
    """The :class:`MetricScope` of ``key`` given the tree's ``anchors``."""
    if len(key) < 3 or key[0] != "rt":
        return MetricScope("", key)
    router, kind = key[1], key[2]
    if kind == "server" and len(key) >= 6:
        return MetricScope("server", key[5:], router=router, server=(key[3], key[4]))
    if kind == "service" and len(key) >= 5:
        end = _id_end(key, 3, anchors)
        return MetricScope("service", key[end:], router=router, service=key[3:end])
    if kind == "client" and len(key) >= 5:
        end = _id_end(key, 3, anchors)
        client, rest = key[3:end], key[end:]
        service = endpoint = None
        if len(rest) >= 3 and rest[0] == "service":
            s_end = _id_end(key, end + 1, anchors)
            service, rest = key[end + 1 : s_end], key[s_end:]
        elif len(rest) >= 3 and rest[0] == "endpoint":
            endpoint, rest = rest[1], rest[2:]
        return MetricScope(
            "client", rest, router=router, client=client, service=service, endpoint=endpoint
        )
    return MetricScope("router", key[2:], router=router)


__all__ = ["ANCHOR_LEAVES", "Key", "MetricScope", "metric_anchors", "split_metric_key"]
