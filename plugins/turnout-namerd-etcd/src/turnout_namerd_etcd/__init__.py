"""namerd's ``io.l5d.etcd`` dtab store for turnout: dtabs in etcd (the v3 API)."""

__version__ = "0.1.0"
