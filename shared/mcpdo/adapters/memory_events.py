"""In-memory adapters of the event system: module store, live subscriptions, cron table, delivery queue and
event transport.

Real implementations, not stubs: each behaves as its SQLite counterpart does (same checks, same messages,
same orders, same fair claiming) and passes its port's contract suite, so unit tests of the core services
and one-shot processes that keep nothing can run without a database file. Stored values are kept as JSON
text or immutable copies, so a caller mutating what it passed in or got back never changes stored state.
No method awaits anything: on one event loop each call is atomic, as a transaction is in SQLite.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from mcpdo.errors import Conflict, InputError, StoreError
from mcpdo.evaluate import record_json
from mcpdo.events.claims import ClaimVerdict, claim_verdict, interrupted_error, replay_refused
from mcpdo.ids import new_id
from mcpdo.patterns import candidates
from mcpdo.ports import (
    Claim,
    Delivery,
    DeliveryStatus,
    DueSchedule,
    Event,
    HandlerRef,
    ScheduleEntry,
    StoredModule,
    Subscription,
)
from mcpdo.schedules import Schedule, parse_schedule
from mcpdo.stored_modules import check_version, decode, encode
from mcpdo.timeparse import format_iso, from_epoch_ms, now_ms, to_epoch_ms

# --- modules -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ModuleRow:
    """One stored version: its JSON fields as text (the SQL columns), the rest immutable already."""

    module: StoredModule  # owner, exports and metadata emptied: the texts below are the stored values
    owner: str
    exports: str
    metadata: str

    def load(self) -> StoredModule:
        return decode(self.module, self.owner, self.exports, self.metadata)


class MemoryModuleStore:
    """ModuleStore in dicts: every registered version of every module, per tenant."""

    def __init__(self) -> None:
        # tenant -> module id -> version -> row
        self._modules: dict[str, dict[str, dict[int, _ModuleRow]]] = {}

    async def save(self, module: StoredModule) -> None:
        """Store a new version; Conflict when that version or a later one exists."""
        check_version(module.version)
        owner, exports, metadata = encode(module)
        row = _ModuleRow(dataclasses.replace(module, owner={}, exports=(), metadata={}), owner, exports, metadata)
        versions = self._modules.setdefault(module.tenant, {}).setdefault(module.id, {})
        if module.version in versions:
            raise Conflict(f"Module {module.id} version {module.version} already exists")
        latest = max(versions, default=None)
        if latest is not None and module.version < latest:
            raise Conflict(f"Module {module.id} version {module.version} is older than the latest version {latest}")
        versions[module.version] = row

    async def get(self, tenant: str, id: str, version: int | None = None) -> StoredModule | None:
        """One version of a module (the latest when `version` is None), or None."""
        versions = self._versions(tenant, id)
        if version is None:
            version = max(versions, default=None)
        row = None if version is None else versions.get(version)
        return None if row is None else row.load()

    async def next_version(self, tenant: str, id: str) -> int:
        """The version number the next save of this module should carry (1 for a new module)."""
        return max(self._versions(tenant, id), default=0) + 1

    async def list(self, tenant: str) -> builtins.list[StoredModule]:
        """The latest version of every module of `tenant`, by id."""
        modules = self._modules.get(tenant, {})
        return [modules[id][max(modules[id])].load() for id in sorted(modules) if modules[id]]

    async def close(self) -> None:
        """Nothing to release."""

    def _versions(self, tenant: str, id: str) -> dict[int, _ModuleRow]:
        return self._modules.get(tenant, {}).get(id, {})


# --- live subscriptions and schedules -------------------------------------------------------------------


_Live = TypeVar("_Live", Subscription, ScheduleEntry)


def _replace_module(
    live: dict[tuple[str, str], tuple[_Live, ...]], module: StoredModule, rows: builtins.list[_Live], what: str
) -> None:
    """Make `rows` (already keyed to `module`, by handler index) the live ones of `module`, all at once."""
    indexes = [row.handler.index for row in rows]
    if len(set(indexes)) != len(indexes):
        # The SQL primary key (tenant, module_id, idx) refuses this, and the transaction changes nothing.
        raise StoreError(f"The {what} operation failed: a handler index of module {module.id} is listed twice")
    key = (module.tenant, module.id)
    if rows:
        live[key] = tuple(sorted(rows, key=lambda row: row.handler.index))
    else:
        live.pop(key, None)


def _live_handler(module: StoredModule, handler: HandlerRef) -> HandlerRef:
    # Like the SQL rows: the tenant and module are the synced module's, the version and index the entry's.
    return HandlerRef(module.tenant, module.id, handler.version, handler.index)


class MemorySubscriptions:
    """SubscriptionSync in a dict: each module's live subscriptions, replaced whole by `sync`."""

    def __init__(self) -> None:
        # (tenant, module id) -> subscriptions by handler index
        self._live: dict[tuple[str, str], tuple[Subscription, ...]] = {}

    async def sync(self, module: StoredModule, subscriptions: builtins.list[Subscription]) -> None:
        """Replace the live subscriptions of `module` with `subscriptions`, at once."""
        rows = [Subscription(_live_handler(module, s.handler), s.pattern) for s in subscriptions]
        _replace_module(self._live, module, rows, "subscription index")

    async def matching(self, tenant: str, event_type: str) -> builtins.list[Subscription]:
        """The live subscriptions of `tenant` whose pattern matches `event_type`."""
        patterns = set(candidates(event_type))
        return [sub for sub in self._of(tenant) if sub.pattern in patterns]

    async def list(self, tenant: str) -> builtins.list[Subscription]:
        """Every live subscription of `tenant`."""
        return builtins.list(self._of(tenant))

    async def close(self) -> None:
        """Nothing to release."""

    def _of(self, tenant: str) -> Iterator[Subscription]:
        """`tenant`'s subscriptions by module id, then handler index."""
        for key in sorted(key for key in self._live if key[0] == tenant):
            yield from self._live[key]


