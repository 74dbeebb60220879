"""turnout-interpreter-consul: the ``io.l5d.consul.interpreter`` interpreter."""

__version__ = "0.1.0"
