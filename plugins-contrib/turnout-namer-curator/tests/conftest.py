"""Fixtures of the io.l5d.curator tests: the real-ZooKeeper fixtures of the first-party
ZooKeeper plugin (``zookeeper``, ``zookeeper_factory``, ``shared_zookeeper``,
``kazoo_factory``: :mod:`turnout_namer_zk.fixtures`) and turnout's own (``turnout_process``,
``recording_backend``)."""

from __future__ import annotations

from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_namer_zk.fixtures import *  # noqa: F403
