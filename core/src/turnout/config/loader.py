"""Reading a whole configuration: text → :class:`LinkerConfig`, or every problem at once."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ConfigProblem
from .model import LOOPBACK, LinkerConfig, listener_conflicts
from .schema import INVALID, KindLookup, Validator
from .source import Source, read_text

if TYPE_CHECKING:
    # the plugin manager reads the config base classes (this package) to check what plugins
    # register; load_config() imports it when it is called: its type only, here
    from ..plugin_manager import Plugins


@dataclass
class LoadedConfig:
    """A valid configuration, where it came from, and warnings about options turnout accepts
    but does not act on yet."""

    config: LinkerConfig
    source: Source
    warnings: list[ConfigProblem] = field(default_factory=list)


def load_text(
    text: str,
    name: str = "<config>",
    *,
    registry: KindLookup,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Validate configuration ``text``; raises :class:`ConfigError` listing every problem."""
    source, problems = read_text(text, name, environ=environ)
    if source.data is None and problems:
        raise ConfigError(problems)
    if source.data is None:
        raise ConfigError(
            [ConfigProblem("the configuration is empty; it needs 'routers'", source=name)]
        )
    validator = Validator(source, registry)
    config = validator.build(LinkerConfig, source.data)
    problems = problems + validator.problems
    if config is INVALID and LinkerConfig not in validator.checked:
        problems += _raw_conflicts(source, registry)
    if problems or config is INVALID:
        problems.sort(key=lambda p: (p.line or 0, p.column or 0, p.path))
        raise ConfigError(problems)
    return LoadedConfig(config, source, validator.warnings)


def read_config_text(location: str) -> tuple[str, str]:
    """The text of a config file, or of standard input for ``-``; and its display name."""
    if location == "-":
        return sys.stdin.read(), "<stdin>"
    path = FsPath(location)
    try:
        return path.read_text(encoding="utf-8"), location
    except FileNotFoundError:
        raise ConfigError([ConfigProblem("no such file", source=location)]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([ConfigProblem(f"cannot read the file: {e}", source=location)]) from None


def load_file(
    location: str, *, registry: KindLookup, environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    text, name = read_config_text(location)
    return load_text(text, name, registry=registry, environ=environ)


def load_config(
    location: str, plugins: Plugins | None = None, *, environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Load plugins (unless given) and read the config at ``location`` (``-`` = stdin).

    Also runs the ``turnout_configure`` hooks, which may refuse the configuration.
    """
    if plugins is None:
        from ..plugin_manager import load_plugins

        plugins = load_plugins()
    loaded = load_file(location, registry=plugins.registry, environ=environ)
    plugins.hook.turnout_configure(config=loaded.config)
    return loaded


def _raw_conflicts(source: Source, registry: KindLookup) -> list[ConfigProblem]:
    """Label and port conflicts read from the raw data of a config that failed validation,
    so that they are reported together with the other problems."""
    data = source.data
    if not isinstance(data, dict) or not isinstance(data.get("routers"), list):
        return []
    admin = _dict(data.get("admin"))
    admin_listener = (_str(admin.get("ip"), LOOPBACK), _int(admin.get("port"), 9990))
    routers: list[tuple[str, list[tuple[str, int]]]] = []
    for item in data["routers"]:
        raw = _dict(item)
        protocol = _str(raw.get("protocol"), "?")
        cls = registry.config_class("router", protocol)
        default_port = getattr(cls, "default_port", 0)
        servers = raw.get("servers")
        servers = servers if isinstance(servers, list) else []
        listeners = [
            (_str(s.get("ip"), LOOPBACK), _int(s.get("port"), default_port))
            if isinstance(s, dict) and ("port" not in s or _is_int(s["port"]))
            else ("?", 0)  # port 0 takes part in no conflict
            for s in servers
        ]
        routers.append((_str(raw.get("label"), protocol), listeners))
    return [
        source.problem(loc, message) for loc, message in listener_conflicts(admin_listener, routers)
    ]


def _dict(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: object, default: str) -> str:
    return value if isinstance(value, str) else default


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
