"""turnout-telemeter-influxdb: the ``io.l5d.influxdb`` telemeter."""

__version__ = "0.1.0"
