"""Fixtures of the io.l5d.consul namer's tests: the Consul API double (in a thread, or as a
subprocess), turnout processes and recording backends."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("turnout_namer_consul") is None:  # a checkout without install
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from turnout.testing.consul import ConsulDouble, ConsulDoubleProcess
from turnout.testing.pytest_plugin import *  # noqa: F403


@pytest.fixture
def consul_double() -> Iterator[Callable[..., ConsulDouble]]:
    """``consul_double(**ConsulServer options)``: a started :class:`ConsulDouble` (in a
    background thread); closed at teardown."""
    started: list[ConsulDouble] = []

    def factory(**kw: Any) -> ConsulDouble:
        double = ConsulDouble(**kw)
        started.append(double)
        return double.start()

    yield factory
    for double in started:
        double.close()


@pytest.fixture
def consul_process(tmp_path: Path) -> Iterator[Callable[..., ConsulDoubleProcess]]:
    """``consul_process(**options)``: a started :class:`ConsulDoubleProcess` with its state
    in a directory under ``tmp_path``; killed (by PID) at teardown."""
    started: list[ConsulDoubleProcess] = []

    def factory(**kw: Any) -> ConsulDoubleProcess:
        n = len(started)
        kw.setdefault("data_dir", tmp_path / f"consul-{n}")
        kw.setdefault("log_path", tmp_path / f"consul-{n}.log")
        proc = ConsulDoubleProcess(**kw)
        started.append(proc)
        return proc.start()

    yield factory
    for proc in started:
        proc.kill()
