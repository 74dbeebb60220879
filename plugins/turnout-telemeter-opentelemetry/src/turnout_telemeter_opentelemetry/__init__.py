"""turnout-telemeter-opentelemetry: the ``io.l5d.opentelemetry`` telemeter."""

__version__ = "0.1.0"
