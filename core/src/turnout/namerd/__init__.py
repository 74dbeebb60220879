"""namerd: the dtab store and name-binding service linkers can delegate binding to.

``turnout namerd CONFIG`` runs it. The parts, each in its own module:

- :mod:`.store`: the dtab store contract (:class:`DtabStore`) that storage kinds implement,
  and its errors; :mod:`.in_memory`: ``io.l5d.inMemory``.
- :mod:`.config`: the namerd file (:class:`NamerdConfig`) and the bases of the two kind
  families only namerd has, :class:`DtabStoreConfig` (``storage:``, hook
  ``turnout_register_dtab_stores``) and :class:`NamerdInterfaceConfig` (``interfaces:``,
  hook ``turnout_register_namerd_interfaces``).
- :mod:`.context`: what store and interface factories receive (:class:`NamerdContext`)
  and what an interface is (:class:`NamerdInterface`).
- :mod:`.runtime`: each namespace's interpreter over the watched stored dtab
  (``NamespaceInterpreters``), and the ``Namerd`` process (a linker without routers, plus
  store and interfaces); :mod:`.admin`: its admin endpoints.
- :mod:`.http_api`: ``io.l5d.httpController``, Linkerd's ``/api/1`` HTTP API;
  :mod:`.codec`: its JSON and dtab-text forms.
- :mod:`.interpreter`: ``io.l5d.namerd.http``, the linker side.
- :mod:`.store_contract`: the store contract as tests (for store authors' test suites).
- :mod:`.builtin`: the hook implementations registering those kinds (one of core's built-in
  plugin modules, like ``turnout.builtin.*``).

See docs/namerd.md.
"""

from .config import (
    DtabStoreConfig,
    LoadedNamerdConfig,
    NamerdConfig,
    NamerdInterfaceConfig,
    load_namerd_file,
    load_namerd_text,
)
from .context import NamerdContext, NamerdInterface
from .in_memory import InMemoryDtabStore
from .store import (
    ChangeFeed,
    DtabStore,
    DtabStoreError,
    DtabStoreForbidden,
    InvalidNamespace,
    NamespaceExists,
    NamespaceNotFound,
    Versioned,
    VersionMismatch,
    check_namespace,
    decode_decimal_version,
    encode_decimal_version,
    parse_version,
    version_string,
)

__all__ = [
    "ChangeFeed",
    "DtabStore",
    "DtabStoreConfig",
    "DtabStoreError",
    "DtabStoreForbidden",
    "InMemoryDtabStore",
    "InvalidNamespace",
    "LoadedNamerdConfig",
    "NamerdConfig",
    "NamerdContext",
    "NamerdInterface",
    "NamerdInterfaceConfig",
    "NamespaceExists",
    "NamespaceNotFound",
    "VersionMismatch",
    "Versioned",
    "check_namespace",
    "decode_decimal_version",
    "encode_decimal_version",
    "load_namerd_file",
    "load_namerd_text",
    "parse_version",
    "version_string",
]
