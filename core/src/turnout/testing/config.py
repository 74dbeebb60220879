"""Reading one configuration entry of a plugin's kind the way ``turnout check`` does, for
plugins' unit tests::

    from turnout.config import NamerConfig
    from turnout.testing.config import plugin_registry, read_entry
    from my_plugin import plugin

    registry = plugin_registry(plugin)           # turnout's built-ins and this plugin only
    config, problems = read_entry(registry, NamerConfig, "kind: my.namer\\nrootDir: /x\\n")
    assert problems == [] and config.root_dir == "/x"

``problems`` are :class:`turnout.errors.ConfigProblem` values: ``str(p)`` is the line
``turnout check`` prints (``name:line:col: path: message``).
"""

from __future__ import annotations

import textwrap
from typing import Any

from ..config.schema import INVALID, Validator
from ..config.source import read_text
from ..plugin_manager import load_plugins


def plugin_registry(*plugins: object) -> Any:
    """The kind registry of turnout's built-ins plus ``plugins`` (modules or objects with
    hook implementations), whatever else is installed."""
    return load_plugins({}, autoload=False, extra=list(plugins)).registry


def read_entry(
    registry: Any, base: type, text: str, name: str = "config.yaml"
) -> tuple[Any | None, list[Any]]:
    """``text`` (YAML, dedented) read as one entry of config base class ``base``
    (``NamerConfig``, ``TelemeterConfig``...): the config object, or None when invalid, and
    every problem found (environment substitution sees an empty environment)."""
    source, problems = read_text(textwrap.dedent(text), name, environ={})
    validator = Validator(source, registry)
    config = validator.build(base, source.data)
    return (None if config is INVALID else config), problems + validator.problems
