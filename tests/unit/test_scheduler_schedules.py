"""SchedulerSchedules under moto: the Scheduler schedules a registration makes, their names, reconciling
(re-registration, drift, failures) and the liveness check of fires."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from mcpdo.adapters.dynamodb_table import DynamoTable
from mcpdo.adapters.scheduler_schedules import (
    SCHEDULED_TIME,
    SchedulerSchedules,
    fire_from_input,
    schedule_input,
    schedule_name,
    schedule_name_prefix,
)
from mcpdo.errors import InputError, LimitExceeded, StoreError
from mcpdo.ports import HandlerRef, ScheduleEntry
from mcpdo.schedules import InvalidSchedule, parse_schedule

from tests.contract.events_backends import module
from tests.support.aws import REGION

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 5, 8, 59, 30, tzinfo=UTC)
TARGET_ARN = "arn:aws:lambda:us-east-1:123456789012:function:mcpdo-schedules"
ROLE_ARN = "arn:aws:iam::123456789012:role/mcpdo-scheduler"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:mcpdo-schedules-dlq"
MODULE = "https://acme.test/cron"
NAME = re.compile(r"[0-9a-zA-Z_.-]{1,64}")
WRITES = ("create_schedule", "update_schedule", "delete_schedule")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Scheduler:
    """The real (moto) client, with calls counted and failures injected per operation."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[str] = []
        self.failures: dict[str, list[str]] = {}  # operation -> error codes to raise, one per call
        self.stale_listing = False

    def fail(self, operation: str, *codes: str) -> None:
        self.failures.setdefault(operation, []).extend(codes)

    def __getattr__(self, operation: str) -> Any:
        method = getattr(self.client, operation)

        def call(**arguments: Any) -> Any:
            self.calls.append(operation)
            pending = self.failures.get(operation)
            if pending:
                code = pending.pop(0)
                error = {"Error": {"Code": code, "Message": "secret-key=testing boom"}}
                raise ClientError(error, operation)  # type: ignore[arg-type]
            if operation == "list_schedules" and self.stale_listing:
                return {"Schedules": []}
            return method(**arguments)

        return call

    def writes(self) -> list[str]:
        return [call for call in self.calls if call in WRITES]


@dataclass
class Setup:
    adapter: SchedulerSchedules
    scheduler: Scheduler
    group: str
    clock: list[datetime] = field(default_factory=lambda: [T0])

    def schedule(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.scheduler.client.get_schedule(GroupName=self.group, Name=name)
        return found

    def names(self) -> set[str]:
        listed = self.scheduler.client.list_schedules(GroupName=self.group, MaxResults=100)
        return {summary["Name"] for summary in listed["Schedules"]}

    async def register(self, *texts: str, version: int = 1, tenant: str = "acme", module_id: str = MODULE) -> None:
        mod = module(module_id, version, tenant=tenant)
        entries = [ScheduleEntry(HandlerRef(tenant, module_id, version, i), text) for i, text in enumerate(texts)]
        await self.adapter.sync(mod, entries)


@pytest.fixture
async def setup(state_table: str, anyio_backend: str) -> AsyncIterator[Setup]:
    client = boto3.client("scheduler", region_name=REGION)
    group = f"mcpdo-{uuid.uuid4().hex[:12]}"
    client.create_schedule_group(Name=group)
    scheduler = Scheduler(client)
    clock = [T0]
    adapter = SchedulerSchedules(
        DynamoTable(boto3.client("dynamodb", region_name=REGION), state_table, what="state table"),
        scheduler,  # type: ignore[arg-type]
        group=group,
        target_arn=TARGET_ARN,
        role_arn=ROLE_ARN,
        dead_letter_arn=DLQ_ARN,
        clock=lambda: clock[0],
    )
    yield Setup(adapter, scheduler, group, clock)
    await adapter.close()


def name(index: int, tenant: str = "acme", module_id: str = MODULE) -> str:
    return schedule_name(tenant, module_id, index)


def fire_input(version: int, index: int, text: str, tenant: str = "acme") -> dict[str, Any]:
    return {
        "tenant": tenant,
        "moduleId": MODULE,
        "version": version,
        "index": index,
        "schedule": text,
        "scheduledTime": SCHEDULED_TIME,
    }


# --- what a registration creates -------------------------------------------------------------------------


async def test_registering_creates_one_schedule_per_every_with_the_full_definition(setup: Setup) -> None:
    await setup.register("TZ=Europe/Paris 0 9 * * 1-5", "15m")
    assert setup.names() == {name(0), name(1)}
    cron, rate = setup.schedule(name(0)), setup.schedule(name(1))
    assert (cron["ScheduleExpression"], cron["ScheduleExpressionTimezone"]) == (
        "cron(0 9 ? * MON-FRI *)",
        "Europe/Paris",
    )
    assert (rate["ScheduleExpression"], rate["ScheduleExpressionTimezone"]) == ("rate(15 minutes)", "UTC")
    assert rate["StartDate"] == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # the next slot on the epoch grid
    assert cron.get("StartDate") is None
    for index, (schedule, text) in enumerate([(cron, "TZ=Europe/Paris 0 9 * * 1-5"), (rate, "15m")]):
        assert schedule["GroupName"] == setup.group
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        assert schedule["State"] == "ENABLED"
        target = schedule["Target"]
        assert target["Arn"] == TARGET_ARN and target["RoleArn"] == ROLE_ARN
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}
        assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}
        assert json.loads(target["Input"]) == fire_input(1, index, text)
        assert '"scheduledTime":"<aws.scheduler.scheduled-time>"' in target["Input"]


