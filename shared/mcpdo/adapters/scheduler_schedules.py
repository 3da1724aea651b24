"""ScheduleSync on EventBridge Scheduler: one schedule per `every()` registration, the live sets in DynamoDB.

The truth is the state table; Scheduler resources follow it. Registering a module writes its live set in one
conditional write (callers see the old set or the new one, never a mix), then reconciles the module's
schedules in the stack's schedule group with that set: missing ones created, differing ones updated, extra
ones deleted. A Scheduler failure leaves the new set live in the table and the call failing; the next sync of
the module (with the same set or another) reconciles again from scratch, so it repairs whatever was left
half done, and any drift made behind our back. Reconciling reads the set back from the table (not the
caller's list) and reads it again when done: when a racing sync changed it meanwhile, it reconciles again,
so the last sync to finish leaves Scheduler on the latest set.

Key layout (`<tenant>` has `%` and `#` percent-encoded, so the first `#` after it ends it):

- `pk = "SCHEDSET#<tenant>#<module id>"`, `sk = "SET"`: the module's live set, JSON `[[version, index,
  schedule text], ...]` by handler index, the module `version` it came from and a `revision` counter. A
  write is conditional on the revision read (two racing syncs: one commits, the other reads again). An
  empty set stays as an item without index keys, so revisions never restart.
- On a non-empty set only: `gsi1pk = "SCHEDS#<tenant>"`, `gsi1sk = "M#<module id>"` (`list(tenant)`), and
  `gsi2pk = "SCHEDS"`, `gsi2sk = "T#<tenant>#M#<module id>"` (`list()` over every tenant: one partition, read
  by operators, not by requests). Index reads are eventually consistent; `live_entry` and `next_fire` read
  the item itself, strongly consistent.

Schedule names: Scheduler allows 64 characters of `[0-9a-zA-Z-_.]`; tenants and module ids are any text.
A name is `<readable>.<digest>.<handler index>`: `<readable>` is at most 31 characters, the tenant's first 10
and the module id without its URL scheme, every run of other characters turned into `-` (for people reading
the console: `acme-acme-test-reports`), `<digest>` the
first 20 hex digits of SHA-256 over the JSON `[tenant, module id]` (what makes it unique). `<readable>` has no
`.`, so `<readable>.<digest>.` is a prefix no other module's names start with: reconciling lists the
module's schedules by that prefix.

Each schedule: the cron converted by `Schedule.to_eventbridge` (6 fields, `?` in one day field) with its
zone as `ScheduleExpressionTimezone`, or `rate(...)` with `StartDate` on the epoch-aligned grid (so an
update never moves the cadence); `FlexibleTimeWindow` OFF; ENABLED; the schedules function as target, run
as the Scheduler role, with `Input` (see `schedule_input`), a retry policy and the dead-letter queue.

A fire names the exact entry (version, handler index, text): `live_entry` tells whether it is still live,
so a fire of a removed or superseded schedule already in flight is dropped by the schedules function.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mcpdo.adapters.dynamodb_table import ConditionFailed, DynamoTable, Item, key_part, text_value
from mcpdo.errors import InputError, LimitExceeded, McpdoError, StoreError
from mcpdo.ports import DueSchedule, HandlerRef, ScheduleEntry, StoredModule
from mcpdo.schedules import EPOCH, Schedule, parse_schedule
from mcpdo.timeparse import from_epoch_ms, parse_iso_ms, utc_now

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient

MAX_NAME_LENGTH = 64
READABLE_LENGTH = 31
DIGEST_LENGTH = 20  # 80 bits: a collision between two modules' names is out of reach
MAX_INDEX = 10**11 - 1  # what fits in the rest of a 64-character name
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"  # filled in by Scheduler at each fire
RETRY_POLICY = {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}
FLEXIBLE_TIME_WINDOW = {"Mode": "OFF"}
_ATTEMPTS = 5  # syncs of one module racing this one; a handful is already unusual
_CONCURRENCY = 8  # Scheduler calls in flight per reconcile (botocore retries throttling)
_SET = "SET"
_REVISION = {"#revision": "revision"}  # spelled through a name: expressions refuse some attribute names
_UNREADABLE = re.compile(r"[^0-9A-Za-z_-]+")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

log = logging.getLogger(__name__)

Row = tuple[int, int, str]  # version, handler index, schedule text: one live entry of the module
Definition = dict[str, Any]  # the arguments of CreateSchedule / UpdateSchedule for one schedule


@dataclass(frozen=True)
class _Wanted:
    """One schedule as the live set wants it: its Scheduler arguments, and the parsed schedule to compare with."""

    schedule: Schedule
    definition: Definition

    @property
    def name(self) -> str:
        name: str = self.definition["Name"]
        return name


class _Exists(Exception):
    """Scheduler's ConflictException: a schedule of that name exists already."""