@dataclass(slots=True)
class _FireState:
    """The fire time of one live schedule, for the schedule text it was computed from."""

    schedule: str
    next_fire: int  # epoch ms, like the SQL column (so truncation matches)


class MemorySchedules:
    """CronTable in dicts: the live schedules per module and each one's next fire time."""

    def __init__(self) -> None:
        # (tenant, module id) -> schedules by handler index, replaced whole by `sync`
        self._live: dict[tuple[str, str], tuple[ScheduleEntry, ...]] = {}
        # (tenant, module id, handler index) -> fire state, reconciled with `_live` by `due`
        self._state: dict[tuple[str, str, int], _FireState] = {}
        self._parsed: dict[str, Schedule | None] = {}

    async def sync(self, module: StoredModule, schedules: builtins.list[ScheduleEntry]) -> None:
        """Replace the live schedules of `module` with `schedules`, at once (the fire times follow at the next
        `due`)."""
        rows = [ScheduleEntry(_live_handler(module, e.handler), e.schedule) for e in schedules]
        _replace_module(self._live, module, rows, "schedule table")

    async def is_live(self, entry: ScheduleEntry) -> bool:
        """Whether exactly `entry` is live."""
        return entry in self._entries()

    async def list(self, tenant: str | None = None) -> builtins.list[ScheduleEntry]:
        """The live schedules of `tenant` (of every tenant when None)."""
        return [entry for entry in self._entries() if tenant is None or entry.handler.tenant == tenant]

    async def due(self, now: datetime) -> builtins.list[DueSchedule]:
        """The schedules due at `now`, each once, for its latest slot at or before `now`."""
        now = _aware(now)
        at_ms = to_epoch_ms(now)
        live = {_state_key(entry): entry for entry in self._entries()}
        # A schedule no longer live loses its state: registered again later, it starts afresh.
        for key in self._state.keys() - live.keys():
            del self._state[key]
        out: builtins.list[DueSchedule] = []
        for key, entry in live.items():
            parsed = self._parse(entry.schedule)
            if parsed is None:
                continue
            state = self._state.get(key)
            if state is None or state.schedule != entry.schedule:
                # New or changed: its first fire is the first slot after the poll that first sees it.
                state = self._state[key] = _FireState(entry.schedule, to_epoch_ms(parsed.next_after(now)))
            if state.next_fire <= at_ms:
                out.append(DueSchedule(entry=entry, scheduled_time=parsed.last_at_or_before(now)))
        out.sort(
            key=lambda item: (
                item.scheduled_time,
                item.entry.handler.tenant,
                item.entry.handler.module_id,
                item.entry.handler.index,
            )
        )
        return out

    async def mark_fired(self, entry: ScheduleEntry, fired_for: datetime) -> None:
        """Record the slot fired; the next fire time becomes the first slot after it (and after any later mark)."""
        parsed = self._parse(entry.schedule)
        if parsed is None:
            raise InputError(f"Cannot mark schedule {entry.schedule!r} fired: it does not parse")
        next_fire = to_epoch_ms(parsed.next_after(_aware(fired_for)))
        state = self._state.get(_state_key(entry))
        if state is not None and state.schedule == entry.schedule:
            # Marks may come late or out of order: an older slot never moves the next fire back.
            state.next_fire = max(state.next_fire, next_fire)

    async def next_fire(self, entry: ScheduleEntry) -> datetime | None:
        """The next fire time held for `entry`, or None before the cron loop has seen the entry."""
        state = self._state.get(_state_key(entry))
        return None if state is None or state.schedule != entry.schedule else from_epoch_ms(state.next_fire)

    async def close(self) -> None:
        """Nothing to release."""

    def _entries(self) -> builtins.list[ScheduleEntry]:
        """Every live schedule, by tenant, module id and handler index."""
        return [entry for key in sorted(self._live) for entry in self._live[key]]

    def _parse(self, text: str) -> Schedule | None:
        # A schedule the module store accepted always parses; an unparseable one is skipped, never fatal.
        if text not in self._parsed:
            try:
                self._parsed[text] = parse_schedule(text)
            except InputError:
                self._parsed[text] = None
        return self._parsed[text]


