"""plugins-contrib/: every community-grade plugin is installed by ``./dev setup``, listed by
``turnout plugins --json`` with the distribution that provides each kind, and documented as the
contrib README's admission rules ask."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from turnout.known_plugins import CONTRIB_KINDS

ROOT = Path(__file__).resolve().parents[1]
CONTRIB = ROOT / "plugins-contrib"
DISTRIBUTIONS = sorted(p.parent.name for p in CONTRIB.glob("*/pyproject.toml"))


def listed_kinds() -> dict[tuple[str, str], str]:
    out = subprocess.run(
        [sys.executable, "-m", "turnout", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return {
        (kind["family"], kind["kind"]): plugin["distribution"]
        for plugin in json.loads(out)["plugins"]
        for kind in plugin["kinds"]
    }


def test_turnout_plugins_lists_every_contrib_kind_with_its_distribution():
    kinds = listed_kinds()
    missing = {key: dist for key, dist in CONTRIB_KINDS.items() if kinds.get(key) != dist}
    assert not missing, f"not listed (or by another distribution): {missing}"


def test_every_contrib_distribution_has_hints_tests_and_a_readme():
    assert DISTRIBUTIONS, "plugins-contrib/ has no distribution"
    hinted = set(CONTRIB_KINDS.values())
    index = (CONTRIB / "README.md").read_text()
    for dist in DISTRIBUTIONS:
        project = tomllib.loads((CONTRIB / dist / "pyproject.toml").read_text())["project"]
        assert project["name"] == dist
        assert dist in hinted, f"{dist}: add its kinds to turnout.known_plugins.CONTRIB_KINDS"
        assert f"[`{dist}`]({dist}/)" in index, f"{dist}: add it to plugins-contrib/README.md"
        readme = (CONTRIB / dist / "README.md").read_text()
        assert "Owner:" in readme, f"{dist}/README.md names no owner"
        assert f"pip install ./plugins-contrib/{dist}" in readme, f"{dist}: no install line"
        assert list((CONTRIB / dist / "tests").glob("test_*.py")), f"{dist}: no tests"


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_contrib_distribution_is_installed(dist):
    from importlib.metadata import distribution

    assert distribution(dist).entry_points.select(group="turnout"), dist
