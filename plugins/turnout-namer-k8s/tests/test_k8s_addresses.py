"""Address selection from Endpoints and Service objects: port by name or number, readiness,
protocols, subsets (pure functions, the API's JSON as the double serves it)."""

from __future__ import annotations

import pytest
from turnout.naming import AddrBound, Address, AddrNeg
from turnout_namer_k8s.model import ServiceKey, select, target_port
from turnout_namer_k8s.testing import endpoint_subset, endpoints_object, service_object, subsets_for

NAMED = ServiceKey("default", "http", "web")


def ports(addr) -> list[str]:
    assert isinstance(addr, AddrBound), addr
    return [str(a) for a in addr.sorted()]


def ep(*subsets, labels=None):
    return endpoints_object("default", "web", subsets, labels=labels)


def test_missing_endpoints_object_is_neg():
    assert select(NAMED, None) is AddrNeg
    service = service_object("default", "web", [{"port": 80}])
    assert select(ServiceKey("default", "80", "web"), None, service) is AddrNeg
    assert select(ServiceKey("default", "80", "web"), None, None) is AddrNeg


def test_port_by_name_uses_the_subset_port_of_that_name():
    obj = ep(endpoint_subset(["10.0.0.1", "10.0.0.2"], {"http": 8080, "admin": 9990}))
    assert ports(select(NAMED, obj)) == ["10.0.0.1:8080", "10.0.0.2:8080"]
    assert ports(select(ServiceKey("default", "admin", "web"), obj)) == [
        "10.0.0.1:9990",
        "10.0.0.2:9990",
    ]
    assert select(ServiceKey("default", "grpc", "web"), obj) is AddrNeg  # no such port


def test_only_ready_addresses_count():
    obj = ep(endpoint_subset(["10.0.0.1"], {"http": 80}, not_ready=["10.0.0.2", "10.0.0.3"]))
    assert ports(select(NAMED, obj)) == ["10.0.0.1:80"]
    # every pod unready: the port is known, the set is empty (bound, not Neg)
    obj = ep(endpoint_subset([], {"http": 80}, not_ready=["10.0.0.2"]))
    assert select(NAMED, obj) == AddrBound()


def test_an_endpoints_object_without_subsets_is_neg_for_a_port_name():
    # (Linkerd: no port map, so the named port is missing: the route falls through)
    assert select(NAMED, ep()) is AddrNeg


def test_each_subset_has_its_own_port_numbers():
    obj = ep(*subsets_for([("10.0.0.1", 8080), ("10.0.0.2", 8080), ("10.0.0.3", 9090)]))
    assert ports(select(NAMED, obj)) == ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:9090"]


def test_udp_ports_are_not_used_and_tcp_is_the_default_protocol():
    obj = ep(
        endpoint_subset(
            ["10.0.0.1"],
            [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "http", "port": 80},  # no protocol: TCP
                {"name": "sctp", "port": 99, "protocol": "SCTP"},
            ],
        )
    )
    assert select(ServiceKey("default", "dns", "web"), obj) is AddrNeg
    assert select(ServiceKey("default", "sctp", "web"), obj) is AddrNeg
    assert ports(select(NAMED, obj)) == ["10.0.0.1:80"]


def test_node_names_become_address_metadata():
    obj = ep(endpoint_subset([{"ip": "10.0.0.1", "nodeName": "node-a"}, "10.0.0.2"], {"http": 80}))
    addr = select(NAMED, obj)
    assert isinstance(addr, AddrBound)
    assert sorted(addr.addresses, key=Address.sort_key) == [
        Address("10.0.0.1", 80, {"nodeName": "node-a"}),
        Address("10.0.0.2", 80),
    ]


def test_malformed_entries_are_skipped():
    obj = {
        "metadata": {"name": "web"},
        "subsets": [
            None,
            {
                "addresses": [{"ip": ""}, {"hostname": "x"}, "10.0.0.9", {"ip": "10.0.0.1"}],
                "ports": [{"name": "http", "port": "80"}],
            },  # a port that is not a number
            {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "http", "port": 81}]},
        ],
    }
    assert ports(select(NAMED, obj)) == ["10.0.0.2:81"]


def test_ipv6_addresses():
    obj = ep(endpoint_subset(["fd00::1"], {"http": 80}))
    assert ports(select(NAMED, obj)) == ["[fd00::1]:80"]


# -- port numbers: through the Service ------------------------------------------------------


def svc(*ports):
    return service_object("default", "web", ports)


def test_a_port_number_is_a_service_port_mapped_to_its_numeric_target_port():
    obj = ep(endpoint_subset(["10.0.0.1", "10.0.0.2"], {"http": 8080}, not_ready=["10.0.0.3"]))
    key = ServiceKey("default", "80", "web")
    service = svc({"name": "http", "port": 80, "targetPort": 8080})
    assert ports(select(key, obj, service)) == ["10.0.0.1:8080", "10.0.0.2:8080"]


def test_a_named_target_port_is_looked_up_in_the_endpoints():
    obj = ep(*subsets_for([("10.0.0.1", 8080), ("10.0.0.2", 8081)], port_name="web-port"))
    key = ServiceKey("default", "80", "web")
    service = svc({"name": "http", "port": 80, "targetPort": "web-port"})
    assert ports(select(key, obj, service)) == ["10.0.0.1:8080", "10.0.0.2:8081"]
    service = svc({"name": "http", "port": 80, "targetPort": "other"})
    assert select(key, obj, service) is AddrNeg  # the endpoints have no such port


def test_missing_target_port_defaults_to_the_port():
    service = {"spec": {"ports": [{"port": 8080}]}}  # as stored before defaulting
    assert target_port(service, 8080) == 8080
    assert target_port({"spec": {"ports": [{"port": 80, "targetPort": "8081"}]}}, 80) == 8081


def test_a_port_number_that_the_service_does_not_have_is_neg():
    obj = ep(endpoint_subset(["10.0.0.1"], {"http": 8080}))
    key = ServiceKey("default", "8080", "web")  # a target port, not a service port
    assert select(key, obj, svc({"name": "http", "port": 80, "targetPort": 8080})) is AddrNeg
    assert select(key, obj, None) is AddrNeg  # no Service at all
    udp = svc({"name": "dns", "port": 8080, "targetPort": 53, "protocol": "UDP"})
    assert select(key, obj, udp) is AddrNeg


@pytest.mark.parametrize(
    ("target", "expected"),
    [(0, 80), (None, 80), (-1, None), (70000, None), (True, None), ("", None), ("h2c", "h2c")],
)
def test_odd_target_ports(target, expected):
    service = {"spec": {"ports": [{"port": 80, "targetPort": target}]}}
    assert target_port(service, 80) == expected


def test_unready_only_subsets_with_a_numeric_target_port_give_an_empty_set():
    obj = ep(endpoint_subset([], {"http": 8080}, not_ready=["10.0.0.1"]))
    key = ServiceKey("default", "80", "web")
    service = svc({"port": 80, "targetPort": 8080})
    assert select(key, obj, service) == AddrBound()
