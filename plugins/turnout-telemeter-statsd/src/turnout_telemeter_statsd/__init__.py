"""turnout-telemeter-statsd: the ``io.l5d.statsd`` telemeter (experimental)."""

__version__ = "0.1.0"
