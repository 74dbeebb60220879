"""Configuration of ``io.l5d.k8s.external`` (Linkerd's ``K8sExternalConfig``: ``host``,
``port``, ``labelSelector``; experimental)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from turnout.api import BuildContext, Path
from turnout_namer_k8s.config import K8sNamerConfig

if TYPE_CHECKING:  # aiohttp is imported only when a namer is built
    from .namer import K8sExternalNamer


class K8sExternalConfig(K8sNamerConfig):
    """Kubernetes LoadBalancer Services: ``/#/io.l5d.k8s.external/<namespace>/<port>/<service>``
    binds to the addresses of the Service's ``status.loadBalancer.ingress`` (each entry's
    ``hostname``, else its ``ip``) at the Service port ``<port>`` (a port name, or a Service
    port number), watched through the API (plain HTTP: ``kubectl proxy``). With
    ``labelSelector``, names take one more label: the value the Service's label must have.
    Experimental, as in Linkerd."""

    kind = "io.l5d.k8s.external"
    experimental_required = True

    def new_namer(self, ctx: BuildContext) -> K8sExternalNamer:
        from .namer import K8sExternalNamer

        return K8sExternalNamer(
            Path.of("#") + self.effective_prefix,
            host=self.host,
            port=self.port,
            label_selector=self.label_selector,
            metrics=ctx.metrics,
        )
