"""The io.l5d.k8s.localnode and io.l5d.k8s.daemonset transformers (issue 12), the daemonset
one against the Kubernetes API double."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from turnout.errors import TurnoutError
from turnout.naming import Addr, AddrBound, Address, AddrNeg, Leaf, NameBound, Ok, Path, Var
from turnout.testing.config import build_context
from turnout_namer_k8s.model import NODE_NAME_KEY
from turnout_namer_k8s.testing import KubeApiDouble, endpoint_subset
from turnout_namer_k8s.transformers import (
    DaemonSetTransformerConfig,
    LocalNodeTransformerConfig,
)

pytestmark = pytest.mark.timeout(30)

P = Path.read
ID = P("/#/io.l5d.k8s/default/http/web")


def leaf(*addresses: Address) -> tuple[Leaf[NameBound], Var[Addr]]:
    var: Var[Addr] = Var(AddrBound(addresses))
    return Leaf(NameBound(ID, var)), var


def transformed(t: Any, tree: Leaf[NameBound]) -> NameBound:
    state = t.transform(tree)
    assert isinstance(state, Ok) and isinstance(state.value, Leaf), state
    return state.value.value


def hostports(addr: Addr) -> set[str]:
    assert isinstance(addr, AddrBound), addr
    return {str(a) for a in addr.addresses}


def test_localnode_keeps_the_pods_of_this_nodes_subnet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_IP", "10.1.2.3")
    t = LocalNodeTransformerConfig().new_transformer(build_context())
    tree, var = leaf(Address("10.1.2.9", 80), Address("10.1.3.9", 80))
    bound = transformed(t, tree)
    assert bound.id == P("/%/io.l5d.k8s.localnode/10.1.2.3") + ID
    seen: list[Addr] = []
    obs = bound.addr.observe(seen.append)
    assert hostports(seen[-1]) == {"10.1.2.9:80"}
    var.update(AddrBound([Address("10.1.3.9", 80)]))
    assert seen[-1] is AddrNeg
    obs.close()


def test_localnode_with_host_network_matches_the_node_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NODE_NAME", "node-a")
    t = LocalNodeTransformerConfig(host_network=True).new_transformer(build_context())
    here = Address("10.0.0.1", 80, {NODE_NAME_KEY: "node-a"})
    tree, _ = leaf(here, Address("10.0.0.2", 80, {NODE_NAME_KEY: "node-b"}))
    bound = transformed(t, tree)
    assert bound.id == P("/%/io.l5d.k8s.localnode/node-a") + ID
    assert bound.addr.value == AddrBound([here])


def test_localnode_needs_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_IP", raising=False)
    monkeypatch.delenv("NODE_NAME", raising=False)
    with pytest.raises(TurnoutError, match="POD_IP"):
        LocalNodeTransformerConfig().new_transformer(build_context())
    with pytest.raises(TurnoutError, match="NODE_NAME"):
        LocalNodeTransformerConfig(host_network=True).new_transformer(build_context())


def test_daemonset_sends_to_the_daemonset_pod_on_the_same_node(kube: KubeApiDouble) -> None:
    kube.set_endpoints(
        "linkerd", "l5d", [endpoint_subset(["10.1.2.100", "10.1.3.100"], {"incoming": 4141})]
    )
    cfg = DaemonSetTransformerConfig(
        k8s_host="127.0.0.1",
        k8s_port=kube.port,
        namespace="linkerd",
        service="l5d",
        port="incoming",
    )

    async def run() -> None:
        t = cfg.new_transformer(build_context())
        try:
            tree, var = leaf(Address("10.1.2.5", 8080), Address("10.1.9.9", 8080))
            bound = transformed(t, tree)
            assert bound.id == P("/%/io.l5d.k8s.daemonset/linkerd/incoming/l5d") + ID
            addr = await bound.addr.changes(lambda a: isinstance(a, AddrBound))
            assert hostports(addr) == {"10.1.2.100:4141"}  # (10.1.9.9 has no daemonset pod)
            # the destination moves: the gateway follows
            var.update(AddrBound([Address("10.1.3.7", 8080)]))
            addr = await bound.addr.changes(lambda a: a != AddrBound([Address("10.1.2.100", 4141)]))
            assert hostports(addr) == {"10.1.3.100:4141"}
            # the daemonset changes: the gateway follows too
            kube.set_endpoints(
                "linkerd", "l5d", [endpoint_subset(["10.1.3.101"], {"incoming": 4141})]
            )
            addr = await asyncio.wait_for(
                bound.addr.changes(lambda a: a == AddrBound([Address("10.1.3.101", 4141)])), 10
            )
            var.update(AddrBound([Address("10.1.2.5", 8080)]))
            assert bound.addr.value is AddrNeg
        finally:
            await t.close()

    asyncio.run(run())


def test_daemonset_config_is_checked() -> None:
    cfg = DaemonSetTransformerConfig(namespace="Bad_NS", service="l5d", port="incoming")
    assert [key for key, _ in cfg.check()] == ["namespace"]
