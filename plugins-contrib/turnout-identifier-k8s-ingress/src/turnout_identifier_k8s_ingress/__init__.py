"""turnout-identifier-k8s-ingress: the ``io.l5d.ingress`` HTTP identifier (Kubernetes
Ingress rules)."""

__version__ = "0.1.0"
