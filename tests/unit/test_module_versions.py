"""The module versions a process keeps in memory for its deliveries: read from the store once, per tenant,
bounded by size, never a version that is not stored."""

from __future__ import annotations

from typing import Any

import pytest
from mcpdo.adapters.memory_events import MemoryModuleStore
from mcpdo.modules import ModuleVersions
from mcpdo.ports import StoredModule

from tests.contract.events_backends import module

pytestmark = pytest.mark.anyio


class CountingStore(MemoryModuleStore):
    """The in-memory ModuleStore, counting the reads that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str, int | None]] = []

    async def get(self, tenant: str, id: str, version: int | None = None) -> StoredModule | None:
        self.reads.append((tenant, id, version))
        return await super().get(tenant, id, version)


async def saved(store: CountingStore, **fields: Any) -> StoredModule:
    mod = module(**fields)
    await store.save(mod)
    return mod


async def test_a_version_is_read_from_the_store_once() -> None:
    store = CountingStore()
    mod = await saved(store)
    versions = ModuleVersions(store)
    assert await versions.get("acme", mod.id, 1) == mod
    assert await versions.get("acme", mod.id, 1) == mod
    assert store.reads == [("acme", mod.id, 1)]


async def test_the_same_id_and_version_in_another_tenant_is_that_tenants_module() -> None:
    store = CountingStore()
    ours = await saved(store, tenant="acme", code="acme's")
    theirs = await saved(store, tenant="globex", code="globex's")
    versions = ModuleVersions(store)
    assert (await versions.get("acme", ours.id, 1)) == ours
    assert (await versions.get("globex", ours.id, 1)) == theirs
    assert (await versions.get("acme", ours.id, 1)) == ours
    assert len(store.reads) == 2


async def test_a_missing_version_is_asked_for_again_once_it_is_stored() -> None:
    store = CountingStore()
    versions = ModuleVersions(store)
    assert await versions.get("acme", "https://acme.test/orders", 1) is None
    mod = await saved(store)
    assert await versions.get("acme", mod.id, 1) == mod


async def test_the_versions_read_least_recently_go_first_past_the_size_bound() -> None:
    store = CountingStore()
    first = await saved(store, module_id="https://acme.test/a", code="a" * 400)
    second = await saved(store, module_id="https://acme.test/b", code="b" * 400)
    versions = ModuleVersions(store, max_chars=1000)
    await versions.get("acme", first.id, 1)
    await versions.get("acme", second.id, 1)
    await versions.get("acme", first.id, 1)  # now the most recent
    third = await saved(store, module_id="https://acme.test/c", code="c" * 400)
    await versions.get("acme", third.id, 1)  # past 1,000 characters: `second` goes
    store.reads.clear()
    assert await versions.get("acme", first.id, 1) == first
    assert await versions.get("acme", third.id, 1) == third
    assert store.reads == []
    assert await versions.get("acme", second.id, 1) == second
    assert store.reads == [("acme", second.id, 1)]
