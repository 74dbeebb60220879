"""io.l5d.inMemory runs the dtab store contract, plus what is particular to it."""

from __future__ import annotations

import asyncio

import pytest
from turnout.namerd import InMemoryDtabStore, parse_version, version_string
from turnout.namerd.store_contract import DtabStoreContract, MakeStore
from turnout.naming import Dtab


class TestInMemoryStoreContract(DtabStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return InMemoryDtabStore


def test_seeded_namespaces_start_at_linkerds_first_version() -> None:
    dtab = Dtab.read("/svc=>/#/io.l5d.fs")
    store = InMemoryDtabStore({"default": dtab})

    async def main() -> None:
        found = await store.get("default")
        assert found is not None
        assert found[0] == dtab
        assert version_string(found[1]) == "AAAAAAAAAAE="  # Linkerd's InitialVersion
        version = await store.put("default", dtab, found[1])
        assert version_string(version) == "AAAAAAAAAAI="
        assert parse_version('"AAAAAAAAAAI="') == version
        assert parse_version("not base64!") is None

    asyncio.run(main())
