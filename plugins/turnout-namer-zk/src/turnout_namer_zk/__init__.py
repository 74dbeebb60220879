"""turnout-namer-zk: the ``io.l5d.serversets`` and ``io.l5d.zkLeader`` namers (ZooKeeper)."""

__version__ = "0.1.0"
