"""InfluxDB line protocol: escaping, and the metrics tree as Linkerd 1's ``io.l5d.influxdb``
wrote it.

Linkerd's telemeter walks its metrics tree and writes one line per *scope* (a node of the
tree that has metrics directly below it): the scope's path joined with ``:`` is the
measurement (every character outside ``[a-zA-Z0-9:]`` replaced by ``_``), the metrics of the
scope are its fields, and no timestamp is written (Telegraf adds the time it pulled)::

    rt:client,client=#/io.l5d.fs/web,host=127.0.0.1:9990,rt=http failures=0,requests=12,...

- ``rt/<router>/...`` → tag ``rt=<router>``, and the measurement keeps ``rt``;
  ``rt/<router>/server/<ip>/<port>/...`` → ``rt:server``, tag ``server=<ip>/<port>``;
  ``rt/<router>/service/<name>/...`` → ``rt:service``, tag ``service=<name>``;
  ``rt/<router>/client/<id>/...`` → ``rt:client``, tag ``client=<id>``, and its
  ``service/<name>/...`` → ``rt:client:service``, tag ``service=<name>``. Ids and names are
  written without their leading ``/``, as Linkerd's tree holds them (``#/io.l5d.fs/web``,
  ``svc/web``). Deeper scopes keep the tags: ``rt:client:loadbalancer,client=...``.
- turnout's own ``client/<id>/endpoint/<host:port>/...`` (Linkerd has no such scope) →
  ``rt:client:endpoint``, tag ``endpoint=<host:port>``.
- Metrics at the top of the tree, outside any scope, go to the measurement ``root``.
- Every line has the tag ``host``: the ``Host`` header of the request (``none`` without one).
- Tags and fields are sorted by key. Counters are written as integers and gauges as floats,
  both without the ``i`` suffix, so InfluxDB stores every field as a float (as Linkerd's
  output was). A histogram ``x`` gives ``x_count`` (all time, as ``/admin/metrics.json``)
  and, when its window (the last one to two minutes) holds values, ``x_avg``, ``x_max``,
  ``x_min``, ``x_p50``, ``x_p90``, ``x_p95``, ``x_p99``, ``x_p999``, ``x_p9999`` and
  ``x_sum`` over that window. A gauge that is not a finite number is left out (line
  protocol has no NaN or infinity).

Escaping follows the line protocol reference (InfluxDB 2): in measurements, commas and
spaces; in tag keys, tag values and field keys, commas, equals signs and spaces; in string
field values, double quotes and backslashes; a backslash is doubled everywhere (two
backslashes read as one). Line protocol cannot carry a newline, carriage return or tab in
a name, so those are written as ``\\n``, ``\\r`` and ``\\t`` (as Telegraf's serializer does).
Linkerd escaped none of this; its measurement names are sanitized and left as they were.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from turnout.api import Counter, Gauge, Histogram, MetricsTree, SumCounter

__all__ = [
    "escape_field_key",
    "escape_measurement",
    "escape_string",
    "escape_tag",
    "format_line",
    "render",
]

Key = tuple[str, ...]

_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(text: str, specials: str) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch in specials:
            out.append("\\" + ch)
        else:
            out.append(_CONTROL.get(ch, ch))
    return "".join(out)


def escape_measurement(name: str) -> str:
    """A measurement name: commas and spaces escaped (and backslashes doubled)."""
    return _escape(name, ", ")


def escape_tag(text: str) -> str:
    """A tag key or tag value: commas, equals signs and spaces escaped."""
    return _escape(text, ",= ")


def escape_field_key(text: str) -> str:
    """A field key: commas, equals signs and spaces escaped."""
    return _escape(text, ",= ")


def escape_string(text: str) -> str:
    """A string field value, without its quotes: double quotes and backslashes escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


FieldValue = int | float | bool | str


def _field_value(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"line protocol has no {value} (a non-finite float)")
        return repr(value)
    return f'"{escape_string(value)}"'


def format_line(
    measurement: str,
    tags: Iterable[tuple[str, str]],
    fields: Mapping[str, FieldValue],
    timestamp: int | None = None,
) -> str:
    """One line (without the newline). ``tags`` and ``fields`` are written in the order
    given; tags with an empty value are left out (line protocol has no empty tag value).
    Integers are written as Linkerd wrote them, without the ``i`` suffix (floats to
    InfluxDB); a string is quoted and escaped."""
    if not fields:
        raise ValueError("a line needs at least one field")
    head = escape_measurement(measurement)
    tag_text = "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in tags if k and v)
    field_text = ",".join(f"{escape_field_key(k)}={_field_value(v)}" for k, v in fields.items())
    line = f"{head}{tag_text} {field_text}"
    return line if timestamp is None else f"{line} {timestamp}"


# -- the metrics tree --------------------------------------------------------------------------

#: leaves that every client and service scope has (so their parent is the scope): where an
#: id of several segments ends is learnt from the tree itself (as the Prometheus telemeter)
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

_DISALLOWED = re.compile(r"[^a-zA-Z0-9:]")

