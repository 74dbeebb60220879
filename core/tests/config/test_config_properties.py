"""Property tests of the configuration loader (hypothesis).

- Any text, YAML-ish or not, either loads or raises :class:`ConfigError`; nothing else
  escapes (no yaml, Unicode, recursion or overflow error), and every problem carries
  ``file:line:col`` inside the text (the one exception: an empty document, a problem of the
  whole file).
- Any data structure, written as YAML or as JSON, behaves the same way, and both spellings
  of the same data load to equal configs.
- A valid config round-trips: ``to_dict(redact=False)`` written as JSON or YAML loads back to
  an equal config, and serialises to the same data again.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from turnout.config import LoadedConfig, load_text
from turnout.errors import ConfigError
from turnout.registry import Registry

NAME = "prop.yaml"
EMPTY = "the configuration is empty; it needs 'routers'"

SETTINGS = settings(
    max_examples=int(os.environ.get("TURNOUT_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def load_or_problems(
    registry: Registry, text: str, env: Mapping[str, str] | None = None
) -> LoadedConfig | None:
    """Load ``text``; a refusal must be a ConfigError whose every problem is located in it."""
    try:
        return load_text(text, NAME, registry=registry, environ=env or {})
    except ConfigError as e:
        problems = e.problems
    assert problems, "a ConfigError must carry at least one problem"
    # (YAML breaks lines at \n, \r, \x85, \u2028 and \u2029, all of which splitlines() sees)
    lines = len(text.splitlines()) + 1
    for p in problems:
        assert p.source == NAME, p
        if p.message == EMPTY:
            assert len(problems) == 1, problems
            continue
        assert p.line is not None and p.column is not None, f"no line:col: {p!r}"
        assert 1 <= p.line <= lines, f"line {p.line} of a {lines}-line text: {p!r}"
        assert p.column >= 1, p
        assert str(p).startswith(f"{NAME}:{p.line}:{p.column}:"), p
    return None


# -- text ------------------------------------------------------------------------------------

#: pieces of YAML (and of turnout configs) that text is assembled from
FRAGMENTS = [
    "routers:",
    "- protocol: http",
    "  servers:",
    "  - port: 4140",
    "    ip: 127.0.0.1",
    "  dtab: /svc => /#/io.l5d.fs;",
    "namers:",
    "- kind: io.l5d.fs",
    "  rootDir: /tmp",
    "admin: {port: 9990}",
    "label: x",
    "kind: ",
    "port: ",
    "- ",
    ": ",
    "? ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "<<: *a",
    "<<: [*a, 1]",
    "!!int ",
    "!!float ",
    "!!str ",
    "!!binary ",
    "!!timestamp ",
    "!!set ",
    "!!omap ",
    "!foo ",
    "${HOME}",
    "${X:-1}",
    "$${Y}",
    "'",
    '"',
    "|",
    ">-",
    "#",
    "---",
    "...",
    "%YAML 1.1",
    "\t",
    "\n",
    "\r\n",
    "  ",
    "0x" + "f" * 40,
    "1" * 5000,
    "1e400",
    ".nan",
    "-.inf",
    "~",
    "null",
    "yes",
    "2001-12-14",
    "\x00",
    "\x07",
    "\ufeff",
    "\u2028",
    "\ud800",
    "é",
]

yamlish = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), max_size=40).map("".join)


@SETTINGS
@given(text=st.text(max_size=400) | yamlish)
@example(text="a: &x [*x]\nrouters: []")  # an alias inside itself
@example(text="a: &x {<<: *x}\nrouters: []")  # a merge of itself
@example(text="&a {? *a : 1, routers: []}")  # a mapping that is its own key
@example(text="a: &x 1\nb: {<<: *x}\nrouters: []")  # a merge of a scalar
@example(text="admin: {port: !!int abc}\nrouters: []")  # a tag that does not fit
@example(text="!!int")  # (IndexError in PyYAML)
@example(text="!!timestamp")  # (AttributeError in PyYAML)
@example(text="routers: !foo bar")  # an unknown tag
@example(text="admin: {port: " + "1" * 5000 + "}\nrouters: []")  # beyond int()'s digit limit
@example(text="admin: {port: 0x" + "f" * 4000 + "}\nrouters: []")  # beyond str()'s
@example(text="x: " + "[" * 600 + "]" * 600 + "\nrouters: []")  # deep nesting
@example(text="routers: \x07")  # a character YAML refuses (no mark)
@example(text="routers: \ud800")  # a lone surrogate (stdin decoded with surrogateescape)
@example(text="")
def test_any_text_loads_or_is_refused_with_located_problems(registry: Registry, text: str) -> None:
    load_or_problems(registry, text, env={"HOME": "/root"})


# -- structures ------------------------------------------------------------------------------

#: keys of turnout's schema (and a few near misses) that structures are made of
KEYS = [
    "routers",
    "protocol",
    "servers",
    "port",
    "ip",
    "dtab",
    "label",
    "namers",
    "kind",
    "rootDir",
    "prefix",
    "admin",
    "telemetry",
    "usage",
    "client",
    "service",
    "identifier",
    "header",
    "interpreter",
    "dstPrefix",
    "bindingTimeoutMs",
    "bindingCache",
    "loadBalancer",
    "failureAccrual",
    "backoff",
    "minMs",
    "maxMs",
    "ms",
    "retries",
    "budget",
    "percentCanRetry",
    "ttlSecs",
    "totalTimeoutMs",
    "hostConnectionPool",
    "maxSize",
    "configs",
    "tls",
    "socketOptions",
    "experimental",
    "token",
    "Port",
    "rootdir",
]
ROUTER_KEYS = ["servers", "dtab", "label", "client", "service", "identifier", "dstPrefix"]
KINDS = [
    "http",
    "io.l5d.fs",
    "io.l5d.global",
    "io.l5d.static",
    "io.l5d.header.token",
    "p2c",
    "ewma",
    "constant",
    "jittered",
    "io.l5d.consecutiveFailures",
    "test.secret",
    "test.experimental",
    "default",
    "io.l5d.nope",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(KINDS)
    | st.sampled_from(["/svc => /#/io.l5d.fs;", "/a=>/b|/c", "/x => (", "/s/*", "${X}"])
)
structures = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=30,
)
configs = (
    st.fixed_dictionaries(
        {},
        optional={
            "routers": st.lists(
                st.fixed_dictionaries(
                    {"protocol": st.sampled_from(["http", "https", 1])},
                    optional=dict.fromkeys(ROUTER_KEYS, structures),
                ),
                max_size=3,
            )
            | structures,
            "namers": st.lists(structures, max_size=3),
            "admin": structures,
            "telemetry": structures,
        },
    )
    | structures
)


def _has_float(data: Any) -> bool:
    if isinstance(data, float):
        return True
    if isinstance(data, dict):
        return any(_has_float(v) for v in data.values())
    if isinstance(data, list):
        return any(_has_float(v) for v in data)
    return False


@SETTINGS
@given(data=configs)
def test_any_structure_loads_or_is_refused_with_located_problems(
    registry: Registry, data: Any
) -> None:
    as_yaml = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    loaded = load_or_problems(registry, as_yaml)
    if not isinstance(data, dict) or any(not isinstance(k, str) for k in data):
        return
    as_json = json.dumps(data)
    from_json = load_or_problems(registry, as_json)
    if not _has_float(data):  # (JSON spells 1e-05 where YAML 1.1 needs 1.0e-05: a string)
        assert (loaded is None) == (from_json is None), (as_yaml, as_json)
        if loaded is not None and from_json is not None:
            assert loaded.config == from_json.config


# -- valid configs round-trip ----------------------------------------------------------------

segment = st.text(string.ascii_lowercase + string.digits + "-_.", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)
paths = st.lists(segment, min_size=1, max_size=3).map(lambda segs: "/" + "/".join(segs))
dentries = st.tuples(paths, st.lists(paths, min_size=1, max_size=3)).map(
    lambda e: f"{e[0]} => {' | '.join(e[1])}"
)
dtabs = st.lists(dentries, max_size=4).map(";\n".join)
budgets = st.fixed_dictionaries(
    {},
    optional={
        "ttlSecs": st.integers(1, 60),
        "minRetriesPerSec": st.integers(0, 1000),
        "percentCanRetry": st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    },
)
backoffs = st.fixed_dictionaries({"kind": st.just("constant")}, optional={"ms": st.integers(0)})
services = st.fixed_dictionaries(
    {},
    optional={
        "totalTimeoutMs": st.integers(1, 10**6),
        "retries": st.fixed_dictionaries({}, optional={"budget": budgets, "backoff": backoffs}),
    },
)
clients = st.fixed_dictionaries(
    {},
    optional={
        "requestAttemptTimeoutMs": st.integers(1, 10**6),
        "hostConnectionPool": st.fixed_dictionaries(
            {}, optional={"minSize": st.integers(0, 10), "maxSize": st.integers(10, 100)}
        ),
        "loadBalancer": st.sampled_from([{"kind": "p2c"}, {"kind": "ewma"}]),
    },
)
texts = st.text(string.ascii_letters + string.digits + " /._-", min_size=1, max_size=12)


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    ports = draw(st.lists(st.integers(1, 65535), min_size=5, max_size=5, unique=True))
    config: dict[str, Any] = {"admin": {"port": ports.pop()}}
    config["namers"] = draw(
        st.lists(
            st.fixed_dictionaries(
                {"kind": st.just("io.l5d.fs"), "rootDir": texts},
                optional={"prefix": paths.map(lambda p: "/#" + p)},
            )
            | st.fixed_dictionaries({"kind": st.just("test.secret"), "token": texts}),
            max_size=2,
        )
    )
    routers = []
    for i in range(draw(st.integers(1, 2))):
        router: dict[str, Any] = {"protocol": "http", "label": f"r{i}"}
        router.update(
            draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "dtab": dtabs,
                        "dstPrefix": paths,
                        "bindingTimeoutMs": st.integers(1, 10**6),
                        "service": services,
                        "client": clients,
                        "identifier": st.fixed_dictionaries(
                            {"kind": st.just("io.l5d.header.token")},
                            optional={"header": st.sampled_from(["Host", "x-svc"])},
                        ),
                    },
                )
            )
        )
        server: dict[str, Any] = {"port": ports.pop()}
        server.update(
            draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "ip": st.just("127.0.0.1"),
                        "clearContext": st.booleans(),
                        "maxConcurrentRequests": st.integers(1, 10**4),
                    },
                )
            )
        )
        router["servers"] = [server]
        routers.append(router)
    config["routers"] = routers
    return config


@SETTINGS
@given(data=valid_configs(), as_json=st.booleans())
def test_valid_configs_round_trip(registry: Registry, data: dict[str, Any], as_json: bool) -> None:
    text = json.dumps(data) if as_json else yaml.safe_dump(data, sort_keys=False)
    try:
        loaded = load_text(text, NAME, registry=registry, environ={})
    except ConfigError as e:  # (the strategy makes valid configs only)
        pytest.fail(f"a valid config was refused:\n{e}\n{text}")
    out = loaded.config.to_dict(redact=False)
    for again in (json.dumps(out), yaml.safe_dump(out, sort_keys=False)):
        reloaded = load_text(again, NAME, registry=registry, environ={})
        assert reloaded.config == loaded.config, again
        assert reloaded.config.to_dict(redact=False) == out


def _mutate(data: Any, draw: st.DrawFn) -> Any:
    """``data`` with one node somewhere replaced, removed or given an unknown key."""
    if isinstance(data, dict) and data and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(data)))
        out = dict(data)
        action = draw(st.sampled_from(["descend", "replace", "delete", "add"]))
        if action == "descend":
            out[key] = _mutate(out[key], draw)
        elif action == "replace":
            out[key] = draw(structures)
        elif action == "delete":
            del out[key]
        else:
            out[draw(st.sampled_from(KEYS) | st.text(max_size=6))] = draw(structures)
        return out
    if isinstance(data, list) and data and draw(st.booleans()):
        i = draw(st.integers(0, len(data) - 1))
        return [*data[:i], _mutate(data[i], draw), *data[i + 1 :]]
    return draw(structures)


@SETTINGS
@given(data=st.data(), valid=valid_configs())
def test_mutated_valid_configs_load_or_are_refused_with_located_problems(
    registry: Registry, data: st.DataObject, valid: dict[str, Any]
) -> None:
    mutated = valid
    for _ in range(data.draw(st.integers(1, 3))):
        mutated = _mutate(mutated, data.draw)
    load_or_problems(registry, yaml.safe_dump(mutated, sort_keys=False, allow_unicode=True))
