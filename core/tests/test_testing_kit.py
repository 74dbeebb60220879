"""``turnout.testing`` is the kit every plugin author needs, nothing more (issue 11).

The rule (docs/writing-plugins.md, "Test doubles and the testing kit"): a double of an outside
system lives in the plugin that talks to that system, as ``<package>.testing``;
``turnout.testing`` holds only what every plugin author needs. These tests keep the kit free of
Consul, Kubernetes, Marathon, BIND, ZooKeeper and Zipkin (and OTLP, statsd), and check that each
double imports from its plugin.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import turnout.testing

KIT = Path(turnout.testing.__file__).parent
KIT_FILES = sorted(KIT.glob("*.py"))

#: top-level modules of the outside systems' clients, and the plugins' packages
FORBIDDEN_IMPORTS = re.compile(
    r"^(consul|kazoo|dns|marathon|kubernetes|kubernetes_asyncio|py_zipkin|zipkin|jwt)(\.|$)"
    r"|^turnout_"
)
#: what a class, function or module-level name of a double would be called
FORBIDDEN_NAME = re.compile(
    r"consul|kube|k8s|marathon|zookeeper|kazoo|zipkin|bind9|bindserver|(^|_)named($|_)|^_?zk"
    r"|serverset|otlp|statsd",
    re.IGNORECASE,
)
#: in string literals (docstrings excepted): module paths, jars, API paths of those systems
FORBIDDEN_TEXT = re.compile(
    r"consul|kube|k8s|marathon|zookeeper|kazoo|zipkin|bind9|\bnamed\b|otlp|statsd|/v1/catalog"
    r"|/api/v1/namespaces|/v2/apps|/api/v2/spans|/v1/traces",
    re.IGNORECASE,
)

#: (the plugin's package, the names its ``testing`` module must provide)
DOUBLES = [
    ("turnout_namer_consul", ["ConsulDouble", "ConsulServer", "ConsulDoubleProcess"]),
    ("turnout_namer_k8s", ["KubeApiDouble", "KubeApiProcess", "subsets_for"]),
    ("turnout_namer_marathon", ["MarathonDouble"]),
    ("turnout_namer_dnssrv", ["BindServer"]),
    ("turnout_namer_zk", ["ZooKeeperServer", "expire_session", "member_json", "register"]),
    ("turnout_telemeter_zipkin", ["ZipkinCollector", "span_problems"]),
    ("turnout_telemeter_opentelemetry", ["OtlpCollector"]),
    ("turnout_telemeter_statsd", ["StatsdListener"]),
]
MOVED = ["consul", "k8s", "marathon", "bind", "zookeeper", "zipkin"]


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes of the module, its classes and functions."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _offences(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if FORBIDDEN_IMPORTS.search(alias.name):
                    yield f"{where}: import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and FORBIDDEN_IMPORTS.search(module):
                yield f"{where}: from {module} import ..."
            if node.level > 0 and module in MOVED:
                yield f"{where}: from .{module} import ..."
            for alias in node.names:
                if FORBIDDEN_NAME.search(alias.asname or alias.name):
                    yield f"{where}: imports {alias.name}"
        elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if FORBIDDEN_NAME.search(node.name):
                yield f"{where}: defines {node.name}"
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            if FORBIDDEN_NAME.search(node.id):
                yield f"{where}: assigns {node.id}"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and FORBIDDEN_TEXT.search(node.value)
        ):
            yield f"{where}: string {node.value[:60]!r}"


def test_the_kit_has_files() -> None:
    names = {p.stem for p in KIT_FILES}
    assert {"__init__", "config", "net", "process", "pytest_plugin"} <= names


@pytest.mark.parametrize("path", KIT_FILES, ids=lambda p: p.name)
def test_the_kit_neither_imports_nor_emulates_an_outside_system(path: Path) -> None:
    assert list(_offences(path)) == []


@pytest.mark.parametrize("name", MOVED)
def test_no_double_is_left_in_the_kit(name: str) -> None:
    assert not (KIT / f"{name}.py").exists()
    assert not (KIT / name).exists()
    assert importlib.util.find_spec(f"turnout.testing.{name}") is None


def test_the_checks_catch_a_double(tmp_path: Path) -> None:
    double = tmp_path / "double.py"
    double.write_text(
        "from kazoo.client import KazooClient\n"
        "from .consul import ConsulDouble\n"
        "class KubeApiDouble: ...\n"
        'CMD = ["-m", "turnout.testing.zipkin"]\n'
    )
    flagged_lines = {offence.split(":")[1] for offence in _offences(double)}
    assert flagged_lines == {"1", "2", "3", "4"}


@pytest.mark.parametrize(("package", "names"), DOUBLES, ids=[d[0] for d in DOUBLES])
def test_each_double_imports_from_its_plugin(package: str, names: list[str]) -> None:
    # skipped only when that plugin's distribution is not installed (core tested alone)
    pytest.importorskip(package)
    module = importlib.import_module(f"{package}.testing")
    for name in names:
        assert hasattr(module, name), f"{package}.testing has no {name}"


@pytest.mark.parametrize(
    ("package", "cls"),
    [("turnout_namer_consul", "ConsulDoubleProcess"), ("turnout_namer_k8s", "KubeApiProcess")],
)
def test_subprocess_doubles_run_their_own_module(package: str, cls: str) -> None:
    pytest.importorskip(package)
    module = importlib.import_module(f"{package}.testing")
    source = inspect.getsource(getattr(module, cls).start)
    assert f'"{package}.testing"' in source
    assert "turnout.testing." not in source
