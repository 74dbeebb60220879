"""Configuration of the ``io.l5d.ingress`` HTTP identifier (Linkerd's
``IngressIdentifierConfig``: ``host``, ``port``, ``namespace``, ``ingressClassAnnotation``,
``ignoreDefaultBackends``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from turnout.api import Path, option
from turnout_namer_k8s.model import valid_namespace
from turnout_protocol_http.config import HttpIdentifierConfig

if TYPE_CHECKING:  # aiohttp is imported only when an identifier is built
    from .identifier import IngressIdentifier


class IngressIdentifierConfig(HttpIdentifierConfig):
    """Kubernetes Ingress: a request is named ``<dstPrefix>/<namespace>/<port>/<service>`` by
    the first Ingress rule its Host and path match (else by the first default backend), the
    Ingresses being watched through the API (plain HTTP: ``kubectl proxy``). A request no
    rule matches is not named by this identifier."""

    kind = "io.l5d.ingress"
    host: str = option("localhost", doc="The Kubernetes API host (usually kubectl proxy).")
    port: int = option(8001, min=1, max=65535, doc="The Kubernetes API port.")
    namespace: str | None = option(
        None, doc="Only the Ingresses of this namespace (default: every namespace)."
    )
    ingress_class_annotation: str = option(
        "linkerd",
        doc="Ingresses whose kubernetes.io/ingress.class annotation names another class are "
        "left out (as are, without the annotation, those whose spec.ingressClassName does).",
    )
    ignore_default_backends: bool = option(
        False, doc="Do not name requests that match no rule by an Ingress's default backend."
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.host:
            yield "host", "must not be empty"
        if self.namespace is not None and not valid_namespace(self.namespace):
            yield (
                "namespace",
                f"{self.namespace!r} is not a Kubernetes namespace name (lowercase letters, "
                "digits and '-'; leave the key out for every namespace)",
            )
        if not self.ingress_class_annotation:
            yield "ingressClassAnnotation", "must not be empty (Linkerd's default: linkerd)"

    def new_identifier(self, prefix: Path) -> IngressIdentifier:  # type: ignore[override]
        from . import plugin
        from .cache import IngressCache
        from .identifier import IngressIdentifier

        cache = IngressCache(
            prefix,
            host=self.host,
            port=self.port,
            namespace=self.namespace,
            ingress_class=self.ingress_class_annotation,
            ignore_default_backends=self.ignore_default_backends,
        )
        plugin.to_start(cache)  # the watch starts with the linker (turnout_startup)
        return IngressIdentifier(cache)