class _Missing(Exception):
    """Scheduler's ResourceNotFoundException: no such schedule (or no such group)."""


# --- names and inputs -------------------------------------------------------------------------------------


def schedule_name_prefix(tenant: str, module_id: str) -> str:
    """`<readable>.<digest>.`: what every schedule name of the module starts with, and no other's does."""
    module_text = _SCHEME.sub("", module_id)
    readable = f"{_readable(tenant)[:10]}-{_readable(module_text)}".strip("-")[:READABLE_LENGTH] or "m"
    digest = hashlib.sha256(json.dumps([tenant, module_id]).encode()).hexdigest()[:DIGEST_LENGTH]
    return f"{readable}.{digest}."


def schedule_name(tenant: str, module_id: str, index: int) -> str:
    """The Scheduler name of handler `index` of the module: at most 64 of `[0-9a-zA-Z-_.]`."""
    if not 0 <= index <= MAX_INDEX:
        raise InputError(f"Module {module_id}: handler index {index} is out of range for a schedule name")
    return f"{schedule_name_prefix(tenant, module_id)}{index}"


def schedule_input(entry: ScheduleEntry) -> str:
    """The target `Input`: which entry fires, and the slot (a Scheduler placeholder, filled in per fire)."""
    ref = entry.handler
    payload = {
        "tenant": ref.tenant,
        "moduleId": ref.module_id,
        "version": ref.version,
        "index": ref.index,
        "schedule": entry.schedule,
        "scheduledTime": SCHEDULED_TIME,
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class SchedulerFires:
    """ScheduleFires for the Input this adapter gives each schedule (see `fire_from_input`)."""

    def read(self, payload: object) -> DueSchedule:
        entry, slot = fire_from_input(payload)
        return DueSchedule(entry, slot)


def fire_from_input(payload: Any) -> tuple[ScheduleEntry, datetime]:
    """The entry and slot of one fire, from the Input the schedules function receives (a dict, or its JSON
    text); InputError when it is not one of ours (a retry cannot make it readable)."""
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise InputError("A schedule fire's input is not JSON") from None
    if not isinstance(payload, dict):
        raise InputError("A schedule fire's input is not a JSON object")
    tenant, module_id, text = (_text_field(payload, name) for name in ("tenant", "moduleId", "schedule"))
    version, index = _int_field(payload, "version", 1), _int_field(payload, "index", 0)
    slot = payload.get("scheduledTime")
    slot_ms = parse_iso_ms(slot) if isinstance(slot, str) else None
    if slot_ms is None:
        raise InputError("A schedule fire's input has no readable 'scheduledTime'")
    return ScheduleEntry(HandlerRef(tenant, module_id, version, index), text), from_epoch_ms(slot_ms)


def _text_field(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str):
        raise InputError(f"A schedule fire's input has no text '{name}'")
    return value


def _int_field(payload: dict[str, Any], name: str, low: int) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InputError(f"A schedule fire's input has no valid '{name}'")
    return value


def _readable(text: str) -> str:
    return _UNREADABLE.sub("-", text).strip("-")


# --- the adapter ----------------------------------------------------------------------------------------


class SchedulerSchedules:
    """ScheduleSync on the state table and EventBridge Scheduler (not a CronTable: Scheduler pushes fires).

    `group` is the stack's schedule group, `target_arn` the schedules function, `role_arn` the role Scheduler
    assumes to invoke it, `dead_letter_arn` the queue for fires it could not deliver. The table is shared with
    the other AWS adapters; the Scheduler client is this adapter's.
    """

    def __init__(
        self,
        table: DynamoTable,
        scheduler_client: EventBridgeSchedulerClient,
        *,
        group: str,
        target_arn: str,
        role_arn: str,
        dead_letter_arn: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._table = table
        self._client = scheduler_client
        self._group = group
        self._target = {"Arn": target_arn, "RoleArn": role_arn, "DeadLetterConfig": {"Arn": dead_letter_arn}}
        self._clock = clock

    async def sync(self, module: StoredModule, schedules: builtins.list[ScheduleEntry]) -> None:
        """Make `schedules` the live set of `module` (one conditional write), then reconcile its Scheduler
        schedules with the set the table holds. Running it again repairs a reconcile that failed."""
        rows = sorted(((e.handler.version, e.handler.index, e.schedule) for e in schedules), key=lambda r: r[1])
        _check_rows(module, rows)
        await self._store_set(module, rows)
        await self._reconcile(module.tenant, module.id)

    async def list(self, tenant: str | None = None) -> builtins.list[ScheduleEntry]:
        """The live schedules of `tenant` (of every tenant when None), by tenant, module id and handler index."""
        if tenant is None:
            index, key, value = "gsi2", "gsi2pk", "SCHEDS"
        else:
            index, key, value = "gsi1", "gsi1pk", f"SCHEDS#{tenant}"
        items = await self._table.query_all(
            IndexName=index,
            KeyConditionExpression=f"{key} = :partition",
            ExpressionAttributeValues={":partition": text_value(value)},
        )
        entries = (entry for item in items for entry in _set_entries(item))
        return sorted(entries, key=lambda e: (e.handler.tenant, e.handler.module_id, e.handler.index))

    async def next_fire(self, entry: ScheduleEntry) -> datetime | None:
        """The next slot of `entry` after now when its handler index holds that text live (any version, as the
        local cron tables do: the cadence belongs to the text); None otherwise."""
        ref = entry.handler
        row = _row_at(await self._read(ref.tenant, ref.module_id), ref.index)
        if row is None or row[2] != entry.schedule:
            return None
        parsed = _parsed(entry.schedule)
        return None if parsed is None else parsed.next_after(self._clock())

    async def live_entry(
        self, tenant: str, module_id: str, index: int, version: int, schedule_text: str
    ) -> ScheduleEntry | None:
        """That exact entry (version, handler index, text) when it is live, else None: a fire of a schedule
        removed or replaced since it left Scheduler is to be dropped. Strongly consistent."""
        row = _row_at(await self._read(tenant, module_id), index)
        if row is None or row[0] != version or row[2] != schedule_text:
            return None
        return ScheduleEntry(HandlerRef(tenant, module_id, version, index), schedule_text)

    async def is_live(self, entry: ScheduleEntry) -> bool:
        """Whether exactly `entry` is live (see `live_entry`)."""
        ref = entry.handler
        return await self.live_entry(ref.tenant, ref.module_id, ref.index, ref.version, entry.schedule) is not None

    async def close(self) -> None:
        """Release both clients (closing the shared table again is harmless)."""
        await self._table.close()
        self._client.close()

    # -- the live set ----------------------------------------------------------------------------------

    async def _read(self, tenant: str, module_id: str) -> Item | None:
        found = await self._table.call("get_item", Key=_set_key(tenant, module_id), ConsistentRead=True)
        item: Item | None = found.get("Item")
        return item

    async def _store_set(self, module: StoredModule, rows: builtins.list[Row]) -> None:
        """Write `rows` as the live set unless it is that already; retried when another sync commits first."""
        for _ in range(_ATTEMPTS):
            live = await self._read(module.tenant, module.id)
            if (live is None and not rows) or (live is not None and _rows(live) == rows):
                return
            try:
                await self._table.call("put_item", **_set_write(module, live, rows))
                return
            except ConditionFailed:
                continue
        raise StoreError(f"The schedule table operation failed: module {module.id} kept changing during a sync")

    # -- reconciling Scheduler with it -----------------------------------------------------------------

    async def _reconcile(self, tenant: str, module_id: str) -> None:
        """Make the module's schedules match the stored set; again when a racing sync changed the set meanwhile
        (the last one to finish then leaves the latest set in Scheduler)."""
        live = await self._read(tenant, module_id)
        for _ in range(_ATTEMPTS):
            await self._apply(tenant, module_id, [] if live is None else _rows(live))
            again = await self._read(tenant, module_id)
            if _revision(again) == _revision(live):
                return
            live = again
        raise StoreError(f"The scheduler operation failed: module {module_id} kept changing during a sync")

    async def _apply(self, tenant: str, module_id: str, rows: builtins.list[Row]) -> None:
        """Create, update and delete so that the group holds exactly `rows` for the module."""
        now = self._clock()
        wanted = [self._wanted(ScheduleEntry(HandlerRef(tenant, module_id, v, i), text), now) for v, i, text in rows]
        present = await self._names(schedule_name_prefix(tenant, module_id))
        work: builtins.list[Awaitable[None]] = [self._ensure(w, listed=w.name in present) for w in wanted]
        work.extend(self._delete(name) for name in sorted(present - {w.name for w in wanted}))
        await _all(work)

    def _wanted(self, entry: ScheduleEntry, now: datetime) -> _Wanted:
        """The CreateSchedule / UpdateSchedule arguments of one entry (UpdateSchedule replaces the whole
        definition, so both take the same)."""
        ref = entry.handler
        parsed = parse_schedule(entry.schedule)
        expression, zone = parsed.to_eventbridge()
        definition: Definition = {
            "GroupName": self._group,
            "Name": schedule_name(ref.tenant, ref.module_id, ref.index),
            "ScheduleExpression": expression,
            "ScheduleExpressionTimezone": zone,
            "FlexibleTimeWindow": dict(FLEXIBLE_TIME_WINDOW),
            "State": "ENABLED",
            "Target": {**self._target, "Input": schedule_input(entry), "RetryPolicy": dict(RETRY_POLICY)},
        }
        start = parsed.eventbridge_start(now)
        if start is not None:
            definition["StartDate"] = start
        return _Wanted(parsed, definition)

    async def _ensure(self, wanted: _Wanted, *, listed: bool) -> None:
        """Make the schedule hold what is wanted: left alone when it does, updated or created otherwise."""
        current = await self._get(wanted.name) if listed else None
        if current is None:
            await self._create(wanted.definition)
        elif not _same(current, wanted):
            await self._update(wanted.definition)

    async def _create(self, definition: Definition) -> None:
        try:
            await self._call("create_schedule", definition)
        except _Exists:
            await self._call_known("update_schedule", definition)  # made since we looked: take it over
        except _Missing:
            raise self._no_group(definition) from None

    async def _update(self, definition: Definition) -> None:
        try:
            await self._call("update_schedule", definition)
        except _Missing:
            await self._call_known("create_schedule", definition)  # deleted since we looked: make it again

    async def _get(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("get_schedule", {"GroupName": self._group, "Name": name})
        except _Missing:
            return None

    async def _delete(self, name: str) -> None:
        try:
            await self._call("delete_schedule", {"GroupName": self._group, "Name": name})
        except _Missing:
            return  # gone already: what we wanted

    async def _names(self, prefix: str) -> set[str]:
        """The names of the group's schedules starting with `prefix`, every page."""
        names: set[str] = set()
        arguments: dict[str, Any] = {"GroupName": self._group, "NamePrefix": prefix}
        while True:
            try:
                page = await self._call("list_schedules", arguments)
            except _Missing:
                raise StoreError(f"The scheduler has no schedule group {self._group}") from None
            names.update(summary["Name"] for summary in page.get("Schedules", []))
            if not page.get("NextToken"):
                return names
            arguments = {**arguments, "NextToken": page["NextToken"]}

    async def _call_known(self, operation: str, definition: Definition) -> None:
        """A create or update whose expected outcome was just contradicted: a second surprise is an error."""
        try:
            await self._call(operation, definition)
        except (_Exists, _Missing):
            raise StoreError(
                f"The scheduler operation {operation} failed for {_describe(definition)}: it kept changing"
            ) from None

    async def _call(self, operation: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """`client.<operation>(**arguments)` in a worker thread, with Scheduler's errors made ours."""
        method = getattr(self._client, operation)
        try:
            result: dict[str, Any] = await asyncio.to_thread(method, **arguments)
        except ClientError as exc:
            raise _scheduler_error(operation, arguments, exc) from exc
        except BotoCoreError as exc:
            # Endpoint URLs and connection details stay in the server's log.
            log.warning("scheduler %s unavailable: %s", operation, exc)
            raise StoreError(f"The scheduler is unavailable ({operation})") from exc
        return result

    def _no_group(self, definition: Definition) -> StoreError:
        return StoreError(f"The scheduler cannot create {_describe(definition)}: no schedule group {self._group}")


# --- helpers --------------------------------------------------------------------------------------------


def _scheduler_error(operation: str, arguments: dict[str, Any], exc: ClientError) -> Exception:
    """Scheduler's error as ours: codes only in the text (the message stays in the log)."""
    code = exc.response.get("Error", {}).get("Code", "")
    if code == "ConflictException":
        return _Exists()
    if code == "ResourceNotFoundException":
        return _Missing()
    log.warning("scheduler %s failed: %s", operation, exc)
    what = _describe(arguments)
    if code == "ValidationException":
        return InputError(f"EventBridge Scheduler refused {what} ({operation}: {code})")
    if code == "ServiceQuotaExceededException":
        return LimitExceeded("schedules", f"EventBridge Scheduler refused {what}: its schedule quota is reached")
    return StoreError(f"The scheduler operation {operation} failed for {what}: {code or 'error'}")


def _describe(arguments: dict[str, Any]) -> str:
    """The schedule a call is about: its handler and text (from the Input) and its Scheduler name."""
    name = arguments.get("Name", arguments.get("NamePrefix", "?"))
    try:
        fire = json.loads(arguments["Target"]["Input"])
        return f"the schedule '{fire['schedule']}' of handler {fire['moduleId']}#{fire['index']} (schedule {name})"
    except (KeyError, TypeError, ValueError):
        return f"schedule {name}"


async def _all(work: Iterable[Awaitable[None]]) -> None:
    """Run every call (at most `_CONCURRENCY` at once) to the end, then raise the first failure: one refused
    schedule does not stop the others from being reconciled."""
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def gated(call: Awaitable[None]) -> None:
        async with gate:
            await call

    outcomes = await asyncio.gather(*(gated(call) for call in work), return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    for failure in failures:
        if not isinstance(failure, McpdoError):
            raise failure
    if failures:
        raise failures[0]


def _same(current: dict[str, Any], wanted: _Wanted) -> bool:
    """Whether the schedule as Scheduler holds it is the one wanted (Input compared as JSON)."""
    definition = wanted.definition
    for field in ("ScheduleExpression", "ScheduleExpressionTimezone", "State", "FlexibleTimeWindow"):
        if current.get(field) != definition[field]:
            return False
    if current.get("EndDate") is not None or not _same_target(current.get("Target", {}), definition["Target"]):
        return False
    return _same_start(current.get("StartDate"), wanted)


def _same_target(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    for field in ("Arn", "RoleArn", "RetryPolicy", "DeadLetterConfig"):
        if current.get(field) != wanted[field]:
            return False
    try:
        return bool(json.loads(current.get("Input", "")) == json.loads(wanted["Input"]))
    except ValueError:
        return False


def _same_start(current: datetime | None, wanted: _Wanted) -> bool:
    """A cron has no StartDate. A `rate()` keeps its cadence when its StartDate is on the epoch-aligned grid and
    not after the next slot (the wanted one is always later than the held one: it is the next slot from now)."""
    start: datetime | None = wanted.definition.get("StartDate")
    step = wanted.schedule.interval
    if start is None or step is None or current is None:
        return current is None and start is None
    current = current.astimezone(UTC)
    return (current - EPOCH) % step == step * 0 and current <= start


def _check_rows(module: StoredModule, rows: builtins.list[Row]) -> None:
    """Refuse, before any write, what the table or Scheduler would refuse half way."""
    indexes = [index for _, index, _ in rows]
    if len(set(indexes)) != len(indexes):
        # As the SQL primary key (tenant, module_id, idx) refuses it: nothing changes.
        raise StoreError(f"The schedule table operation failed: a handler index of module {module.id} is listed twice")
    for _, index, text in rows:
        schedule_name(module.tenant, module.id, index)
        parse_schedule(text).to_eventbridge()


def _set_write(module: StoredModule, live: Item | None, rows: builtins.list[Row]) -> Item:
    """The PutItem of the set, conditional on the revision `live` was read at (or on there being none)."""
    if live is None:
        condition: Item = {"ConditionExpression": "attribute_not_exists(pk)"}
    else:
        condition = {
            "ConditionExpression": "#revision = :revision",
            "ExpressionAttributeNames": _REVISION,
            "ExpressionAttributeValues": {":revision": _n(_revision(live))},
        }
    item: Item = {
        **_set_key(module.tenant, module.id),
        "tenant": text_value(module.tenant),
        "module_id": text_value(module.id),
        "version": _n(module.version),
        "revision": _n(_revision(live) + 1),
        "schedules": text_value(json.dumps(rows, separators=(",", ":"), ensure_ascii=False)),
    }
    if rows:  # an empty set stays out of the indexes, so `list` never reads it
        item |= {
            "gsi1pk": text_value(f"SCHEDS#{module.tenant}"),
            "gsi1sk": text_value(f"M#{module.id}"),
            "gsi2pk": text_value("SCHEDS"),
            "gsi2sk": text_value(f"T#{key_part(module.tenant)}#M#{module.id}"),
        }
    return {"Item": item, **condition}


def _set_key(tenant: str, module_id: str) -> Item:
    return {"pk": text_value(f"SCHEDSET#{key_part(tenant)}#{module_id}"), "sk": text_value(_SET)}


def _revision(item: Item | None) -> int:
    return 0 if item is None else int(item["revision"]["N"])


def _rows(item: Item) -> builtins.list[Row]:
    return [(version, index, text) for version, index, text in json.loads(item["schedules"]["S"])]


def _row_at(item: Item | None, index: int) -> Row | None:
    return next((row for row in ([] if item is None else _rows(item)) if row[1] == index), None)


def _set_entries(item: Item) -> builtins.list[ScheduleEntry]:
    tenant, module_id = item["tenant"]["S"], item["module_id"]["S"]
    return [ScheduleEntry(HandlerRef(tenant, module_id, v, i), text) for v, i, text in _rows(item)]


def _parsed(text: str) -> Schedule | None:
    # A schedule the module store accepted always parses; one that does not is never live, never fatal.
    try:
        return parse_schedule(text)
    except InputError:
        return None


def _n(number: int) -> dict[str, str]:
    return {"N": str(number)}
