"""The capabilities the core needs from the outside world; adapters implement them."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Record = dict[str, Any]
Direction = Literal["out", "in", "both"]


@dataclass(frozen=True)
class Ref:
    """A pointer to one record: its type and id."""

    type: str
    id: str


@dataclass(frozen=True)
class ListQuery:
    """A validated `db.list` query; `where` is the normalized condition tree from `mcpdo.query`."""

    where: Any = None
    sort: tuple[tuple[str, Literal["asc", "desc"]], ...] = ()
    limit: int = 100
    offset: int = 0
    cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Closable(Protocol):
    """A backend holding a connection or a client, released once at shutdown."""

    async def close(self) -> None: ...


class EntityStore(Protocol):
    """Records of any type, partitioned by tenant. Every method is scoped to exactly one tenant."""

    async def list(self, tenant: str, type: str, query: ListQuery) -> list[Record]: ...

    async def get(self, tenant: str, type: str, id: str) -> Record | None: ...

    async def create(self, tenant: str, type: str, data: Record) -> Record: ...

    async def update(self, tenant: str, type: str, id: str, data: Record, if_version: int | None = None) -> Record: ...

    async def delete(self, tenant: str, type: str, id: str) -> bool: ...

    async def relate(self, tenant: str, source: Ref, rel: str, target: Ref) -> Record: ...

    async def related(self, tenant: str, ref: Ref, rel: str | None, direction: Direction) -> builtins.list[Record]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ApiKey:
    """A stored API key: never the secret itself, only its hash and a display prefix."""

    id: str
    name: str
    tenant: str
    roles: tuple[str, ...]
    prefix: str
    created_at: str
    revoked_at: str | None = None


class KeyStore(Protocol):
    """API keys, stored hashed."""

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key; Conflict when its id or its secret's hash is already stored."""
        ...

    async def find_by_hash(self, secret_hash: str) -> ApiKey | None: ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def list(self) -> list[ApiKey]: ...

    async def revoke(self, key_id: str, when: str) -> bool: ...

    async def close(self) -> None: ...


# --- modules, events and schedules -------------------------------------------------------------------


# Event storms: how deep a chain of handler-sent events is still delivered, and how many deliveries one
# `send` may fan out to (settings MCPDO_EVENT_HOP_LIMIT, MCPDO_MAX_DELIVERIES_PER_SEND).
HOP_LIMIT = 8
MAX_DELIVERIES_PER_SEND = 100


@dataclass(frozen=True)
class Event:
    """One published event, as handlers receive it (`handler(event.data, event)`).

    `depth` is how many handler hops led to it: 0 for events sent by scripts and schedule fires, the
    triggering event's depth + 1 for events a handler sends. Past the hop limit its deliveries are dead letters.
    """

    id: str
    type: str
    data: Any
    source: str
    time: str
    tenant: str
    correlation_id: str
    depth: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "data": self.data,
            "source": self.source,
            "time": self.time,
            "tenant": self.tenant,
            "correlationId": self.correlation_id,
        }


@dataclass(frozen=True)
class HandlerRef:
    """Which handler of which stored module version: `index` is its registration order in the module."""

    tenant: str
    module_id: str
    version: int
    index: int

    @property
    def handler_id(self) -> str:
        return f"{self.module_id}#{self.index}"


@dataclass(frozen=True)
class Subscription:
    """An `on(pattern, handler)` of a registered module: exact `Order.created`, `Order.*` or `*.created`."""

    handler: HandlerRef
    pattern: str


@dataclass(frozen=True)
class ScheduleEntry:
    """An `every(schedule, handler)` of a registered module; `schedule` is the text as written."""

    handler: HandlerRef
    schedule: str


@dataclass(frozen=True)
class StoredModule:
    """One version of a registered module. `owner` is the identity its handlers run as."""

    tenant: str
    id: str
    version: int
    type: str | None
    source: str
    code: str
    owner: dict[str, Any]
    exports: tuple[str, ...]
    metadata: dict[str, Any]
    created_at: str


# --- event bus, runs log, scheduler, mailer, module store --------------------------------------------

DeliveryStatus = Literal["pending", "running", "done", "dead"]

MAILER_MODULE = "builtin:mailer"
"""`module_id` of the built-in mailer's handler: `Email.send` events with no user handler go to it."""


def mailer_handler(tenant: str) -> HandlerRef:
    """The handler reference of the built-in mailer in `tenant`."""
    return HandlerRef(tenant=tenant, module_id=MAILER_MODULE, version=0, index=0)


