"""Reading one configuration entry of a plugin's kind the way ``turnout check`` does, for
plugins' unit tests::

    from turnout.api import NamerConfig
    from turnout.testing.config import plugin_registry, read_entry
    from my_plugin import plugin

    registry = plugin_registry(plugin)           # turnout's built-ins and this plugin only
    config, problems = read_entry(registry, NamerConfig, "kind: my.namer\\nrootDir: /x\\n")
    assert problems == [] and config.root_dir == "/x"

``problems`` are :class:`turnout.api.ConfigProblem` values: ``str(p)`` is the line
``turnout check`` prints (``name:line:col: path: message``).

A factory is then called with a context built for a test, and names are bound through the
namers a config builds the way a router binds them::

    namer = config.new_namer(build_context())    # or build_context(metrics=tree)
    tree = bind_name("/svc=>/#/my.namer", "/svc/web", config)   # Leaf(NameBound(...)), Neg...
"""

from __future__ import annotations

import textwrap
from typing import Any

from ..config.model import LinkerConfig, NamerConfig, RouterConfig
from ..config.schema import INVALID, Validator
from ..config.source import read_text
from ..context import BuildContext
from ..metrics import MetricsTree
from ..naming import (
    ConfiguredNamersInterpreter,
    Dtab,
    GlobalNamer,
    NameBound,
    NameInterpreter,
    Namer,
    NameTree,
    Ok,
    Path,
)
from ..plugin_manager import Plugins, load_plugins


def plugin_registry(*plugins: object) -> Any:
    """The kind registry of turnout's built-ins plus ``plugins`` (modules or objects with
    hook implementations), whatever else is installed."""
    return load_plugins({}, autoload=False, extra=list(plugins)).registry


def installed_registry(*names: str) -> Any:
    """The kind registry of turnout's built-ins plus the installed plugins ``names``
    (distribution or entry-point names, as ``TURNOUT_PLUGINS``): what ``turnout`` itself
    finds through the entry points, to test that an installed plugin is found."""
    return load_plugins({"TURNOUT_PLUGINS": ",".join(names)}).registry


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


def build_context(
    *,
    metrics: MetricsTree | None = None,
    config: LinkerConfig | None = None,
    plugins: Plugins | None = None,
    namers: list[tuple[Path, Namer]] | None = None,
    global_namer: GlobalNamer | None = None,
    router: RouterConfig | None = None,
    interpreter: NameInterpreter | None = None,
) -> BuildContext:
    """The ``ctx`` of a factory (``new_namer``, ``new_telemeter``, ``new_transformer``...)
    called in a unit test, outside a running turnout: a new metrics tree, a configuration
    without routers, turnout's built-in plugins, no namers and no linker, unless given."""
    return BuildContext(
        config if config is not None else LinkerConfig(routers=[]),
        plugins if plugins is not None else load_plugins({}, autoload=False),
        metrics if metrics is not None else MetricsTree(),
        global_namer if global_namer is not None else GlobalNamer(),
        namers if namers is not None else [],
        router=router,
        interpreter=interpreter,
    )


def bind_name(
    dtab: str, path: str, *namers: NamerConfig, ctx: BuildContext | None = None
) -> NameTree[NameBound]:
    """Bind ``path`` with ``dtab`` and the namers ``namers`` build (each mounted at its
    prefix, under ``/#``, in order), as a router's default interpreter does, observing the
    binding while it is read: the bound tree (``Leaf(NameBound(...))``, ``Neg``...). A failed
    binding raises its error; one still pending (a namer that has not answered) raises
    AssertionError."""
    ctx = ctx if ctx is not None else build_context()
    interpreter = ConfiguredNamersInterpreter(
        [(config.effective_prefix, config.new_namer(ctx)) for config in namers], GlobalNamer()
    )
    activity = interpreter.bind(Dtab.read(dtab), Path.read(path))
    observation = activity.observe(lambda _: None)  # a router observes what it binds
    try:
        state = activity.value
    finally:
        observation.close()
    if not isinstance(state, Ok):
        error = getattr(state, "error", None)
        if isinstance(error, BaseException):
            raise error
        raise AssertionError(f"binding {path} is {state!r}")
    tree: NameTree[NameBound] = state.value
    return tree
