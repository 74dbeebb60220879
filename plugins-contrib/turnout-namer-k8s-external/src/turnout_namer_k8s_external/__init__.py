"""turnout-namer-k8s-external: the ``io.l5d.k8s.external`` namer (Kubernetes Services'
LoadBalancer ingress addresses)."""

__version__ = "0.1.0"
