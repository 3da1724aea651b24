"""The ScheduleSync contract (live `every()` schedules: sync, list, next_fire), over the local cron tables
(memory, SQLite) and EventBridge Scheduler (state table and Scheduler under moto).

A cron table computes fire times when its loop first sees a schedule (`due`); Scheduler computes them from
the live set and the clock. `settle(now)` is what each backend needs to hold its fire times at `now`: the
suites compare them only before a first slot, where every backend means the same.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from mcpdo.adapters.memory_events import MemorySchedules
from mcpdo.adapters.scheduler_schedules import SchedulerSchedules
from mcpdo.adapters.sqlite_schedules import SqliteSchedules
from mcpdo.errors import StoreError
from mcpdo.ports import HandlerRef, ScheduleEntry, ScheduleSync

from tests.contract.dynamodb_backends import dynamo_table
from tests.contract.events_backends import module
from tests.support.aws import REGION

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 5, 8, 59, 30, tzinfo=UTC)  # a Monday, 09:59:30 in Paris
FAKE_ARN = "arn:aws:lambda:us-east-1:123456789012:function:mcpdo-schedules"
ROLE_ARN = "arn:aws:iam::123456789012:role/mcpdo-scheduler"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:mcpdo-schedules-dlq"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Harness:
    """One backend and the time it is at."""

    schedules: ScheduleSync
    now: datetime = T0

    async def settle(self, now: datetime) -> None:
        """Move to `now`; a cron table's loop polls once there (which is when it computes fire times)."""
        self.now = now
        due = getattr(self.schedules, "due", None)
        if due is not None:
            await due(now)

    async def register(
        self, *texts: str, version: int = 1, tenant: str = "acme", module_id: str = "https://acme.test/cron"
    ) -> list[ScheduleEntry]:
        mod = module(module_id, version, tenant=tenant)
        entries = [ScheduleEntry(HandlerRef(tenant, module_id, version, i), text) for i, text in enumerate(texts)]
        await self.schedules.sync(mod, entries)
        return entries


def _scheduler(harness: Callable[[], Harness], request: pytest.FixtureRequest) -> ScheduleSync:
    table = dynamo_table(request)  # starts moto and points boto3 at it
    client = boto3.client("scheduler", region_name=REGION)
    group = f"mcpdo-{uuid.uuid4().hex[:12]}"
    client.create_schedule_group(Name=group)
    return SchedulerSchedules(
        table,
        client,
        group=group,
        target_arn=FAKE_ARN,
        role_arn=ROLE_ARN,
        dead_letter_arn=DLQ_ARN,
        clock=lambda: harness().now,
    )


FACTORIES: dict[str, Callable[[Callable[[], Harness], pytest.FixtureRequest, Path], ScheduleSync]] = {
    "memory": lambda harness, request, tmp_path: MemorySchedules(),
    "sqlite": lambda harness, request, tmp_path: SqliteSchedules(tmp_path / "state.db"),
    "scheduler": lambda harness, request, tmp_path: _scheduler(harness, request),
}


