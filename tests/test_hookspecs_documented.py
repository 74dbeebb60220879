"""Every hook of the plugin contract (:mod:`turnout.hookspecs`) is documented in its docstring:
when it is called, each argument, the return value, and an example. Adding a hook without
that documentation fails this test."""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable

import pluggy
import pytest
import turnout.hookspecs
from turnout.plugin_manager import new_manager

SPEC_ATTR = f"{turnout.hookspecs.PROJECT}_spec"


def hookspecs() -> list[Callable[..., object]]:
    return [
        obj
        for _, obj in inspect.getmembers(turnout.hookspecs, inspect.isfunction)
        if hasattr(obj, SPEC_ATTR)
    ]


def example_of(doc: str) -> str | None:
    """The indented block after ``Example::``, dedented."""
    m = re.search(r"^[ \t]*Example::[ \t]*\n((?:[ \t]*\n|[ \t]+\S.*\n?)+)", doc, re.MULTILINE)
    return textwrap.dedent(m.group(1)).strip() if m else None


def documentation_problems(func: Callable[..., object]) -> list[str]:
    """What the docstring of hookspec ``func`` lacks (empty when it is complete)."""
    name = func.__name__
    doc = inspect.getdoc(func)
    if not doc:
        return [f"{name}: no docstring"]
    problems = []
    summary = doc.splitlines()[0]
    if not summary.endswith(".") or len(summary) > 100:
        problems.append(f"{name}: the first line must be a one-sentence summary")
    if not re.search(r"\bCalled\b[^.]*\b(once|when|per|after|before|while|inside)\b", doc):
        problems.append(f"{name}: no sentence saying when it is called ('Called once ...')")
    for param in inspect.signature(func).parameters:
        if not re.search(rf"^:param {param}:\s*\S", doc, re.MULTILINE):
            problems.append(f"{name}: no ':param {param}:' line")
    for documented in re.findall(r"^:param (\w+):", doc, re.MULTILINE):
        if documented not in inspect.signature(func).parameters:
            problems.append(f"{name}: ':param {documented}:' documents no argument")
    if not re.search(r"^:return:\s*\S", doc, re.MULTILINE):
        problems.append(f"{name}: no ':return:' line")
    example = example_of(doc)
    if example is None:
        problems.append(f"{name}: no 'Example::' block")
    else:
        if f"def {name}(" not in example or "hookimpl" not in example:
            problems.append(f"{name}: the example must implement the hook with @turnout.hookimpl")
        try:
            compile(example, f"<example of {name}>", "exec")
        except SyntaxError as e:
            problems.append(f"{name}: the example is not valid Python: {e}")
    return problems


def test_every_hookspec_is_found():
    found = {f.__name__ for f in hookspecs()}
    pluggy_hooks = {name for name in vars(new_manager().hook) if name.startswith("turnout_")}
    assert found == pluggy_hooks
    assert {"turnout_register_namers", "turnout_configure", "turnout_startup"} <= found


@pytest.mark.parametrize("hook", hookspecs(), ids=lambda f: f.__name__)
def test_hookspec_is_documented(hook):
    assert documentation_problems(hook) == []


def test_an_undocumented_hook_would_fail():
    marker = pluggy.HookspecMarker(turnout.hookspecs.PROJECT)

    @marker
    def turnout_new_hook(router, extra):
        """Do something.

        :param router: the router.
        """

    assert documentation_problems(turnout_new_hook) == [
        "turnout_new_hook: no sentence saying when it is called ('Called once ...')",
        "turnout_new_hook: no ':param extra:' line",
        "turnout_new_hook: no ':return:' line",
        "turnout_new_hook: no 'Example::' block",
    ]

    @marker
    def turnout_bare_hook():
        pass

    assert documentation_problems(turnout_bare_hook) == ["turnout_bare_hook: no docstring"]


def test_a_complete_docstring_passes():
    marker = pluggy.HookspecMarker(turnout.hookspecs.PROJECT)

    @marker
    def turnout_good_hook(linker):
        """Do something useful.

        Called once after startup.

        :param linker: the linker.
        :return: nothing.

        Example::

            @turnout.hookimpl
            def turnout_good_hook(linker):
                pass
        """

    assert documentation_problems(turnout_good_hook) == []
