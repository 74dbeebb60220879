"""The ``io.l5d.ingress`` identifier: the current Ingress matcher, asked per request."""

from __future__ import annotations

from turnout.api import Path
from turnout_protocol_http.identifiers import Identifier, Request

from .cache import IngressCache


class IngressIdentifier(Identifier):
    """Names a request by the Ingress rules of :attr:`cache` (see
    :mod:`turnout_identifier_k8s_ingress.model`); None when none matches, or before the
    first list of the Ingresses arrived. No API call and no lock per request: one read of
    the current compiled snapshot."""

    __slots__ = ("cache",)

    def __init__(self, cache: IngressCache) -> None:
        self.cache = cache

    def identify(self, req: Request) -> Path | None:
        return self.cache.matcher.match(req.header(b"host"), req.target)