@pytest.fixture(params=sorted(FACTORIES))
async def backend(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[Harness]:
    holder: list[Harness] = []
    harness = Harness(FACTORIES[request.param](lambda: holder[0], request, tmp_path))
    holder.append(harness)
    try:
        yield harness
    finally:
        await harness.schedules.close()


async def test_synced_schedules_are_listed_by_tenant_module_and_handler_index(backend: Harness) -> None:
    b2 = await backend.register("5m", "hourly", module_id="https://acme.test/b")
    a1 = await backend.register("0 9 * * *", module_id="https://acme.test/a")
    z1 = await backend.register("1h", tenant="zeta", module_id="https://acme.test/a")
    assert await backend.schedules.list("acme") == [*a1, *b2]
    assert await backend.schedules.list("zeta") == z1
    assert await backend.schedules.list() == [*a1, *b2, *z1]
    assert await backend.schedules.list("nobody") == []


async def test_entries_keep_their_own_version_and_index_under_the_synced_module(backend: Harness) -> None:
    mod = module("https://acme.test/cron", 3)
    entries = [
        ScheduleEntry(HandlerRef("acme", mod.id, 3, 4), "0 9 * * *"),
        ScheduleEntry(HandlerRef("acme", mod.id, 3, 1), "5m"),
    ]
    await backend.schedules.sync(mod, entries)
    assert await backend.schedules.list("acme") == [entries[1], entries[0]]


async def test_next_fire_is_the_first_slot_after_the_schedule_went_live(backend: Harness) -> None:
    cron, paris, interval = await backend.register("0 9 * * *", "TZ=Europe/Paris 0 9 * * 1-5", "15m")
    await backend.settle(T0)
    assert await backend.schedules.next_fire(cron) == at("2026-01-05T09:00:00Z")
    assert await backend.schedules.next_fire(paris) == at("2026-01-06T08:00:00Z")  # 09:00 Paris passed today
    assert await backend.schedules.next_fire(interval) == at("2026-01-05T09:00:00Z")


async def test_an_entry_that_was_never_synced_has_no_next_fire(backend: Harness) -> None:
    await backend.register("0 9 * * *")
    await backend.settle(T0)
    other = ScheduleEntry(HandlerRef("acme", "https://acme.test/other", 1, 0), "0 9 * * *")
    assert await backend.schedules.next_fire(other) is None
    changed = ScheduleEntry(HandlerRef("acme", "https://acme.test/cron", 1, 0), "0 10 * * *")
    assert await backend.schedules.next_fire(changed) is None


async def test_a_new_version_replaces_the_whole_set(backend: Harness) -> None:
    await backend.register("0 9 * * *", "5m", "hourly", version=1)
    await backend.settle(T0)
    v2 = await backend.register("0 9 * * *", version=2)
    await backend.settle(T0 + timedelta(seconds=5))
    assert await backend.schedules.list("acme") == v2
    removed = ScheduleEntry(HandlerRef("acme", "https://acme.test/cron", 1, 1), "5m")
    assert await backend.schedules.next_fire(removed) is None


async def test_syncing_an_empty_set_removes_every_schedule_of_the_module(backend: Harness) -> None:
    old = await backend.register("0 9 * * *", "5m")
    kept = await backend.register("1h", module_id="https://acme.test/other")
    await backend.settle(T0)
    await backend.register(version=2)
    await backend.settle(T0 + timedelta(seconds=5))
    assert await backend.schedules.list("acme") == kept
    for entry in old:
        assert await backend.schedules.next_fire(entry) is None
    assert await backend.schedules.next_fire(kept[0]) == at("2026-01-05T09:00:00Z")


async def test_tenants_are_isolated_even_with_the_same_module_id(backend: Harness) -> None:
    acme = await backend.register("0 9 * * *", tenant="acme")
    await backend.register("5m", tenant="zeta")
    await backend.register(tenant="zeta", version=2)  # zeta drops its schedules
    await backend.settle(T0)
    assert await backend.schedules.list("acme") == acme
    assert await backend.schedules.list("zeta") == []
    assert await backend.schedules.next_fire(acme[0]) == at("2026-01-05T09:00:00Z")
    zeta = ScheduleEntry(HandlerRef("zeta", "https://acme.test/cron", 1, 0), "0 9 * * *")
    assert await backend.schedules.next_fire(zeta) is None


async def test_an_unchanged_text_keeps_its_cadence_and_a_changed_one_starts_from_now(backend: Harness) -> None:
    await backend.register("0 9 * * *", "7m", "0 12 * * *", version=1)
    await backend.settle(at("2026-01-05T08:49:30Z"))  # 7 minutes from the epoch: slots at 08:53, 09:00, ...
    cron, interval, changed = await backend.register("0 9 * * *", "7m", "30 12 * * *", version=2)
    await backend.settle(at("2026-01-05T08:52:00Z"))
    assert await backend.schedules.next_fire(cron) == at("2026-01-05T09:00:00Z")
    assert await backend.schedules.next_fire(interval) == at("2026-01-05T08:53:00Z")
    assert await backend.schedules.next_fire(changed) == at("2026-01-05T12:30:00Z")
    assert [e.handler.version for e in await backend.schedules.list("acme")] == [2, 2, 2]


async def test_a_handler_index_listed_twice_is_refused_and_the_old_set_stays(backend: Harness) -> None:
    old = await backend.register("0 9 * * *")
    mod = module("https://acme.test/cron", 2)
    twice = [ScheduleEntry(HandlerRef("acme", mod.id, 2, 0), text) for text in ("5m", "1h")]
    with pytest.raises(StoreError):
        await backend.schedules.sync(mod, twice)
    assert await backend.schedules.list("acme") == old


async def test_is_live_names_exactly_the_live_entry_and_nothing_a_re_registration_replaced(backend: Harness) -> None:
    harness = backend
    first, dropped = await harness.register("0 9 * * *", "15m")
    assert await harness.schedules.is_live(first) and await harness.schedules.is_live(dropped)
    [kept] = await harness.register("0 9 * * *", version=2)
    assert await harness.schedules.is_live(kept)
    assert not await harness.schedules.is_live(first)  # the old version's fire, in flight since
    assert not await harness.schedules.is_live(dropped)  # an index no longer declared
    changed = ScheduleEntry(kept.handler, "0 10 * * *")
    assert not await harness.schedules.is_live(changed)  # the same handler with other text
    elsewhere = ScheduleEntry(HandlerRef("globex", kept.handler.module_id, 2, 0), "0 9 * * *")
    assert not await harness.schedules.is_live(elsewhere)  # another tenant's same-named module
