"""Fixtures of the ZooKeeper namer tests: real ZooKeeper servers (started with java from
Debian's ``zookeeper`` package, stopped by PID) and a kazoo client to register members, from
:mod:`turnout_namer_zk.fixtures` (shared with plugins built on this one), and turnout's own
fixtures (``turnout_process``, ``recording_backend``)."""

from __future__ import annotations

from turnout.testing.pytest_plugin import *  # noqa: F403
from turnout_namer_zk.fixtures import *  # noqa: F403
from turnout_namer_zk.fixtures import ZkFactory as ZkFactory
