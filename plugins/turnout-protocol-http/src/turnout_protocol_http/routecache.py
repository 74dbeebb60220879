"""What the HTTP data path caches per route (:class:`RouteExtras`)."""

from __future__ import annotations

from turnout.api import Client, Path, Route

from . import classifiers
from ._stack import RouteCache
from .exchange import CRLF


class RouteExtras(RouteCache):
    """What the HTTP path caches per route, beyond the stack's :class:`RouteCache`: its
    classifier and ``l5d-dst-*`` header blocks."""

    def __init__(self, route: Route) -> None:
        RouteCache.__init__(self, route)
        cfg = route.policy.response_classifier
        classifier = cfg.new_classifier() if cfg is not None else classifiers.DEFAULT
        self.classifier: classifiers.Classifier = classifier
        #: for a plain Classifier, a response is a success when its status is below this (so
        #: the data path compares instead of calling classify); -1: call classify
        self.success_below = -1
        if type(classifier) is classifiers.Classifier:
            self.success_below = 1 << 30 if classifier.all_successful else 500
        self._blocks: dict[tuple[int, Path | None], bytes] = {}
        #: the last block handed out, by identity (the common case: one client, one residual;
        #: the data path reads these before calling headers())
        self.block_client: Client | None = None
        self.block_residual: Path | None = None
        self.last_block = b""
        self.service_header = b"l5d-dst-service: " + str(route.path).encode() + CRLF
        self.ctx_header = (
            b"l5d-ctx-dtab: " + str(route.local_dtab).encode() + CRLF
            if len(route.local_dtab)
            else b""
        )

    def headers(self, client: Client, residual: Path | None) -> bytes:
        if client is self.block_client and residual is self.block_residual:
            return self.last_block
        key = (id(client), residual)
        block = self._blocks.get(key)
        if block is None:
            block = self.service_header + b"l5d-dst-client: " + str(client.id).encode() + CRLF
            if residual is not None and len(residual):
                block += b"l5d-dst-residual: " + str(residual).encode() + CRLF
            block += self.ctx_header
            if len(self._blocks) > 1000:
                self._blocks.clear()
            self._blocks[key] = block
        self.block_client = client
        self.block_residual = residual
        self.last_block = block
        return block
