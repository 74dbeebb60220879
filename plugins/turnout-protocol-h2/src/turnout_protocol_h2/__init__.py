"""turnout's HTTP/2 protocol plugin. This first slice holds only the codec
(:mod:`turnout_protocol_h2.codec`); the ``protocol: h2`` router comes next."""

__version__ = "0.1.0"