#: histogram fields: (suffix, key of ``Histogram.snapshot()``), in Linkerd's names
_STAT_FIELDS = (
    ("avg", "avg"),
    ("max", "max"),
    ("min", "min"),
    ("p50", "p50"),
    ("p90", "p90"),
    ("p95", "p95"),
    ("p99", "p99"),
    ("p999", "p9990"),
    ("p9999", "p9999"),
    ("sum", "sum"),
)


def anchors_of(keys: Iterable[Key]) -> frozenset[Key]:
    """The client and service scopes present in the tree."""
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
    """Index just past the id that begins at ``start`` (at least one segment; never the
    last segment of the key, which is the metric's own name)."""
    for end in range(start + 1, len(key)):
        if key[:end] in anchors:
            return end
    for end in range(start + 1, len(key)):
        if key[end] in _METRIC_HEADS:
            return end
    return max(start + 1, len(key) - 1)


@dataclass(frozen=True, slots=True)
class Place:
    """Where one metric of the tree goes: its line (measurement and tags but ``host``) and
    its field name."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    field: str


def place_of(key: Key, anchors: frozenset[Key]) -> Place:
    """The :class:`Place` of ``key`` (see the module docstring)."""
    tags: list[tuple[str, str]] = []
    if len(key) >= 3 and key[0] == "rt":
        router, kind = key[1], key[2]
        tags.append(("rt", router))
        parts: list[str] = ["rt"]
        rest: Key
        if kind == "server" and len(key) >= 6:
            parts.append("server")
            tags.append(("server", f"{key[3]}/{key[4]}"))
            rest = key[5:]
        elif kind == "service" and len(key) >= 5:
            end = _id_end(key, 3, anchors)
            parts.append("service")
            tags.append(("service", "/".join(key[3:end])))
            rest = key[end:]
        elif kind == "client" and len(key) >= 5:
            end = _id_end(key, 3, anchors)
            parts.append("client")
            tags.append(("client", "/".join(key[3:end])))
            rest = key[end:]
            if len(rest) >= 3 and rest[0] == "service":
                s_end = _id_end(key, end + 1, anchors)
                parts.append("service")
                tags.append(("service", "/".join(key[end + 1 : s_end])))
                rest = key[s_end:]
            elif len(rest) >= 3 and rest[0] == "endpoint":
                parts.append("endpoint")
                tags.append(("endpoint", rest[1]))
                rest = rest[2:]
        else:
            rest = key[2:]
        parts.extend(rest[:-1])
        field = rest[-1]
    else:
        parts = list(key[:-1]) or ["root"]
        field = key[-1]
    measurement = _DISALLOWED.sub("_", ":".join(parts))
    return Place(measurement, tuple(tags), field)


def _number(value: float) -> int | float:
    """Linkerd wrote the statistics of a summary as integers (they were longs)."""
    return int(value) if float(value).is_integer() else float(value)


class Renderer:
    """Renders a :class:`~turnout.api.MetricsTree`; keeps each key's :class:`Place` between
    scrapes (a key's place only changes when the tree's client/service scopes change)."""

    def __init__(self, metrics: MetricsTree) -> None:
        self.metrics = metrics
        self._anchors: frozenset[Key] | None = None
        self._places: dict[Key, Place] = {}

    def render(self, host: str) -> str:
        """The whole tree, one line per scope, sorted; ``""`` when the tree is empty."""
        items = self.metrics.sorted_items()
        anchors = anchors_of(key for key, _ in items)
        if anchors != self._anchors:
            self._anchors = anchors
            self._places = {}
        places = self._places
        lines: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, FieldValue]] = {}
        for key, metric in items:
            if not key:
                continue
            place = places.get(key)
            if place is None:
                place = places[key] = place_of(key, anchors)
            fields = lines.setdefault((place.measurement, place.tags), {})
            name = place.field
            if isinstance(metric, Counter | SumCounter):
                fields[name] = int(metric.value)
            elif isinstance(metric, Gauge):
                try:
                    value = float(metric.read())
                except Exception:  # a gauge of something that just went away
                    continue
                if math.isfinite(value):
                    fields[name] = value
            elif isinstance(metric, Histogram):
                snap = metric.snapshot()
                fields[f"{name}_count"] = int(snap["count"])
                if len(snap) > 1:
                    for suffix, stat in _STAT_FIELDS:
                        v = snap[stat]
                        fields[f"{name}_{suffix}"] = float(v) if suffix == "avg" else _number(v)
        if len(places) > 2 * len(items) + 1000:  # keys that left the tree
            self._places = {}
        host_tag = ("host", host or "none")
        out = []
        for (measurement, tags), fields in sorted(lines.items()):
            if not fields:
                continue
            all_tags = sorted((*tags, host_tag))
            out.append(format_line(measurement, all_tags, dict(sorted(fields.items()))))
            out.append("\n")
        return "".join(out)


def render(metrics: MetricsTree, host: str = "none") -> str:
    """The tree in line protocol, as one scrape of ``/admin/metrics/influxdb`` answers."""
    return Renderer(metrics).render(host)
