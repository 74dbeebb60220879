"""First-party kinds: the ``pip install`` hints of :mod:`turnout.known_plugins` must point at
distributions that exist in this repository."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest
from turnout.known_plugins import FIRST_PARTY_KINDS
from turnout.plugin_manager import load_plugins

PLUGINS_DIR = Path(__file__).parents[3] / "plugins"


@pytest.mark.parametrize(
    ("family", "kind"), sorted(FIRST_PARTY_KINDS), ids=lambda v: str(v).replace(" ", "-")
)
def test_first_party_kind_is_registered_by_the_named_distribution(monkeypatch, family, kind):
    dist = FIRST_PARTY_KINDS[(family, kind)]
    pyproject = PLUGINS_DIR / dist / "pyproject.toml"
    assert pyproject.is_file(), f"{family} kind {kind!r}: no {pyproject}"
    project = tomllib.loads(pyproject.read_text())["project"]
    assert project["name"] == dist
    entry_points = project.get("entry-points", {}).get("turnout", {})
    assert len(entry_points) == 1, f"{dist} must declare one turnout entry point"
    monkeypatch.syspath_prepend(str(PLUGINS_DIR / dist / "src"))
    module = importlib.import_module(next(iter(entry_points.values())))
    registry = load_plugins({}, autoload=False, extra=[module]).registry
    assert registry.config_class(family, kind) is not None, f"{dist} does not register {kind}"


def test_hint_is_given_for_first_party_kinds_only():
    registry = load_plugins({}, autoload=False).registry
    for (family, kind), dist in FIRST_PARTY_KINDS.items():
        assert registry.hint(family, kind) == (
            f"it is provided by the plugin '{dist}': pip install {dist}"
        )
    assert registry.hint("namer", "com.example.unknown") is None
    assert registry.hint("router", "gopher") is None


def test_suggest_is_did_you_mean_over_the_installed_kinds():
    registry = load_plugins({}, autoload=False).registry
    assert registry.suggest("namer", "io.l5d.fss") == " (did you mean 'io.l5d.fs'?)"
    assert registry.suggest("namer", "IO.L5D.FS") == " (did you mean 'io.l5d.fs'?)"
    assert registry.suggest("namer", "zookeeper") == ""
