"""turnout-example-lines: ``protocol: lines``, a line-based TCP router on the core request stack."""

__version__ = "0.1.0"
