"""Fixtures of the io.l5d.mesh tests: ``namerd_process`` (a started
:class:`~turnout_namerd_mesh.testing.NamerdProcess`, killed at teardown; also module-scoped)
and turnout's own fixtures (``turnout_process``, ``recording_backend``, ``disco_dir``)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("turnout_namerd_mesh") is None:  # a checkout without install
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_namerd_mesh.testing import NamerdProcess

NamerdFactory = Callable[..., NamerdProcess]


def _factory(root: Path, started: list[NamerdProcess]) -> NamerdFactory:
    def factory(config: str, *ports: int, loop: str = "uvloop", start: bool = True) -> Any:
        proc = NamerdProcess(config, root / f"namerd-{len(started)}", list(ports), loop)
        started.append(proc)
        return proc.start() if start else proc

    return factory


def _teardown(started: list[NamerdProcess]) -> None:
    for proc in started:
        proc.kill()
        log = proc.log()
        if log:
            print(f"--- namerd log ({proc.workdir}) ---\n{log}")


@pytest.fixture
def namerd_process(tmp_path: Path) -> Iterator[NamerdFactory]:
    """``namerd_process(config_yaml, *ports_to_wait_for, loop="uvloop", start=True)``."""
    started: list[NamerdProcess] = []
    yield _factory(tmp_path, started)
    _teardown(started)


@pytest.fixture(scope="module")
def module_namerd_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamerdFactory]:
    """``namerd_process`` shared by the tests of a module."""
    started: list[NamerdProcess] = []
    yield _factory(tmp_path_factory.mktemp("namerd"), started)
    _teardown(started)