async def test_a_module_without_every_creates_nothing(setup: Setup) -> None:
    await setup.register()
    assert setup.names() == set()
    assert setup.scheduler.writes() == []


async def test_an_invalid_schedule_is_refused_before_anything_is_written(setup: Setup) -> None:
    with pytest.raises(InvalidSchedule):
        await setup.register("5m", "0 9 1 * MON")
    assert setup.names() == set() and await setup.adapter.list("acme") == []


# --- names ------------------------------------------------------------------------------------------------


def test_names_are_readable_and_end_with_the_handler_index() -> None:
    assert re.fullmatch(r"acme-acme-test-cron\.[0-9a-f]{20}\.3", schedule_name("acme", MODULE, 3))
    assert schedule_name("acme", MODULE, 3).startswith(schedule_name_prefix("acme", MODULE))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a", "b-c"), ("a-b", "c")),
        (("a.b", "c"), ("a", "b.c")),
        (("acme", "x/y"), ("acme", "x?y")),
        (("ACME", MODULE), ("acme", MODULE)),
        (("t" * 500, "m"), ("t" * 499, "tm")),
    ],
)
def test_texts_that_read_alike_get_distinct_names(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert schedule_name(*first, 0) != schedule_name(*second, 0)
    assert not schedule_name(*second, 0).startswith(schedule_name_prefix(*first))


hostile = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)


@given(tenant=hostile, module_id=hostile, index=st.integers(0, 10**6))
def test_every_name_fits_scheduler_rules(tenant: str, module_id: str, index: int) -> None:
    built = schedule_name(tenant, module_id, index)
    assert NAME.fullmatch(built), built
    assert built.startswith(schedule_name_prefix(tenant, module_id)) and built.endswith(f".{index}")


@given(a=st.tuples(hostile, hostile), b=st.tuples(hostile, hostile), index=st.integers(0, 1000))
def test_distinct_modules_never_share_a_name_or_a_prefix(a: tuple[str, str], b: tuple[str, str], index: int) -> None:
    if a != b:
        assert schedule_name(*a, index) != schedule_name(*b, index)
        assert not schedule_name(*b, index).startswith(schedule_name_prefix(*a))


def test_an_index_too_large_for_a_name_is_refused() -> None:
    with pytest.raises(InputError, match="out of range"):
        schedule_name("acme", MODULE, 10**12)


async def test_tenants_with_the_same_module_id_get_their_own_schedules(setup: Setup) -> None:
    await setup.register("5m", tenant="acme")
    await setup.register("1h", tenant="acme.evil")
    await setup.register(tenant="acme.evil", version=2)
    assert setup.names() == {name(0, "acme")}


# --- re-registering and reconciling ---------------------------------------------------------------------