@dataclass(frozen=True)
class Delivery:
    """One event to one handler. Unique per (event id, handler id); `attempts` counts attempts started."""

    id: str
    event: Event
    handler: HandlerRef
    status: DeliveryStatus
    attempts: int
    next_attempt_at: str
    last_error: str | None = None
    claim: str | None = None
    """Token of the claim that handed this delivery out (None unless claimed)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "eventId": self.event.id,
            "eventType": self.event.type,
            "tenant": self.handler.tenant,
            "handlerId": self.handler.handler_id,
            "module": self.handler.module_id,
            "version": self.handler.version,
            "status": self.status,
            "attempts": self.attempts,
            "nextAttemptAt": self.next_attempt_at,
            "lastError": self.last_error,
            "eventDepth": self.event.depth,
        }


@dataclass(frozen=True)
class Run:
    """One execution of a handler, as kept in the runs log: outcome, logs and timing."""

    id: str
    handler: HandlerRef
    status: Literal["ok", "error"]
    started_at: str
    duration_ms: int
    event_id: str | None = None
    event_type: str | None = None
    schedule: str | None = None
    attempt: int = 1
    logs: tuple[dict[str, Any], ...] = ()
    error: str | None = None

    @property
    def tenant(self) -> str:
        return self.handler.tenant

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "handlerId": self.handler.handler_id,
            "module": self.handler.module_id,
            "version": self.handler.version,
            "status": self.status,
            "eventId": self.event_id,
            "eventType": self.event_type,
            "schedule": self.schedule,
            "attempt": self.attempt,
            "logs": list(self.logs),
            "error": self.error,
            "startedAt": self.started_at,
            "durationMs": self.duration_ms,
        }


@dataclass(frozen=True)
class DueSchedule:
    """A schedule whose fire time has come: `scheduled_time` is the slot being fired (aware UTC)."""

    entry: ScheduleEntry
    scheduled_time: datetime


class EventBus(Protocol):
    """The durable event log and the deliveries fanned out from it."""

    async def publish(self, event: Event) -> None:
        """Durably append `event` and queue a delivery to every live matching subscription (same id: no-op).

        More matching deliveries than the bus's per-send cap: LimitExceeded, and nothing is stored. An event
        deeper than the hop limit is stored, its deliveries written straight to the dead letters (never run).
        """
        ...

    async def enqueue(self, event: Event, handler: HandlerRef) -> None:
        """Durably append `event` with one delivery to exactly `handler` (schedule fires); idempotent."""
        ...

    async def claim_due(self, limit: int, lease_seconds: float) -> list[Delivery]:
        """Hand out up to `limit` due deliveries, leased for `lease_seconds` (expired leases are due again).

        Fair across tenants: tenants with due work take turns (oldest first within a tenant), and a tenant
        with deliveries already in flight queues behind those with fewer; a tenant alone gets all `limit`.
        """
        ...

    async def complete(self, delivery: Delivery) -> None:
        """Mark the delivery done: it is never handed out again."""
        ...

    async def fail(self, delivery: Delivery, error: str, *, retry: bool = True) -> None:
        """Record a failed attempt: retry later with back-off, or dead-letter after the last retry (at once
        when `retry` is False)."""
        ...

    async def requeue_running(self) -> int:
        """Make every in-flight delivery due now (the dispatcher that ran them is gone); returns how many."""
        ...

    async def dead_letters(self, tenant: str | None = None) -> list[Delivery]:
        """Dead-lettered deliveries, oldest first; all tenants when `tenant` is None."""
        ...

    async def replay(self, delivery_id: str, version: int | None = None) -> None:
        """Put a dead letter back in the queue with its attempts reset, to module `version` when given;
        NotFound for an unknown id."""
        ...

    async def purge(self, older_than: datetime) -> int:
        """Forget completed deliveries older than `older_than` and events left without deliveries (dead
        letters stay); returns how many deliveries went."""
        ...

    async def deliveries(self, event_id: str) -> list[Delivery]:
        """Every delivery of one event, whatever its status."""
        ...

    async def close(self) -> None: ...


class RunLog(Protocol):
    """What handlers did: one entry per execution, with its logs."""

    async def record_run(self, run: Run) -> None: ...

    async def runs(self, tenant: str | None = None, limit: int = 100) -> list[Run]:
        """The latest runs, newest first; all tenants when `tenant` is None."""
        ...

    async def close(self) -> None: ...


class Scheduler(Protocol):
    """When the live `every()` schedules fire. Each due slot is fired once, then marked."""

    async def due(self, now: datetime) -> list[DueSchedule]:
        """Schedules due at `now`; a schedule that missed several slots is due once, for the latest."""
        ...

    async def mark_fired(self, entry: ScheduleEntry, fired_for: datetime) -> None:
        """Record that `entry` fired for `fired_for`; its next fire is the slot after that."""
        ...

    async def next_fire(self, entry: ScheduleEntry) -> datetime | None:
        """The next fire time the scheduler holds for `entry`, or None before it has seen the entry."""
        ...

    async def close(self) -> None: ...


class Leases(Protocol):
    """Named leases: one owner at a time, until it releases or stops renewing (which process runs the worker)."""

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take or renew the lease for `ttl_seconds`; False while another owner holds an unexpired one."""
        ...

    async def release(self, name: str, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        ...

    async def holder(self, name: str) -> str | None:
        """The current owner of an unexpired lease, or None."""
        ...

    async def close(self) -> None: ...


class Mailer(Protocol):
    """Delivers `$.Email.send` messages."""

    async def send(self, message: dict[str, Any], idempotency_key: str) -> None:
        """Send once per `idempotency_key`; InputError when the message has no recipient."""
        ...

    async def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """Sent messages, newest first (where the backend can list them)."""
        ...

    async def close(self) -> None: ...


class ModuleStore(Protocol):
    """Registered module versions and the subscriptions and schedules of the live version."""

    async def save(
        self, module: StoredModule, subscriptions: list[Subscription], schedules: list[ScheduleEntry]
    ) -> None:
        """Store a new version and make its subscriptions and schedules replace the previous ones, atomically."""
        ...

    async def get(self, tenant: str, id: str, version: int | None = None) -> StoredModule | None: ...

    async def next_version(self, tenant: str, id: str) -> int: ...

    async def list(self, tenant: str) -> list[StoredModule]: ...

    async def subscriptions(self, tenant: str) -> builtins.list[Subscription]: ...

    async def schedules(self, tenant: str | None = None) -> builtins.list[ScheduleEntry]: ...

    async def close(self) -> None: ...
