"""The decisions of a reload (turnout.reload.plan): equal config → the running object is
reused; changes that a running process cannot take are refused; and a reload of a linker
served in this process (file errors, refusals, a thrift router without take-over)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from turnout.config.loader import load_file, load_text
from turnout.linker import Linker
from turnout.plugin_manager import load_plugins
from turnout.reload import ReloadRefused, plan
from turnout.testing import free_port

PLUGINS = load_plugins()


def conf(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "admin": {"ip": "127.0.0.1", "port": 0},
        "namers": [
            {"kind": "io.l5d.fs", "rootDir": "/tmp/a"},
            {"kind": "io.l5d.fs", "prefix": "/fs2", "rootDir": "/tmp/b"},
        ],
        "routers": [
            {"protocol": "http", "dtab": "/svc => /#/io.l5d.fs", "servers": [{"port": 1}]},
            {
                "protocol": "http",
                "label": "other",
                "dtab": "/svc => /#/fs2",
                "servers": [{"port": 2}],
            },
        ],
    }
    base.update(over)
    return base


def load(data: dict[str, Any]) -> Any:
    return load_text(yaml.safe_dump(data), "t.yaml", registry=PLUGINS.registry).config


class FakeNamer:
    pass


def test_config_objects_compare_by_value() -> None:
    a, b = load(conf()), load(conf())
    assert a is not b
    assert a.namers == b.namers and a.routers == b.routers and a.admin == b.admin
    changed = conf()
    changed["routers"][0]["client"] = {"loadBalancer": {"kind": "roundRobin"}}
    assert load(changed).routers[0] != a.routers[0]


def test_equal_config_reuses_namers_and_keeps_routers() -> None:
    old = load(conf())
    namers = [FakeNamer(), FakeNamer()]
    p = plan(old, load(conf()), namers)  # type: ignore[arg-type]
    assert [n for _, n, _ in p.namers] == namers
    assert all(reused for _, _, reused in p.namers)
    assert p.kept == ["http", "other"] and p.changed == p.added == p.removed == []


def test_dtab_change_replaces_only_that_router() -> None:
    old = load(conf())
    new = conf()
    new["routers"][1]["dtab"] = "/svc => /#/io.l5d.fs"
    p = plan(old, load(new), [FakeNamer(), FakeNamer()])  # type: ignore[arg-type]
    assert p.kept == ["http"] and p.changed == ["other"]
    assert p.same_interpreter == ["other"]  # (its interpreter config and namers unchanged)


def test_changed_and_added_namers_are_built_and_every_router_rebinds() -> None:
    old = load(conf())
    namers = [FakeNamer(), FakeNamer()]
    new = conf()
    new["namers"][1]["rootDir"] = "/tmp/c"  # changed
    new["namers"].append({"kind": "io.l5d.fs", "prefix": "/fs3", "rootDir": "/tmp/d"})
    p = plan(old, load(new), namers)  # type: ignore[arg-type]
    assert p.namers[0][1] is namers[0] and p.namers[0][2]
    assert not p.namers[1][2] and not p.namers[2][2]
    # (interpreters hold the namers they bind with: a router whose namers changed is rebuilt)
    assert p.changed == ["http", "other"] and p.kept == []
    assert p.same_interpreter == []


def test_namers_matched_by_config_whatever_their_order() -> None:
    old = load(conf())
    namers = [FakeNamer(), FakeNamer()]
    new = conf()
    new["namers"].reverse()
    p = plan(old, load(new), namers)  # type: ignore[arg-type]
    assert [n for _, n, _ in p.namers] == [namers[1], namers[0]]


def test_added_and_removed_routers() -> None:
    old = load(conf())
    new = conf()
    new["routers"][1]["label"] = "third"
    p = plan(old, load(new), [FakeNamer(), FakeNamer()])  # type: ignore[arg-type]
    assert p.kept == ["http"] and p.added == ["third"] and p.removed == ["other"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"admin": {"ip": "127.0.0.1", "port": 0, "shutdownGraceMs": 1}}, "'admin' changed"),
    ],
)
def test_refused_changes(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ReloadRefused, match=message):
        plan(load(conf()), load(conf(**change)), [FakeNamer(), FakeNamer()])  # type: ignore[arg-type]


def test_protocol_change_under_the_same_label_is_refused() -> None:
    new = conf()
    new["routers"][1] = {
        "protocol": "thrift",
        "label": "other",
        "dtab": "/svc => /#/fs2",
        "servers": [{"port": 2}],
    }
    with pytest.raises(ReloadRefused, match="protocol"):
        plan(load(conf()), load(new), [FakeNamer(), FakeNamer()])  # type: ignore[arg-type]


# -- a linker served in this process ----------------------------------------------------------
def served(tmp_path: Path, data: dict[str, Any]) -> tuple[Path, Any]:
    path = tmp_path / "turnout.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, load_file(str(path), registry=PLUGINS.registry)


def run_reloads(tmp_path: Path, data: dict[str, Any], news: list[str]) -> list[dict[str, Any]]:
    """Serve ``data``, then write each text of ``news`` and reload; the statuses."""
    path, loaded = served(tmp_path, data)
    out: list[dict[str, Any]] = []

    async def main() -> None:
        linker = Linker.build(loaded, PLUGINS)
        ready = asyncio.Event()
        task = asyncio.create_task(
            linker.serve(install_signals=False, on_ready=lambda _: ready.set())
        )
        await asyncio.wait_for(ready.wait(), 10)
        try:
            for text in news:
                path.write_text(text)
                status = await asyncio.wait_for(linker.reloader.reload(), 10)
                out.append(json.loads(json.dumps(status.as_json())))
            await asyncio.wait_for(linker.reloader.wait_retired(), 10)
        finally:
            linker.request_shutdown(0)
            await asyncio.wait_for(task, 10)

    asyncio.run(main())
    return out


def thrift_config() -> dict[str, Any]:
    return {
        "admin": {"ip": "127.0.0.1", "port": free_port()},
        "routers": [
            {
                "protocol": "thrift",
                "dtab": "/svc => /$/inet/127.0.0.1/1",
                "servers": [{"ip": "127.0.0.1", "port": free_port()}],
            }
        ],
    }


def test_served_reload_errors_refusals_and_success(tmp_path: Path) -> None:
    data = thrift_config()
    changed = json.loads(json.dumps(data))
    changed["routers"][0]["dtab"] = "/svc => /$/inet/127.0.0.1/2"
    bad_key = json.loads(json.dumps(data))
    bad_key["routers"][0]["dtabx"] = "/a => /b"
    statuses = run_reloads(
        tmp_path,
        data,
        [
            yaml.safe_dump(bad_key),
            "routers: [\n",  # YAML syntax error
            yaml.safe_dump(changed),  # thrift cannot take over a running router
            yaml.safe_dump(data),  # unchanged: applied (nothing to do)
        ],
    )
    assert [s["status"] for s in statuses] == ["failed", "failed", "failed", "ok"]
    assert "turnout.yaml:" in statuses[0]["errors"][0] and "dtabx" in statuses[0]["errors"][0]
    assert any("turnout.yaml:" in e for e in statuses[1]["errors"])
    assert "cannot take over" in statuses[2]["errors"][0]
    assert [s["generation"] for s in statuses] == [0, 0, 0, 1]
    assert statuses[3]["errors"] == []
    assert len({s["hash"] for s in statuses}) == 1  # (the file applied is the first one)
