"""turnout-namer-marathon: the ``io.l5d.marathon`` namer (addresses of Marathon apps' tasks)."""

__version__ = "0.1.0"
