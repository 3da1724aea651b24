"""The SubscriptionSync contract: lookups by event type over every backend in events_backends.BACKEND_FACTORIES
and the DynamoDB one of dynamodb_backends."""

from __future__ import annotations

import pytest

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
