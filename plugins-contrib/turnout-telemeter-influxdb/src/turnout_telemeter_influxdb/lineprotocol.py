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

from turnout.api import (
    Counter,
    Gauge,
    Histogram,
    MetricsTree,
    SumCounter,
    metric_anchors,
    split_metric_key,
)

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


@dataclass(frozen=True, slots=True)
class Place:
    """Where one metric of the tree goes: its line (measurement and tags but ``host``) and
    its field name."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    field: str


def place_of(key: Key, anchors: frozenset[Key]) -> Place:
    """The :class:`Place` of ``key`` (see the module docstring): core's scope of the key
    (:func:`turnout.api.split_metric_key`) as tags, the rest of its path as measurement."""
    scope = split_metric_key(key, anchors)
    if not scope.kind:  # outside rt/
        measurement = _DISALLOWED.sub("_", ":".join(key[:-1]) or "root")
        return Place(measurement, (), key[-1])
    tags: list[tuple[str, str]] = [("rt", scope.router or "")]
    parts = ["rt"]
    if scope.server is not None:
        parts.append("server")
        tags.append(("server", "/".join(scope.server)))
    if scope.client is not None:
        parts.append("client")
        tags.append(("client", "/".join(scope.client)))
    if scope.service is not None:
        parts.append("service")
        tags.append(("service", "/".join(scope.service)))
    if scope.endpoint is not None:
        parts.append("endpoint")
        tags.append(("endpoint", scope.endpoint))
    parts.extend(scope.rest[:-1])
    return Place(_DISALLOWED.sub("_", ":".join(parts)), tuple(tags), scope.rest[-1])


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
        anchors = metric_anchors(key for key, _ in items)
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
