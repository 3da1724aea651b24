"""The SubscriptionSync contract: lookups by event type over every backend in events_backends.BACKEND_FACTORIES
and the DynamoDB one of dynamodb_backends."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from mcpdo.errors import StoreError

from tests.contract.dynamodb_backends import dynamo_backend_fixture  # noqa: F401  (fixture)
from tests.contract.events_backends import (  # noqa: F401  (fixtures)
    EventsBackend,
    clock_fixture,
    module,
    subscription,
)

pytestmark = pytest.mark.anyio

PATTERNS = ["Order.item.added", "Order.*", "Order.item.*", "*.item.added", "*.added", "*", "Order.added", "Item.*"]


async def test_matching_finds_every_exact_prefix_suffix_and_wildcard_subscription_and_nothing_else(
    backend: EventsBackend,
) -> None:
    mod = module()
    subs = [subscription(mod, index, pattern) for index, pattern in enumerate(PATTERNS)]
    await backend.subscriptions.sync(mod, subs)
    found = await backend.subscriptions.matching("acme", "Order.item.added")
    assert found == subs[:6]  # by module and handler index
    assert [s.pattern for s in await backend.subscriptions.matching("acme", "Item.added")] == ["*.added", "*", "Item.*"]


async def test_matching_sees_only_the_tenant_asked_for(backend: EventsBackend) -> None:
    acme, globex = module(), module("https://globex.test/orders", tenant="globex")
    await backend.subscriptions.sync(acme, [subscription(acme, 0, "Order.created")])
    await backend.subscriptions.sync(globex, [subscription(globex, 0, "*")])
    assert [s.handler.tenant for s in await backend.subscriptions.matching("acme", "Order.created")] == ["acme"]
    assert [s.handler.tenant for s in await backend.subscriptions.matching("globex", "Order.created")] == ["globex"]
    assert await backend.subscriptions.matching("initech", "Order.created") == []


async def test_a_sync_replaces_only_that_modules_subscriptions_and_an_empty_sync_removes_them(
    backend: EventsBackend,
) -> None:
    orders, other = module(), module("https://acme.test/other")
    await backend.subscriptions.sync(orders, [subscription(orders, 0, "Order.created")])
    await backend.subscriptions.sync(other, [subscription(other, 0, "Order.created")])
    v2 = module(version=2)
    await backend.subscriptions.sync(v2, [subscription(v2, 1, "Order.*")])
    found = await backend.subscriptions.matching("acme", "Order.created")
    assert [(s.handler.module_id, s.handler.version, s.pattern) for s in found] == [
        ("https://acme.test/orders", 2, "Order.*"),
        ("https://acme.test/other", 1, "Order.created"),
    ]
    await backend.subscriptions.sync(v2, [])
    assert [s.handler.module_id for s in await backend.subscriptions.list("acme")] == ["https://acme.test/other"]


async def test_a_lookup_during_re_registrations_sees_the_old_set_or_the_new_one_never_a_mix(
    backend: EventsBackend,
) -> None:
    # Versions alternate between an exact and a prefix pattern for the same handler: exactly one of them is
    # live at any time, so a lookup that combined partitions read before and after a sync would see 0 or 2.
    patterns = ["Order.created", "Order.*"]
    first = module()
    await backend.subscriptions.sync(first, [subscription(first, 0, patterns[0])])
    syncs_done = asyncio.Event()
    seen: list[int] = []

    async def re_register() -> None:
        for version in range(2, 122):
            mod = module(version=version)
            await backend.subscriptions.sync(mod, [subscription(mod, 0, patterns[version % 2])])
            await asyncio.sleep(0)  # let the lookers run between syncs, on every backend
        syncs_done.set()

    async def look() -> None:
        while not syncs_done.is_set():
            # Giving up while syncs keep committing is allowed (the caller retries); mixing sets is not.
            with contextlib.suppress(StoreError):
                seen.append(len(await backend.subscriptions.matching("acme", "Order.created")))
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(re_register(), look(), look()), timeout=60)
    assert seen and set(seen) == {1}
