"""Configuration of the ``io.l5d.k8s`` and ``io.l5d.k8s.ns`` namers (Linkerd's keys)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from turnout.api import BuildContext, Namer, NamerConfig, Path, TurnoutError, option

from .model import valid_label_key, valid_namespace


class K8sNamerConfig(NamerConfig):
    """Kubernetes service discovery: ``/#/io.l5d.k8s/<namespace>/<port>/<service>`` binds to
    the ready addresses of the service's Endpoints object, watched through the API (plain
    HTTP: run ``kubectl proxy`` beside turnout). ``<port>`` is a port name, or a Service port
    number (mapped to its ``targetPort``). With ``labelSelector``, names take one more label,
    the value that the Endpoints (and Service) object's label must have."""

    kind = "io.l5d.k8s"
    host: str = option("localhost", doc="The Kubernetes API host (usually kubectl proxy).")
    port: int = option(8001, min=1, max=65535, doc="The Kubernetes API port.")
    label_selector: str | None = option(
        None,
        doc="The key of the label to filter services; names then end with its value.",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if self.label_selector is not None and not valid_label_key(self.label_selector):
            yield (
                "labelSelector",
                f"{self.label_selector!r} is not a Kubernetes label key "
                "(like 'version' or 'example.com/version')",
            )
        if not self.host:
            yield "host", "must not be empty"

    def namespace(self) -> str | None:
        """The fixed namespace (``io.l5d.k8s.ns``), or None when names give it."""
        return None

    def new_namer(self, ctx: BuildContext) -> Namer:
        from .namer import K8sNamer, K8sNsNamer

        namespace = self.namespace()
        cls = K8sNamer if namespace is None else K8sNsNamer
        return cls(
            Path.of("#") + self.effective_prefix,
            host=self.host,
            port=self.port,
            label_selector=self.label_selector,
            namespace=namespace,
            metrics=ctx.metrics,
        )


class K8sNsNamerConfig(K8sNamerConfig):
    """Kubernetes service discovery in the namespace named by an environment variable (the
    pod's own, through the downward API): ``/#/io.l5d.k8s.ns/<port>/<service>``."""

    kind = "io.l5d.k8s.ns"
    env_var: str = option(
        "POD_NAMESPACE", doc="The environment variable that holds the namespace name."
    )

    def check(self) -> Iterable[tuple[str, str]]:
        yield from super().check()
        if not self.env_var:
            yield "envVar", "must not be empty"

    def namespace(self) -> str:
        value = os.environ.get(self.env_var)
        if not value:
            raise TurnoutError(
                f"namer {self.kind}: the environment variable {self.env_var} is not set; it "
                "must hold the namespace (in a pod, set it from the downward API: "
                "valueFrom.fieldRef.fieldPath: metadata.namespace)"
            )
        if not valid_namespace(value):
            raise TurnoutError(
                f"namer {self.kind}: {self.env_var}={value!r} is not a Kubernetes namespace name"
            )
        return value
