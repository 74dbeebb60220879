"""Fixtures for plugin-loading tests: fake installed distributions with ``turnout`` entry
points, created under ``tmp_path`` and put on ``sys.path`` for one test."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent

MakeDist = Callable[..., Path]


@pytest.fixture
def site_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An importable directory (first on sys.path); modules imported from it are forgotten
    after the test."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", "") and str(site) in sys.modules[name].__file__:
            del sys.modules[name]


@pytest.fixture
def make_dist(site_dir: Path) -> MakeDist:
    """``make_dist(dist, version, entry_point, module, source)``: an "installed" distribution
    whose ``turnout`` entry point ``entry_point = module`` loads ``source``."""

    def make(dist: str, version: str, entry_point: str, module: str, source: str) -> Path:
        (site_dir / f"{module}.py").write_text(textwrap.dedent(source))
        info = site_dir / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[turnout]\n{entry_point} = {module}\n")
        return info

    return make


@pytest.fixture
def fake_http_on_path(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make ``turnout_fake_http`` (next to this file) importable; returns its module name."""
    monkeypatch.syspath_prepend(str(HERE))
    return "turnout_fake_http"
