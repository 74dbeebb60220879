"""Fixtures of the io.l5d.etcd tests: ``etcd`` (a real etcd for one test, stopped at teardown),
``shared_etcd`` (one for the module) and turnout's own fixtures (``turnout_process``,
``recording_backend``, ``disco_dir``)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("turnout_namerd_etcd") is None:  # a checkout without install
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_namerd_etcd.testing import EtcdServer, etcd_binary


def _started(workdir: Path) -> Iterator[EtcdServer]:
    if etcd_binary() is None:
        pytest.fail("etcd is not installed: ./dev setup installs Debian's etcd-server")
    server = EtcdServer(workdir).start()
    try:
        yield server
    finally:
        server.stop()
        log = server.log()
        if log:
            print(f"--- etcd log ({workdir}) ---\n{log}")


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    yield from _started(tmp_path / "etcd")


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    yield from _started(tmp_path_factory.mktemp("etcd"))
