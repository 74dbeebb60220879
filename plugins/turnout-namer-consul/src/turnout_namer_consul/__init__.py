"""turnout-namer-consul: the ``io.l5d.consul`` namer (Consul catalog and health discovery)."""

__version__ = "0.1.0"
