"""Configuration: reading, validating and describing turnout (Linkerd 1) config files.

Plugin authors subclass the ``*Config`` bases and declare options with :func:`option`::

    from turnout.config import NamerConfig, option

    class ExampleNamerConfig(NamerConfig):
        kind = "com.example.static"
        addresses: list[str] = option(doc="host:port entries")
"""

from ..naming import Dtab, NameTree, Path, PathMatcher
from .loader import LoadedConfig, load_config, load_file, load_text
from .model import (
    AdminConfig,
    AnnouncerConfig,
    BackoffConfig,
    ClientParams,
    FailureAccrualConfig,
    IdentifierConfig,
    InterpreterConfig,
    LinkerConfig,
    LoadBalancerConfig,
    NamerConfig,
    ResponseClassifierConfig,
    RouterConfig,
    ServerConfig,
    ServiceParams,
    TelemeterConfig,
    TransformerConfig,
)
from .schema import SCALAR_PARSERS, ConfigObject, option

SCALAR_PARSERS.update(
    {Path: Path.read, Dtab: Dtab.read, NameTree: NameTree.read, PathMatcher: PathMatcher.read}
)

__all__ = [
    "AdminConfig",
    "AnnouncerConfig",
    "BackoffConfig",
    "ClientParams",
    "ConfigObject",
    "FailureAccrualConfig",
    "IdentifierConfig",
    "InterpreterConfig",
    "LinkerConfig",
    "LoadBalancerConfig",
    "LoadedConfig",
    "NamerConfig",
    "ResponseClassifierConfig",
    "RouterConfig",
    "ServerConfig",
    "ServiceParams",
    "TelemeterConfig",
    "TransformerConfig",
    "load_config",
    "load_file",
    "load_text",
    "option",
]
