"""Transformers end to end (issue 12): a router whose interpreter has ``transformers:`` sends
traffic where the transformed address sets say, and ``/delegator.json`` shows them."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest
from turnout.testing import http_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

#: an address that is never local (TEST-NET-1) and never answers
NOT_LOCAL = "192.0.2.1 9"


def test_port_transformer_sends_traffic_to_the_transformed_port(
    http_proxy, disco_dir, recording_backend
):
    listed, target = recording_backend(name="listed"), recording_backend(name="target")
    disco_dir.write("web", listed)  # the namer says 127.0.0.1:<listed.port>
    proxy = http_proxy(
        router={"interpreter": {"transformers": [{"kind": "io.l5d.port", "port": target.port}]}}
    )
    for i in range(3):
        r = http_request(proxy.port, "GET", f"/x{i}", {"Host": "web"})
        assert r.status == 200
        assert r.text == f"target /x{i}\n"
    assert not listed.requests
    assert len(target.requests) == 3

    query = urllib.parse.urlencode(
        {"namespace": "http", "path": "/svc/web", "dtab": "/svc => /#/io.l5d.fs"}
    )
    with urllib.request.urlopen(f"{proxy.admin_url}/delegator.json?{query}", timeout=5) as resp:
        tree = json.loads(resp.read())
    text = json.dumps(tree)
    assert '"type": "transformation"' in text and '"name": "io.l5d.port"' in text
    assert f'"/%/io.l5d.port/{target.port}/#/io.l5d.fs/web"' in text


@pytest.mark.parametrize(
    "transformer",
    [{"kind": "io.l5d.localhost"}, {"kind": "io.l5d.specificHost", "host": "127.0.0.1"}],
    ids=["localhost", "specificHost"],
)
def test_host_filters_keep_only_the_matching_addresses(
    http_proxy, disco_dir, recording_backend, transformer
):
    local = recording_backend(name="local")
    disco_dir.write("web", local, NOT_LOCAL)
    proxy = http_proxy(router={"interpreter": {"transformers": [transformer]}})
    for i in range(8):  # without the filter, about half would go to the dead address
        r = http_request(proxy.port, "GET", f"/{i}", {"Host": "web"})
        assert r.status == 200, r.text
        assert r.text == f"local /{i}\n"
    assert len(local.requests) == 8


def test_a_filter_that_keeps_nothing_makes_the_name_negative(http_proxy, disco_dir):
    disco_dir.write("web", NOT_LOCAL)
    proxy = http_proxy(
        router={
            "interpreter": {"transformers": [{"kind": "io.l5d.specificHost", "host": "10.9.9.9"}]}
        }
    )
    r = http_request(proxy.port, "GET", "/", {"Host": "web"})
    assert r.status >= 400
