"""turnout-namer-dnssrv: the ``io.l5d.dnssrv`` namer (service discovery from DNS SRV records)
and an optional DNS lookup with TTLs for ``/$/inet`` host names."""

__version__ = "0.1.0"
