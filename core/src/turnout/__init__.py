"""turnout: a service mesh routing proxy in the spirit of Linkerd 1.

The public surface for plugin authors:

- :data:`hookimpl` marks plugin hook implementations (the contract is :mod:`turnout.hookspecs`);
- :mod:`turnout.config` holds the config base classes and :func:`~turnout.config.option`;
- :mod:`turnout.naming` holds paths, dtabs, name trees, namers and observable values.
"""

from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
