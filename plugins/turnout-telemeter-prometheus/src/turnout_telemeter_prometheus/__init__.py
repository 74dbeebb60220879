"""turnout-telemeter-prometheus: the ``io.l5d.prometheus`` telemeter."""

__version__ = "0.1.0"
