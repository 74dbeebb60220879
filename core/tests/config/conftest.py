"""Fixtures for configuration tests: a registry with the built-ins, a fake ``http`` protocol
and two test namers, with plugin autoload off so that installed plugins cannot leak in."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import turnout
from turnout.config import NamerConfig, load_text, option
from turnout.errors import ConfigError, ConfigProblem
from turnout.plugin_manager import load_plugins
from turnout.registry import Registry

FAKE_HTTP = Path(__file__).parents[1] / "plugins" / "turnout_fake_http.py"


def fake_http_module():
    """Import ``core/tests/plugins/turnout_fake_http.py`` (once) and return it."""
    name = "turnout_fake_http"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FAKE_HTTP)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and get_type_hints look the module up
        spec.loader.exec_module(module)
    return sys.modules[name]


class SecretNamerConfig(NamerConfig):
    kind = "test.secret"
    token: str = option(doc="An API token.", secret=True)
    url: str | None = option(None, doc="Where the registry is.")


class ExperimentalNamerConfig(NamerConfig):
    kind = "test.experimental"
    experimental_required = True


class ConfigTestPlugin:
    """Registers the test namers (a plugin may be any object with hookimpls)."""

    @staticmethod
    @turnout.hookimpl
    def turnout_register_namers():
        return [SecretNamerConfig, ExperimentalNamerConfig]


@pytest.fixture(scope="session")
def registry() -> Registry:
    plugins = load_plugins({}, autoload=False, extra=[fake_http_module(), ConfigTestPlugin])
    return plugins.registry


Problems = Callable[..., list[ConfigProblem]]


@pytest.fixture
def problems(registry: Registry) -> Problems:
    """``problems(text, env={})``: the problems of an invalid config (fails if it is valid)."""

    def run(text: str, env: Mapping[str, str] | None = None) -> list[ConfigProblem]:
        with pytest.raises(ConfigError) as info:
            load_text(text, "l5d.yaml", registry=registry, environ=env or {})
        assert info.value.problems, "a ConfigError must carry at least one problem"
        return info.value.problems

    return run
