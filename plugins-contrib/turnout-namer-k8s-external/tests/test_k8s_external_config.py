"""io.l5d.k8s.external without an API server: registration through the entry point, Linkerd's
keys and defaults, the experimental gate, errors at their position, names and addresses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from turnout.config import NamerConfig
from turnout.naming import AddrBound, Address, AddrNeg, Path
from turnout.testing.config import build_context, installed_registry, plugin_registry, read_entry
from turnout_namer_k8s.model import ServiceKey
from turnout_namer_k8s.testing import service_object
from turnout_namer_k8s_external import plugin
from turnout_namer_k8s_external.config import K8sExternalConfig
from turnout_namer_k8s_external.namer import K8sExternalNamer, external_addr, ingress_hosts

KIND = "io.l5d.k8s.external"


@pytest.fixture(scope="module")
def registry():
    return plugin_registry(plugin)


def read_namer(registry, text: str):
    return read_entry(registry, NamerConfig, text, "namer.yaml")


# -- registration ------------------------------------------------------------------------------


def test_the_plugin_registers_the_kind(registry):
    registration = registry.registration("namer", KIND)
    assert registration.cls is K8sExternalConfig
    assert registration.provider.plugin == "turnout_namer_k8s_external.plugin"


def test_the_entry_point_finds_the_kind():
    registry = installed_registry("turnout-namer-k8s-external")
    assert registry.config_class("namer", KIND) is K8sExternalConfig


def test_turnout_plugins_lists_the_kind_with_its_distribution():
    out = subprocess.run(
        [sys.executable, "-m", "turnout", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    kinds = {
        (kind["family"], kind["kind"]): plugin["distribution"]
        for plugin in json.loads(out)["plugins"]
        for kind in plugin["kinds"]
    }
    assert kinds[("namer", KIND)] == "turnout-namer-k8s-external"
    assert kinds[("namer", "io.l5d.k8s")] == "turnout-namer-k8s"


# -- configuration -----------------------------------------------------------------------------


def test_linkerds_config_is_read(registry):
    # K8sExternalTest "parse config"
    config, problems = read_namer(
        registry,
        "kind: io.l5d.k8s.external\nexperimental: true\nhost: k8s-master.site.biz\n"
        "port: 80\nlabelSelector: version\n",
    )
    assert problems == []
    assert (config.host, config.port, config.label_selector) == (
        "k8s-master.site.biz",
        80,
        "version",
    )
    assert config.effective_prefix == Path.read("/io.l5d.k8s.external")


def test_defaults(registry):
    config, problems = read_namer(registry, "kind: io.l5d.k8s.external\nexperimental: true\n")
    assert problems == []
    assert (config.host, config.port, config.label_selector) == ("localhost", 8001, None)


def test_experimental_is_required(registry):
    config, problems = read_namer(registry, "kind: io.l5d.k8s.external\nhost: k8s\n")
    assert config is None
    assert len(problems) == 1 and "experimental: true" in problems[0].message


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        ("labelSelector: 'a b'\n", "labelSelector", "is not a Kubernetes label key"),
        ("port: 0\n", "port", "between 1 and 65535"),
        ("hostname: k8s\n", "hostname", "did you mean 'host'?"),
        ("host: ''\n", "host", "must not be empty"),
    ],
)
def test_bad_options_are_reported_where_they_are_written(registry, extra, path, message):
    config, problems = read_namer(
        registry, "kind: io.l5d.k8s.external\nexperimental: true\n" + extra
    )
    assert config is None
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.source, problem.line, problem.path) == ("namer.yaml", 3, path)
    assert message in problem.message, problem
    assert str(problem).startswith("namer.yaml:3:")


def test_turnout_check_points_at_the_line(tmp_path):
    path = tmp_path / "l5d.yaml"
    path.write_text(
        "namers:\n- kind: io.l5d.k8s.external\n  experimental: true\n  labelSelector: 'x y'\n"
        "routers:\n- protocol: http\n  servers: [{port: 4140}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TURNOUT_PLUGINS": "protocol-http,namer-k8s-external"},
    )
    assert result.returncode != 0
    assert f"{path}:4:" in result.stdout + result.stderr, result.stdout + result.stderr


# -- names -------------------------------------------------------------------------------------


def make_namer(label_selector: str | None = None) -> K8sExternalNamer:
    config = K8sExternalConfig(
        experimental=True, host="127.0.0.1", port=1, label_selector=label_selector
    )
    namer = config.new_namer(build_context())
    assert isinstance(namer, K8sExternalNamer)
    return namer


def test_names_are_namespace_port_service():
    namer = make_namer()
    assert namer.key_of(Path.read("/prod/http/web/a/b")) == (ServiceKey("prod", "http", "web"), 3)
    assert namer.key_of(Path.read("/Prod/HTTP/Web")) == (ServiceKey("prod", "http", "web"), 3)
    assert namer.key_of(Path.read("/prod/80/web")) == (ServiceKey("prod", "80", "web"), 3)
    long_name = "a-very-long-port-name-for-a-service"  # Service port names are DNS labels
    assert namer.key_of(Path.read(f"/prod/{long_name}/web"))[0].port == long_name
    for bad in ("/prod/http", "/prod/0/web", "/prod/70000/web", "/pr_od/http/web", "/p/h/w_"):
        assert namer.key_of(Path.read(bad)) is None, bad


def test_label_selector_takes_one_more_label():
    namer = make_namer("version")
    assert namer.key_of(Path.read("/prod/http/web/v1/rest")) == (
        ServiceKey("prod", "http", "web", "version=v1"),
        4,
    )
    assert namer.key_of(Path.read("/prod/http/web")) is None
    assert namer.key_of(Path.of("prod", "http", "web", "a,b")) is None


# -- addresses ---------------------------------------------------------------------------------

PORTS = [
    {"name": "http", "port": 80, "targetPort": 8080},
    {"name": "admin", "port": 9990},
    {"name": "dns", "port": 53, "protocol": "UDP"},
]


def test_the_load_balancer_addresses_at_the_service_port():
    svc = service_object("prod", "web", PORTS, load_balancer=["104.155.170.94"])
    assert external_addr(ServiceKey("prod", "http", "web"), svc) == AddrBound(
        [Address("104.155.170.94", 80)]
    )
    assert external_addr(ServiceKey("prod", "80", "web"), svc) == AddrBound(
        [Address("104.155.170.94", 80)]
    )
    assert external_addr(ServiceKey("prod", "9990", "web"), svc) == AddrBound(
        [Address("104.155.170.94", 9990)]
    )
    # no such port, the target port's number, a UDP port, no Service: Neg
    for port in ("grpc", "8080", "dns", "53"):
        assert external_addr(ServiceKey("prod", port, "web"), svc) is AddrNeg, port
    assert external_addr(ServiceKey("prod", "http", "web"), None) is AddrNeg


def test_hostname_wins_over_ip_and_every_entry_counts():
    svc = service_object(
        "prod",
        "web",
        PORTS,
        load_balancer=[
            {"ip": "10.0.0.1", "hostname": "lb-1.example.com"},
            "10.0.0.2",
            {"ip": "10.0.0.2"},
            {"ports": []},
        ],
    )
    assert ingress_hosts(svc) == ["lb-1.example.com", "10.0.0.2"]
    assert external_addr(ServiceKey("prod", "http", "web"), svc) == AddrBound(
        [Address("lb-1.example.com", 80), Address("10.0.0.2", 80)]
    )


def test_no_load_balancer_address_yet_is_neg():
    for lb in (None, []):
        svc = service_object("prod", "web", PORTS, load_balancer=lb)
        assert external_addr(ServiceKey("prod", "http", "web"), svc) is AddrNeg
