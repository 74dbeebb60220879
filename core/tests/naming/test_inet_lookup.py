"""``InetResolver.use``: a plugin's host lookup, refreshed on the TTL it reports."""

from __future__ import annotations

import asyncio
import socket

from turnout.naming import AddrBound, AddrNeg, InetResolver


def test_a_plugged_lookup_is_used_and_refreshed_on_its_ttl():
    async def main():
        answers = {"web.test": ["10.0.0.1"]}
        calls: list[str] = []

        async def lookup(host: str):
            calls.append(host)
            if host not in answers:
                raise socket.gaierror(socket.EAI_NONAME, "unknown")
            return answers[host], 0.2  # a 200 ms TTL

        resolver = InetResolver(refresh=60.0)  # without a TTL it would wait a minute
        resolver.min_refresh = 0.1
        resolver.use(lookup)
        var = resolver.addr("web.test", 8080)
        seen = []
        obs = var.observe(seen.append)
        await asyncio.sleep(0.05)
        assert isinstance(var.value, AddrBound)
        assert [str(a) for a in var.value.sorted()] == ["10.0.0.1:8080"]
        answers["web.test"] = ["10.0.0.2", "10.0.0.3"]
        await asyncio.sleep(0.4)  # the TTL ran out: looked up again
        assert [str(a) for a in var.value.sorted()] == ["10.0.0.2:8080", "10.0.0.3:8080"]
        assert calls.count("web.test") >= 2
        obs.close()

        unknown = resolver.addr("nope.test", 80)
        obs = unknown.observe(lambda _: None)
        await asyncio.sleep(0.05)
        assert unknown.value is AddrNeg
        obs.close()

    asyncio.run(main())
