"""The ModuleStore contract, and the live handlers registering makes (SubscriptionSync, ScheduleSync): every
backend in events_backends.BACKEND_FACTORIES, and the DynamoDB one of dynamodb_backends, must pass all of it."""

from __future__ import annotations

import dataclasses

import pytest
from mcpdo.errors import Conflict, InputError

from tests.contract.dynamodb_backends import dynamo_backend_fixture  # noqa: F401  (fixture)
from tests.contract.events_backends import (  # noqa: F401  (fixtures)
    EventsBackend,
    clock_fixture,
    module,
    schedule,
    subscription,
)

pytestmark = pytest.mark.anyio


async def test_a_saved_module_reads_back_field_for_field(backend: EventsBackend) -> None:
    mod = module()
    await backend.register(mod, [subscription(mod, 0, "Order.created")], [])
    assert await backend.modules.get("acme", mod.id) == mod
    assert await backend.modules.get("acme", mod.id, 1) == mod
    assert await backend.modules.get("acme", mod.id, 2) is None
    assert await backend.modules.get("acme", "https://acme.test/missing") is None


async def test_versions_count_up_and_get_returns_the_latest_unless_asked(backend: EventsBackend) -> None:
    assert await backend.modules.next_version("acme", "https://acme.test/orders") == 1
    first = module(version=1, code="v1")
    await backend.register(first, [], [])
    assert await backend.modules.next_version("acme", first.id) == 2
    second = module(version=2, code="v2")
    await backend.register(second, [], [])
    assert await backend.modules.next_version("acme", first.id) == 3
    latest = await backend.modules.get("acme", first.id)
    assert latest is not None and latest.code == "v2"
    older = await backend.modules.get("acme", first.id, 1)
    assert older is not None and older.code == "v1"


async def test_saving_an_existing_or_older_version_is_a_conflict(backend: EventsBackend) -> None:
    await backend.register(module(version=2), [], [])
    with pytest.raises(Conflict, match="version 2 already exists"):
        await backend.register(module(version=2), [], [])
    with pytest.raises(Conflict, match="older than the latest"):
        await backend.register(module(version=1), [], [])


async def test_list_gives_the_latest_version_of_each_module_of_the_tenant_only(backend: EventsBackend) -> None:
    await backend.register(module("https://acme.test/a", 1), [], [])
    await backend.register(module("https://acme.test/a", 2), [], [])
    await backend.register(module("https://acme.test/b", 1), [], [])
    await backend.register(module("https://globex.test/c", 1, tenant="globex"), [], [])
    listed = await backend.modules.list("acme")
    assert [(m.id, m.version) for m in listed] == [("https://acme.test/a", 2), ("https://acme.test/b", 1)]
    assert [m.id for m in await backend.modules.list("globex")] == ["https://globex.test/c"]
    assert await backend.modules.list("initech") == []


async def test_subscriptions_and_schedules_of_the_saved_version_are_live(backend: EventsBackend) -> None:
    mod = module()
    subs = [subscription(mod, 0, "Order.created"), subscription(mod, 2, "*.paid")]
    entries = [schedule(mod, 1, "0 9 * * *")]
    await backend.register(mod, subs, entries)
    assert await backend.subscriptions.list("acme") == subs
    assert await backend.schedules.list("acme") == entries
    assert await backend.schedules.list() == entries
    assert await backend.subscriptions.list("globex") == []
    assert await backend.schedules.list("globex") == []


async def test_a_new_version_replaces_the_previous_subscriptions_and_schedules(backend: EventsBackend) -> None:
    v1 = module(version=1)
    await backend.register(
        v1, [subscription(v1, 0, "Order.created"), subscription(v1, 1, "Order.paid")], [schedule(v1, 2, "1h")]
    )
    other = module("https://acme.test/other")
    await backend.register(other, [subscription(other, 0, "Order.created")], [schedule(other, 1, "daily")])
    v2 = module(version=2)
    await backend.register(v2, [subscription(v2, 0, "Order.shipped")], [])
    subs = await backend.subscriptions.list("acme")
    assert sorted((s.handler.module_id, s.handler.version, s.pattern) for s in subs) == [
        ("https://acme.test/orders", 2, "Order.shipped"),
        ("https://acme.test/other", 1, "Order.created"),
    ]
    assert [(e.handler.module_id, e.schedule) for e in await backend.schedules.list("acme")] == [
        ("https://acme.test/other", "daily")
    ]


async def test_schedules_of_every_tenant_are_listed_when_no_tenant_is_given(backend: EventsBackend) -> None:
    a = module("https://acme.test/a")
    g = module("https://globex.test/g", tenant="globex")
    await backend.register(a, [], [schedule(a, 0, "5m")])
    await backend.register(g, [], [schedule(g, 0, "hourly")])
    assert sorted(e.handler.tenant for e in await backend.schedules.list()) == ["acme", "globex"]


@pytest.mark.parametrize("bad", ["Order..created", "Order.*.x", ""])
async def test_a_bad_pattern_is_refused_and_the_previous_version_stays_live(backend: EventsBackend, bad: str) -> None:
    v1 = module(version=1)
    await backend.register(v1, [subscription(v1, 0, "Order.created")], [])
    v2 = module(version=2)
    with pytest.raises(InputError, match="Invalid event pattern"):
        await backend.register(v2, [subscription(v2, 0, bad)], [])
    assert [s.handler.version for s in await backend.subscriptions.list("acme")] == [1]
    assert await backend.modules.next_version("acme", v1.id) == 2


async def test_a_bad_schedule_is_refused_with_the_schedule_error(backend: EventsBackend) -> None:
    mod = module()
    with pytest.raises(InputError, match="Invalid schedule '30s'"):
        await backend.register(mod, [], [schedule(mod, 0, "30s")])
    assert await backend.modules.get("acme", mod.id) is None


async def test_handlers_must_belong_to_the_saved_module_version(backend: EventsBackend) -> None:
    mod = module(version=2)
    stale = subscription(dataclasses.replace(mod, version=1), 0, "Order.created")
    with pytest.raises(InputError, match="points at"):
        await backend.register(mod, [stale], [])
    foreign = subscription(module(tenant="globex", version=2), 0, "Order.created")
    with pytest.raises(InputError, match="points at"):
        await backend.register(mod, [foreign], [])


async def test_two_handlers_with_one_index_are_refused(backend: EventsBackend) -> None:
    mod = module()
    with pytest.raises(InputError, match="share a handler index"):
        await backend.register(mod, [subscription(mod, 0, "A.b"), subscription(mod, 0, "C.d")], [])
