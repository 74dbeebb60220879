"""turnout-telemeter-zipkin: the ``io.l5d.zipkin`` telemeter."""

__version__ = "0.1.0"
