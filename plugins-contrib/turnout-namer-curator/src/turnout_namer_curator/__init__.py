"""The ``io.l5d.curator`` namer for turnout: Apache Curator service discovery in ZooKeeper."""

__version__ = "0.1.0"
