"""HTTP/1.1 router for turnout."""

__version__ = "0.1.0"
