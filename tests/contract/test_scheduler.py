"""The CronTable contract (live schedules and their fire times): every backend in
events_backends.BACKEND_FACTORIES must pass all of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mcpdo.ports import DueSchedule

from tests.contract.events_backends import (  # noqa: F401  (fixtures)
    EventsBackend,
    backend_factory_fixture,
    backend_fixture,
    clock_fixture,
    module,
    schedule,
)

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 5, 8, 59, 30, tzinfo=UTC)  # a Monday


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def register(
    backend: EventsBackend,
    *texts: str,
    version: int = 1,
    tenant: str = "acme",
    module_id: str = "https://acme.test/cron",
) -> None:
    mod = module(module_id, version, tenant=tenant)
    await backend.register(mod, [], [schedule(mod, index, text) for index, text in enumerate(texts)])


async def fire_all(backend: EventsBackend, now: datetime) -> list[DueSchedule]:
    """What a cron loop does at `now`: take what is due and mark each fired."""
    due = await backend.schedules.due(now)
    for item in due:
        await backend.schedules.mark_fired(item.entry, item.scheduled_time)
    return due


async def test_a_new_schedule_is_not_due_before_its_first_slot(backend: EventsBackend) -> None:
    await register(backend, "0 9 * * *")
    assert await backend.schedules.due(T0) == []
    assert await backend.schedules.due(T0 + timedelta(seconds=29)) == []


async def test_a_schedule_is_due_at_its_slot_once_then_at_the_next_slot(backend: EventsBackend) -> None:
    await register(backend, "0 9 * * *")
    await backend.schedules.due(T0)
    [due] = await fire_all(backend, at("2026-01-05T09:00:00Z"))
    assert due.scheduled_time == at("2026-01-05T09:00:00Z")
    assert due.entry.schedule == "0 9 * * *" and due.entry.handler.module_id == "https://acme.test/cron"
    assert await backend.schedules.due(at("2026-01-05T09:00:00.900Z")) == []
    assert await backend.schedules.due(at("2026-01-06T08:59:59Z")) == []
    [nxt] = await fire_all(backend, at("2026-01-06T09:00:00.200Z"))
    assert nxt.scheduled_time == at("2026-01-06T09:00:00Z")


async def test_a_due_schedule_stays_due_until_marked_fired(backend: EventsBackend) -> None:
    await register(backend, "5m")
    await backend.schedules.due(T0)
    slot = at("2026-01-05T09:00:00Z")
    assert [d.scheduled_time for d in await backend.schedules.due(slot)] == [slot]
    assert [d.scheduled_time for d in await backend.schedules.due(slot + timedelta(seconds=1))] == [slot]


async def test_after_downtime_a_schedule_that_missed_several_slots_fires_once_for_the_latest(
    backend: EventsBackend,
) -> None:
    await register(backend, "5m", "hourly")
    await backend.schedules.due(T0)
    later = at("2026-01-05T12:07:00Z")
    due = await fire_all(backend, later)
    assert sorted((d.entry.schedule, d.scheduled_time) for d in due) == [
        ("5m", at("2026-01-05T12:05:00Z")),
        ("hourly", at("2026-01-05T12:00:00Z")),
    ]
    assert await backend.schedules.due(later) == []
    [nxt] = await fire_all(backend, at("2026-01-05T12:10:00Z"))
    assert (nxt.entry.schedule, nxt.scheduled_time) == ("5m", at("2026-01-05T12:10:00Z"))


async def test_schedules_follow_their_time_zone(backend: EventsBackend) -> None:
    await register(backend, "TZ=Europe/Paris 0 9 * * MON")
    await backend.schedules.due(T0 - timedelta(hours=2))
    assert await backend.schedules.due(at("2026-01-05T07:59:59Z")) == []
    [due] = await backend.schedules.due(at("2026-01-05T08:00:00Z"))
    assert due.scheduled_time == at("2026-01-05T08:00:00Z")  # 09:00 in Paris (UTC+1 in winter)


async def test_a_removed_schedule_stops_firing(backend: EventsBackend) -> None:
    await register(backend, "5m", version=1)
    await backend.schedules.due(T0)
    await register(backend, version=2)
    assert await backend.schedules.due(at("2026-01-05T10:00:00Z")) == []


async def test_a_changed_schedule_starts_from_the_time_it_is_first_seen(backend: EventsBackend) -> None:
    await register(backend, "hourly", version=1)
    await backend.schedules.due(T0)
    await register(backend, "0 */6 * * *", version=2)
    await backend.schedules.due(at("2026-01-05T09:30:00Z"))
    assert await backend.schedules.due(at("2026-01-05T10:00:00Z")) == []
    [due] = await backend.schedules.due(at("2026-01-05T12:00:00Z"))
    assert due.entry.schedule == "0 */6 * * *" and due.entry.handler.version == 2


async def test_an_unchanged_schedule_keeps_its_cadence_and_runs_the_new_version(backend: EventsBackend) -> None:
    await register(backend, "5m", version=1)
    await backend.schedules.due(T0)
    await register(backend, "5m", version=2)
    [due] = await fire_all(backend, at("2026-01-05T09:00:00Z"))
    assert due.entry.handler.version == 2 and due.scheduled_time == at("2026-01-05T09:00:00Z")


async def test_schedules_of_every_tenant_fire(backend: EventsBackend) -> None:
    await register(backend, "5m", tenant="acme", module_id="https://acme.test/a")
    await register(backend, "5m", tenant="globex", module_id="https://globex.test/g")
    await backend.schedules.due(T0)
    due = await backend.schedules.due(at("2026-01-05T09:00:00Z"))
    assert sorted(d.entry.handler.tenant for d in due) == ["acme", "globex"]


async def test_marking_an_older_slot_never_moves_the_next_fire_back(backend: EventsBackend) -> None:
    await register(backend, "5m")
    await backend.schedules.due(T0)
    [due] = await fire_all(backend, at("2026-01-05T09:10:00Z"))
    await backend.schedules.mark_fired(due.entry, at("2026-01-05T09:00:00Z"))
    assert await backend.schedules.due(at("2026-01-05T09:14:00Z")) == []
