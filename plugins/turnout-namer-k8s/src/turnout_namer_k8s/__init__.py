"""turnout-namer-k8s: the ``io.l5d.k8s`` and ``io.l5d.k8s.ns`` namers (Kubernetes discovery)."""

__version__ = "0.1.0"