def _state_key(entry: ScheduleEntry) -> tuple[str, str, int]:
    return (entry.handler.tenant, entry.handler.module_id, entry.handler.index)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError("The scheduler needs timezone-aware datetimes")
    return moment.astimezone(UTC)


# --- events: deliveries and transport --------------------------------------------------------------------


def _event_json(event: Event) -> str:
    try:
        return record_json(event.data)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Event {event.type} data must be JSON-serializable: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _EventRow:
    """An accepted event with its data as JSON text, so each reader gets a fresh copy."""

    event: Event  # data emptied: `data` is the stored value
    data: str
    published_at: int = 0  # epoch ms

    @staticmethod
    def of(event: Event) -> _EventRow:
        data = _event_json(event)
        stored = Event(
            id=event.id,
            type=event.type,
            data=None,
            source=event.source,
            time=event.time,
            tenant=event.tenant,
            correlation_id=event.correlation_id,
            depth=event.depth,
        )
        return _EventRow(stored, data)

    def load(self) -> Event:
        return dataclasses.replace(self.event, data=json.loads(self.data))


@dataclass(slots=True)
class _DeliveryRow:
    """The state of one delivery (the SQL `deliveries` columns); `seq` is its insertion order (the rowid)."""

    seq: int
    id: str
    event_id: str
    handler: HandlerRef
    status: DeliveryStatus
    attempts: int
    next_attempt_at: int  # epoch ms, like every time below
    created_at: int
    updated_at: int
    last_error: str | None = None
    lease_until: int | None = None  # while running
    claim: str | None = None

    def due(self, now: int) -> bool:
        """Pending and due, or running with an expired lease (its claimant is gone)."""
        if self.status == "pending":
            return self.next_attempt_at <= now
        return self.status == "running" and self.lease_until is not None and self.lease_until <= now

    def in_flight(self, now: int) -> bool:
        return self.status == "running" and self.lease_until is not None and self.lease_until > now

    def age(self) -> tuple[int, int, int]:
        """Oldest first within a tenant: by due time, then creation, then insertion."""
        return (self.next_attempt_at, self.created_at, self.seq)

    def settle(self, status: DeliveryStatus, now: int) -> None:
        """Leave the running state (or any other) for `status`, releasing the lease."""
        self.status, self.lease_until, self.claim, self.updated_at = status, None, None, now

    def verdict(self, now: int, max_attempts: int) -> tuple[ClaimVerdict, int | None]:
        """What claiming it now does (`claim_verdict`), and for "wait" when it is due."""
        return claim_verdict(self.status, self.attempts, self.next_attempt_at, self.lease_until, now, max_attempts)

    def take(self, now: int, lease_until: int, claim: str) -> None:
        """Lease it to `claim`, counting the attempt (an interrupted one's error says so)."""
        if self.status == "running":
            self.last_error = interrupted_error(self.attempts)
        self.status, self.attempts, self.updated_at = "running", self.attempts + 1, now
        self.lease_until, self.claim = lease_until, claim

    def bury_interrupted(self, now: int) -> None:
        """Dead-letter it: its lease expired on its last attempt."""
        self.settle("dead", now)
        self.last_error = interrupted_error(self.attempts, last=True)