async def test_re_registering_deletes_removed_schedules_and_updates_changed_ones(setup: Setup) -> None:
    await setup.register("0 9 * * *", "5m", "hourly", version=1)
    await setup.register("0 9 * * *", "TZ=America/New_York 30 8 * * MON", version=2)
    assert setup.names() == {name(0), name(1)}
    kept, changed = setup.schedule(name(0)), setup.schedule(name(1))
    assert kept["ScheduleExpression"] == "cron(0 9 * * ? *)"
    assert json.loads(kept["Target"]["Input"])["version"] == 2
    assert (changed["ScheduleExpression"], changed["ScheduleExpressionTimezone"]) == (
        "cron(30 8 ? * MON *)",
        "America/New_York",
    )
    assert changed.get("StartDate") is None  # it was a rate(): an update replaces the whole definition
    assert json.loads(changed["Target"]["Input"]) == fire_input(2, 1, "TZ=America/New_York 30 8 * * MON")


async def test_syncing_the_same_set_again_writes_nothing(setup: Setup) -> None:
    await setup.register("0 9 * * *", "5m")
    setup.scheduler.calls.clear()
    setup.clock[0] = T0 + timedelta(hours=5)  # a rate's StartDate from then is later, on the same grid
    await setup.register("0 9 * * *", "5m")
    assert setup.scheduler.writes() == []


async def test_drift_behind_its_back_is_repaired_by_the_next_sync(setup: Setup) -> None:
    await setup.register("0 9 * * *", "5m", "hourly")
    client = setup.scheduler.client
    client.delete_schedule(GroupName=setup.group, Name=name(0))
    drifted = {k: v for k, v in setup.schedule(name(1)).items() if k in ("FlexibleTimeWindow", "Target")}
    client.update_schedule(GroupName=setup.group, Name=name(1), ScheduleExpression="rate(1 day)", **drifted)
    client.create_schedule(GroupName=setup.group, Name=name(7), ScheduleExpression="rate(1 hour)", **drifted)
    setup.scheduler.calls.clear()
    await setup.register("0 9 * * *", "5m", "hourly")
    assert setup.names() == {name(0), name(1), name(2)}
    assert setup.schedule(name(0))["ScheduleExpression"] == "cron(0 9 * * ? *)"
    assert setup.schedule(name(1))["ScheduleExpression"] == "rate(5 minutes)"
    assert sorted(setup.scheduler.writes()) == ["create_schedule", "delete_schedule", "update_schedule"]


async def test_schedules_of_other_modules_in_the_group_are_left_alone(setup: Setup) -> None:
    await setup.register("5m", module_id="https://acme.test/other")
    await setup.register("0 9 * * *")
    await setup.register(version=2)
    assert setup.names() == {name(0, module_id="https://acme.test/other")}


async def test_a_failed_reconcile_keeps_the_new_set_live_and_the_next_sync_completes_it(setup: Setup) -> None:
    await setup.register("0 9 * * *")
    setup.scheduler.fail("create_schedule", "ThrottlingException")
    with pytest.raises(StoreError) as caught:
        await setup.register("0 9 * * *", "5m", version=2)
    assert "'5m'" in caught.value.text and "ThrottlingException" in caught.value.text
    assert "testing" not in caught.value.text and "boom" not in caught.value.text
    assert [e.handler.version for e in await setup.adapter.list("acme")] == [2, 2]  # the set is live
    assert json.loads(setup.schedule(name(0))["Target"]["Input"])["version"] == 2  # the other call went through
    await setup.register("0 9 * * *", "5m", version=2)
    assert setup.names() == {name(0), name(1)}


async def test_an_entry_scheduler_refuses_is_an_input_error_naming_it(setup: Setup) -> None:
    setup.scheduler.fail("create_schedule", "ValidationException")
    with pytest.raises(InputError, match=r"refused the schedule '5m' of handler https://acme.test/cron#0"):
        await setup.register("5m")


async def test_a_full_quota_is_a_limit(setup: Setup) -> None:
    setup.scheduler.fail("create_schedule", "ServiceQuotaExceededException")
    with pytest.raises(LimitExceeded, match="quota"):
        await setup.register("5m")


