"""First-party and contrib kinds: the ``pip install`` hints of :mod:`turnout.known_plugins` must
point at distributions that exist in this repository and register those kinds."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest
from turnout.known_plugins import CONTRIB_KINDS, FIRST_PARTY_KINDS, NOT_PROVIDED
from turnout.plugin_manager import load_plugins

ROOT = Path(__file__).parents[3]
KNOWN = [("plugins", *key, dist) for key, dist in FIRST_PARTY_KINDS.items()] + [
    ("plugins-contrib", *key, dist) for key, dist in CONTRIB_KINDS.items()
]


@pytest.mark.parametrize(
    ("folder", "family", "kind", "dist"), sorted(KNOWN), ids=lambda v: str(v).replace(" ", "-")
)
def test_known_kind_is_registered_by_the_named_distribution(
    monkeypatch, folder, family, kind, dist
):
    pyproject = ROOT / folder / dist / "pyproject.toml"
    assert pyproject.is_file(), f"{family} kind {kind!r}: no {pyproject}"
    project = tomllib.loads(pyproject.read_text())["project"]
    assert project["name"] == dist
    entry_points = project.get("entry-points", {}).get("turnout", {})
    assert len(entry_points) == 1, f"{dist} must declare one turnout entry point"
    monkeypatch.syspath_prepend(str(ROOT / folder / dist / "src"))
    module = importlib.import_module(next(iter(entry_points.values())))
    registry = load_plugins({}, autoload=False, extra=[module]).registry
    assert registry.config_class(family, kind) is not None, f"{dist} does not register {kind}"


def test_hint_is_given_for_first_party_kinds_only():
    registry = load_plugins({}, autoload=False).registry
    for (family, kind), dist in FIRST_PARTY_KINDS.items():
        assert registry.hint(family, kind) == (
            f"it is provided by the plugin '{dist}': pip install {dist}"
        )
    for (family, kind), dist in CONTRIB_KINDS.items():
        assert registry.hint(family, kind) == (
            f"it is provided by the community plugin '{dist}' (plugins-contrib/ in turnout's "
            f"repository): pip install {dist}"
        )
    assert not set(FIRST_PARTY_KINDS) & set(CONTRIB_KINDS)
    for (family, kind), why in NOT_PROVIDED.items():
        assert registry.config_class(family, kind) is None, f"{kind} is provided now"
        assert registry.hint(family, kind) == why
    assert not set(NOT_PROVIDED) & (set(FIRST_PARTY_KINDS) | set(CONTRIB_KINDS))
    assert registry.hint("namer", "com.example.unknown") is None
    assert registry.hint("router", "gopher") is None


def test_suggest_is_did_you_mean_over_the_installed_kinds():
    registry = load_plugins({}, autoload=False).registry
    assert registry.suggest("namer", "io.l5d.fss") == " (did you mean 'io.l5d.fs'?)"
    assert registry.suggest("namer", "IO.L5D.FS") == " (did you mean 'io.l5d.fs'?)"
    assert registry.suggest("namer", "zookeeper") == ""