class MemoryDeliveryStore:
    """DeliveryQueue in dicts: events, and one delivery per (event, handler), claimed fairly across tenants."""

    def __init__(self, *, clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock
        self._events: dict[str, _EventRow] = {}
        # delivery id -> row, and event id -> handler id -> row (the uniqueness of (event, handler))
        self._rows: dict[str, _DeliveryRow] = {}
        self._by_event: dict[str, dict[str, _DeliveryRow]] = {}
        self._seq = 0
        # When each tenant was last served a claim (a claim counter): the tie-break of fair claiming.
        self._served: dict[str, int] = {}
        self._claims = 0

    async def add(self, event: Event, handlers: Sequence[HandlerRef], *, dead_error: str | None = None) -> bool:
        """Store `event` with one delivery per handler (dead letters with `dead_error`), once per event id."""
        row = _EventRow.of(event)  # refuses unserializable data even for a known event id, as SQLite does
        now = self._clock()
        if event.id in self._events:
            return False
        self._events[event.id] = dataclasses.replace(row, published_at=now)
        by_handler = self._by_event[event.id] = {}
        for handler in handlers:
            if handler.handler_id in by_handler:
                continue  # INSERT OR IGNORE: the first of a repeated handler stays
            self._seq += 1
            delivery = _DeliveryRow(
                seq=self._seq,
                id=new_id("Delivery"),
                event_id=event.id,
                handler=handler,
                status="pending" if dead_error is None else "dead",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
                last_error=dead_error,
            )
            by_handler[handler.handler_id] = self._rows[delivery.id] = delivery
        return True

    async def claim_due(self, limit: int, lease_seconds: float, max_attempts: int) -> builtins.list[Delivery]:
        """Lease up to `limit` due deliveries (pending and due, or running with an expired lease), taking
        turns across tenants (see `_fair_pick`)."""
        if limit <= 0:
            return []
        now = self._clock()
        lease_until = now + int(lease_seconds * 1000)
        claim = secrets.token_hex(8)
        if not any(row.due(now) for row in self._rows.values()):
            return []
        self._bury_interrupted(now, max_attempts)
        picked = self._fair_pick(now, limit)
        if not picked:
            return []
        self._claims += 1
        for row in picked:
            self._served[row.handler.tenant] = self._claims
            row.take(now, lease_until, claim)
        return self._listed(picked)

    async def claim(self, delivery_id: str, lease_seconds: float, max_attempts: int) -> Claim:
        """Lease one delivery by id if it is due (see `claim_verdict`); otherwise say when it is, or bury an
        interrupted one with no attempt left."""
        now = self._clock()
        row = self._rows.get(delivery_id)
        if row is None:
            return Claim()
        verdict, due = row.verdict(now, max_attempts)
        if verdict == "wait" and due is not None:
            return Claim(due_at=from_epoch_ms(due))
        if verdict == "bury":
            row.bury_interrupted(now)
        if verdict != "take":
            return Claim()
        row.take(now, now + int(lease_seconds * 1000), secrets.token_hex(8))
        return Claim(delivery=self._delivery(row))

    def _bury_interrupted(self, now: int, max_attempts: int) -> None:
        """Dead-letter the interrupted deliveries (lease expired) that have no attempt left."""
        for row in self._rows.values():
            if row.verdict(now, max_attempts)[0] == "bury":
                row.bury_interrupted(now)

    def _fair_pick(self, now: int, limit: int) -> builtins.list[_DeliveryRow]:
        """Up to `limit` due deliveries, by turn: the SQLite adapter's `_CLAIM_FAIR` and tie-break.

        A delivery's turn is its rank within its tenant (oldest first) plus the tenant's deliveries in flight;
        the lowest turns win, ties going to the tenant served least recently, then to the oldest."""
        due: dict[str, builtins.list[_DeliveryRow]] = {}
        busy: dict[str, int] = {}
        for row in self._rows.values():
            tenant = row.handler.tenant
            if row.due(now):
                due.setdefault(tenant, []).append(row)
            elif row.in_flight(now):
                busy[tenant] = busy.get(tenant, 0) + 1
        ranked: builtins.list[tuple[tuple[int, ...], _DeliveryRow]] = []
        for tenant, rows in due.items():
            # Only a tenant's `limit` oldest can be picked (the SQL's `rank <= :limit`).
            for rank, row in enumerate(sorted(rows, key=_DeliveryRow.age)[:limit], start=1):
                turn = rank + busy.get(tenant, 0)
                ranked.append(((turn, self._served.get(tenant, 0), *row.age()), row))
        ranked.sort(key=lambda item: item[0])  # keys are unique (they end with `seq`)
        return [row for _, row in ranked[:limit]]

    async def complete(self, delivery: Delivery) -> None:
        """Mark the delivery done (whoever holds it now): it will never be handed out again."""
        row = self._rows.get(delivery.id)
        if row is not None:
            row.settle("done", self._clock())

    async def retry(self, delivery: Delivery, error: str, at: datetime) -> None:
        """Record the failure of the claimed attempt; the delivery is due again at `at`."""
        self._finish_claim(delivery, "pending", error, to_epoch_ms(at))

    async def bury(self, delivery: Delivery, error: str) -> None:
        """Record the failure of the claimed attempt and make the delivery a dead letter."""
        self._finish_claim(delivery, "dead", error, None)

    def _finish_claim(self, delivery: Delivery, status: DeliveryStatus, error: str, next_at: int | None) -> None:
        # Only the claim that holds the delivery may settle it: after its lease expired another claim took over.
        now = self._clock()
        row = self._rows.get(delivery.id)
        if row is None or row.status != "running" or delivery.claim is None or row.claim != delivery.claim:
            return
        row.settle(status, now)
        row.last_error = error
        if next_at is not None:
            row.next_attempt_at = next_at

    async def requeue_running(self) -> int:
        """Make every running delivery due now; a dispatcher taking over calls this for its predecessor's work."""
        now = self._clock()
        running = [row for row in self._rows.values() if row.status == "running"]
        for row in running:
            row.lease_until = now
        return len(running)

    async def purge(self, older_than: datetime) -> int:
        """Forget completed deliveries older than `older_than`, and events left with no delivery."""
        cut = to_epoch_ms(older_than)
        gone = [row for row in self._rows.values() if row.status == "done" and row.updated_at < cut]
        for row in gone:
            del self._rows[row.id]
            del self._by_event[row.event_id][row.handler.handler_id]
        for event_id in [id for id, event in self._events.items() if event.published_at < cut]:
            if not self._by_event.get(event_id):
                del self._events[event_id]
                self._by_event.pop(event_id, None)
        return len(gone)

    async def dead_letters(self, tenant: str | None = None) -> builtins.list[Delivery]:
        """Dead-lettered deliveries, oldest first; every tenant's when `tenant` is None."""
        return self._listed(
            row
            for row in self._rows.values()
            if row.status == "dead" and (tenant is None or row.handler.tenant == tenant)
        )

    async def dead_letter(self, delivery_id: str) -> Delivery | None:
        """One dead letter by id, or None."""
        row = self._rows.get(delivery_id)
        return None if row is None or row.status != "dead" else self._delivery(row)

    async def replay(self, delivery_id: str, version: int | None = None) -> None:
        """Queue a dead letter again with its attempts reset, to module `version` when given."""
        now = self._clock()
        row = self._rows.get(delivery_id)
        if row is None or row.status != "dead":
            raise replay_refused(delivery_id, None if row is None else row.status)
        row.settle("pending", now)
        row.attempts, row.next_attempt_at, row.last_error = 0, now, None
        if version is not None:
            row.handler = dataclasses.replace(row.handler, version=version)

    async def deliveries(self, event_id: str) -> builtins.list[Delivery]:
        """Every delivery of one event."""
        return self._listed(self._by_event.get(event_id, {}).values())

    async def close(self) -> None:
        """Nothing to release."""

    def _listed(self, rows: Iterable[_DeliveryRow]) -> builtins.list[Delivery]:
        """Deliveries oldest first (by creation, then id), as the SQLite adapter selects them."""
        return [self._delivery(row) for row in sorted(rows, key=lambda row: (row.created_at, row.id))]

    def _delivery(self, row: _DeliveryRow) -> Delivery:
        return Delivery(
            id=row.id,
            event=self._events[row.event_id].load(),
            handler=row.handler,
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=format_iso(row.next_attempt_at),
            last_error=row.last_error,
            claim=row.claim,
        )


class MemoryTransport:
    """EventTransport as an in-process queue: `publish` appends, a consumer `take`s the events in order."""

    def __init__(self) -> None:
        # Kept encoded, as a real transport holds them: the publisher's later changes do not reach the queue.
        self._queue: builtins.list[_EventRow] = []

    async def publish(self, event: Event) -> None:
        """Accept `event` (its data must be JSON-serializable, as on the wire)."""
        self._queue.append(_EventRow.of(event))

    def take(self) -> builtins.list[Event]:
        """Remove and return every accepted event, oldest first (what the transport's consumer does)."""
        taken, self._queue = self._queue, []
        return [row.load() for row in taken]

    @property
    def accepted(self) -> tuple[Event, ...]:
        """The accepted events not yet taken, oldest first (copies: the queue is unchanged)."""
        return tuple(row.load() for row in self._queue)


class MemoryDispatch:
    """DeliveryDispatch as an in-process queue of delivery ids: a consumer `take`s them in order."""

    def __init__(self) -> None:
        self._queue: builtins.list[str] = []

    async def dispatch(self, deliveries: Sequence[Delivery]) -> None:
        """Hold one message per delivery, naming it."""
        self._queue.extend(delivery.id for delivery in deliveries)

    def take(self) -> builtins.list[str]:
        """Remove and return every held delivery id, oldest first (what the queue's consumer does)."""
        taken, self._queue = self._queue, []
        return taken

    async def close(self) -> None:
        """Nothing to release."""