async def test_a_schedule_made_since_the_listing_is_taken_over(setup: Setup) -> None:
    await setup.register("0 9 * * *")
    setup.scheduler.stale_listing = True  # the listing misses it: create meets a conflict, then updates
    await setup.register("0 10 * * *", version=2)
    assert setup.schedule(name(0))["ScheduleExpression"] == "cron(0 10 * * ? *)"
    assert setup.scheduler.writes()[-2:] == ["create_schedule", "update_schedule"]


async def test_a_schedule_deleted_since_the_listing_is_made_again(setup: Setup) -> None:
    await setup.register("0 9 * * *")
    setup.scheduler.fail("get_schedule", "ResourceNotFoundException")
    await setup.register("0 10 * * *", version=2)
    assert setup.schedule(name(0))["ScheduleExpression"] == "cron(0 10 * * ? *)"


async def test_a_missing_group_is_a_store_error_naming_it(setup: Setup) -> None:
    setup.scheduler.fail("list_schedules", "ResourceNotFoundException")
    with pytest.raises(StoreError, match=setup.group):
        await setup.register("5m")


# --- which fires are live ---------------------------------------------------------------------------------


async def test_live_entry_is_the_exact_live_entry_only(setup: Setup) -> None:
    await setup.register("0 9 * * *", "5m", "hourly", version=1)
    await setup.register("0 9 * * *", "10m", version=2)
    live = setup.adapter.live_entry
    assert await live("acme", MODULE, 0, 2, "0 9 * * *") == ScheduleEntry(HandlerRef("acme", MODULE, 2, 0), "0 9 * * *")
    assert await live("acme", MODULE, 0, 1, "0 9 * * *") is None  # the old version's fire, in flight
    assert await live("acme", MODULE, 1, 2, "5m") is None  # changed text
    assert await live("acme", MODULE, 2, 1, "hourly") is None  # removed index
    assert await live("zeta", MODULE, 0, 2, "0 9 * * *") is None  # another tenant
    await setup.register(version=3)
    assert await live("acme", MODULE, 0, 2, "0 9 * * *") is None


async def test_a_fire_input_reads_back_as_its_entry_and_slot(setup: Setup) -> None:
    await setup.register("TZ=Europe/Paris 0 9 * * 1-5")
    sent = setup.schedule(name(0))["Target"]["Input"].replace(SCHEDULED_TIME, "2026-01-06T08:00:00Z")
    entry, slot = fire_from_input(json.loads(sent))
    assert entry == ScheduleEntry(HandlerRef("acme", MODULE, 1, 0), "TZ=Europe/Paris 0 9 * * 1-5")
    assert slot == datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    assert await setup.adapter.live_entry(entry.handler.tenant, MODULE, 0, 1, entry.schedule) == entry
    assert fire_from_input(sent) == (entry, slot)


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        [1, 2],
        {**fire_input(1, 0, "5m"), "scheduledTime": SCHEDULED_TIME},  # the placeholder was not filled in
        {**fire_input(1, 0, "5m"), "version": True},
        {**fire_input(1, 0, "5m"), "index": -1},
        {k: v for k, v in fire_input(1, 0, "5m").items() if k != "tenant"},
    ],
)
def test_an_unreadable_fire_input_is_an_input_error(payload: Any) -> None:
    with pytest.raises(InputError):
        fire_from_input(payload)


def test_the_input_carries_unicode_and_hostile_texts_unchanged() -> None:
    entry = ScheduleEntry(HandlerRef('t"\n\u00e9', "m}{#%", 7, 2), "TZ=Asia/Tokyo 0 9 * * *")
    payload = json.loads(schedule_input(entry).replace(SCHEDULED_TIME, "2026-01-01T00:00:00Z"))
    assert fire_from_input(payload)[0] == entry


@pytest.mark.parametrize("zone", ["localtime", "posix/Europe/Paris", "right/UTC", "Factory", "posixrules"])
def test_zone_files_that_are_not_iana_zones_are_refused_before_scheduler_sees_them(zone: str) -> None:
    with pytest.raises(InvalidSchedule, match="unknown time zone"):
        parse_schedule(f"TZ={zone} 0 9 * * *")
