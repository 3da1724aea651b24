"""The capabilities the core needs from the outside world; adapters implement them."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Coroutine, Mapping, Sequence
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
    # A key past `expires_at` is refused like a revoked one; `last_used_at` is kept to the minute.
    expires_at: str | None = None
    last_used_at: str | None = None


@dataclass(frozen=True)
class VerifiedToken:
    """What a verified OAuth bearer token says about its bearer."""

    subject: str
    scopes: tuple[str, ...]
    issued_at: int | None  # epoch seconds
    expires_at: int
    email: str | None
    name: str | None
    claims: Mapping[str, Any]  # every claim, as a read-only copy


class TokenVerifier(Protocol):
    """Checks OAuth bearer tokens of one issuer: Unauthorized for a token that does not verify, AuthUnavailable
    when the issuer's keys cannot be had."""

    async def verify(self, token: str) -> VerifiedToken: ...

    async def close(self) -> None: ...


class KeyStore(Protocol):
    """API keys, stored hashed."""

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key; Conflict when its id or its secret's hash is already stored."""
        ...

    async def find_by_hash(self, secret_hash: str) -> ApiKey | None: ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def list(self) -> list[ApiKey]: ...

    async def revoke(self, key_id: str, when: str) -> bool: ...

    async def touch(self, key_id: str, when: str) -> None:
        """Record that the key was used at `when` (an unknown id is ignored)."""
        ...

    async def close(self) -> None: ...


# --- modules, events and schedules -------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One published event, as handlers receive it (`handler(event.data, event)`).

    `depth` is how many handler hops led to it: 0 for events sent by scripts and schedule fires, the
    triggering event's depth + 1 for events a handler sends. Past the hop limit (`mcpdo.events`) its
    deliveries are dead letters.
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


# --- event transport, deliveries, runs log, schedules, mailer, module store ------------------------------

DeliveryStatus = Literal["pending", "running", "done", "dead"]


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


class EventTransport(Protocol):
    """Carries accepted events from `send` to routing where they are not routed in-process (EventBridge).

    Without a transport the core routes each event as it is published, in the publishing process.
    """

    async def publish(self, event: Event) -> None:
        """Accept `event` durably for routing; returns once the transport holds it."""
        ...


class SubscriptionSync(Protocol):
    """The live `on()` subscriptions: the latest registered version's, per module, looked up by event type."""

    async def sync(self, module: StoredModule, subscriptions: builtins.list[Subscription]) -> None:
        """Make `subscriptions` the live ones of `module` (tenant and id), replacing the previous version's at
        once: a lookup sees the old set or the new one, never a mix."""
        ...

    async def matching(self, tenant: str, event_type: str) -> builtins.list[Subscription]:
        """The live subscriptions of `tenant` whose pattern matches `event_type`, by module and handler index."""
        ...

    async def list(self, tenant: str) -> builtins.list[Subscription]:
        """Every live subscription of `tenant`, by module and handler index."""
        ...

    async def close(self) -> None: ...


class ScheduleSync(Protocol):
    """The live `every()` schedules, per module: a cron table locally, scheduler resources in the cloud."""

    async def sync(self, module: StoredModule, schedules: builtins.list[ScheduleEntry]) -> None:
        """Make `schedules` the live ones of `module`, replacing the previous version's at once. A schedule
        whose text is unchanged keeps its cadence (now run by the new version); a new or changed one starts
        from now; one no longer listed stops firing."""
        ...

    async def list(self, tenant: str | None = None) -> builtins.list[ScheduleEntry]:
        """The live schedules of `tenant` (of every tenant when None), by tenant, module and handler index."""
        ...

    async def next_fire(self, entry: ScheduleEntry) -> datetime | None:
        """When `entry` fires next as the backend holds it, or None when it is not (or not yet) live."""
        ...

    async def is_live(self, entry: ScheduleEntry) -> bool:
        """Whether exactly `entry` (tenant, module, version, handler index, text) is live now, read consistently:
        a fire a scheduler service sent before the module was registered again is dropped when it is not."""
        ...

    async def close(self) -> None: ...


class CronTable(ScheduleSync, Protocol):
    """A ScheduleSync that is polled (the local cron loop) instead of pushing fires to the core."""

    async def due(self, now: datetime) -> builtins.list[DueSchedule]:
        """Schedules due at `now`; a schedule that missed several slots is due once, for the latest."""
        ...

    async def mark_fired(self, entry: ScheduleEntry, fired_for: datetime) -> None:
        """Record that `entry` fired for `fired_for`; its next fire is the slot after that (never earlier)."""
        ...


@dataclass(frozen=True)
class Claim:
    """What claiming one delivery by id gave: the delivery, now running under this claim; or nothing yet,
    due at `due_at` (pending with a later attempt time, or running under an unexpired lease); or neither:
    nothing to do (done, dead, unknown)."""

    delivery: Delivery | None = None
    due_at: datetime | None = None


class DeliveryStore(Protocol):
    """The state of deliveries (one event to one handler): idempotency, attempts, retries and dead letters.

    The core decides everything (which handlers, when to retry, when to give up); the store keeps it.
    """

    async def add(self, event: Event, handlers: Sequence[HandlerRef], *, dead_error: str | None = None) -> bool:
        """Store `event` with one pending delivery per handler, due now (with `dead_error`: dead letters at
        once, never run). Once per event id: adding a stored event again changes nothing and returns False."""
        ...

    async def deliveries(self, event_id: str) -> builtins.list[Delivery]:
        """Every delivery of one event, whatever its status."""
        ...

    async def claim(self, delivery_id: str, lease_seconds: float, max_attempts: int) -> Claim:
        """Hand out one delivery by id (a queue message names it), leased for `lease_seconds` with its
        attempts counted, under the same rules as `DeliveryQueue.claim_due`: due when pending and past
        `next_attempt_at`, or running with an expired lease; such an interrupted delivery that already had
        `max_attempts` attempts becomes a dead letter instead (and the claim gives nothing)."""
        ...

    async def complete(self, delivery: Delivery) -> None:
        """Mark the delivery done (whoever holds it now): it is never handed out again."""
        ...

    async def retry(self, delivery: Delivery, error: str, at: datetime) -> None:
        """Record the failed attempt of this claim and make the delivery due again at `at`; a claim that was
        taken over (its lease expired and another claim holds it) changes nothing."""
        ...

    async def bury(self, delivery: Delivery, error: str) -> None:
        """Record the failed attempt of this claim and make the delivery a dead letter (same claim rule)."""
        ...

    async def dead_letters(self, tenant: str | None = None) -> builtins.list[Delivery]:
        """Dead-lettered deliveries, oldest first; all tenants when `tenant` is None."""
        ...

    async def dead_letter(self, delivery_id: str) -> Delivery | None:
        """One dead letter by id, or None (unknown, or not dead-lettered)."""
        ...

    async def replay(self, delivery_id: str, version: int | None = None) -> None:
        """Make a dead letter pending and due now with its attempts reset, to module `version` when given;
        NotFound for an unknown id, Conflict for a delivery that is not dead-lettered."""
        ...

    async def purge(self, older_than: datetime) -> int:
        """Forget completed deliveries older than `older_than` and events left without deliveries (dead
        letters stay); returns how many deliveries went."""
        ...

    async def close(self) -> None: ...


class DeliveryQueue(DeliveryStore, Protocol):
    """A DeliveryStore that is polled for due work (the local worker) instead of pushing it (a queue service)."""

    async def claim_due(self, limit: int, lease_seconds: float, max_attempts: int) -> builtins.list[Delivery]:
        """Hand out up to `limit` due deliveries, each leased for `lease_seconds` with its attempts counted.

        Due: pending and past `next_attempt_at`, or running with an expired lease (its claimant is gone); such
        an interrupted delivery that already had `max_attempts` attempts becomes a dead letter instead. Fair
        across tenants: tenants with due work take turns (oldest first within a tenant), a tenant with
        deliveries in flight queues behind those with fewer, and a tenant alone gets all `limit`.
        """
        ...

    async def requeue_running(self) -> int:
        """Make every in-flight delivery due now (the worker that ran them is gone); returns how many."""
        ...


class DeliveryDispatch(Protocol):
    """Hands pending deliveries to what runs them where no worker polls the store (a queue service): the
    core dispatches each delivery it makes pending (routing, a schedule fire, a replay)."""

    async def dispatch(self, deliveries: Sequence[Delivery]) -> None:
        """Hold one message per delivery, naming it, until it is run; returns once the service holds them.
        Dispatching a delivery twice is harmless: a claim hands it out once."""
        ...

    async def close(self) -> None: ...


class QueueMessages(Protocol):
    """The messages pushed to the events function (an SQS batch): what they say, and what becomes of one
    besides being acknowledged."""

    def read(self, body: str) -> Event | str:
        """An event to route, or the id of a delivery to run; InputError for a body that is neither."""
        ...

    async def delay(self, receipt: str, seconds: float) -> None:
        """Make the received message (by its receipt) come back after `seconds` instead of at once."""
        ...

    async def requeue(self, body: str, seconds: float) -> None:
        """Send a delivery message again as a new one, visible after `seconds` (at most 15 minutes), so that a
        receive which was no attempt (no time left, not yet due) never counts towards the queue's redrive."""
        ...

    async def set_aside(self, body: str, reason: str) -> None:
        """Keep a raw message in the dead-letter queue (a dead letter, or one nobody can read)."""
        ...


class ScheduleFires(Protocol):
    """What a scheduler service hands the schedules function for one fire (its schedule's input)."""

    def read(self, payload: object) -> DueSchedule:
        """The entry and slot to fire; InputError for a payload that is not one (no retry can fix it)."""
        ...


class RunLog(Protocol):
    """What handlers did: one entry per execution, with its logs."""

    async def record_run(self, run: Run) -> None: ...

    async def runs(self, tenant: str | None = None, limit: int = 100) -> list[Run]:
        """The latest runs, newest first; all tenants when `tenant` is None."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ExecutionRecord:
    """One audited execution: who ran what, how it ended, how many SDK calls it made. Never the script's text,
    its arguments, its result or its logs: only a hash of the code, so an operator can tell runs apart."""

    id: str
    tenant: str
    caller: str  # the identity's id, or "anonymous"
    auth_type: str  # apiKey | oauth | anonymous
    kind: str  # script | module | docs | handler
    script_hash: str  # sha256 hex of the code that ran (the docs name for a docs request)
    started_at: str  # ISO 8601 UTC, milliseconds
    duration_ms: int
    outcome: Literal["ok", "error"]
    error_kind: str | None = None
    calls: tuple[tuple[str, int], ...] = ()  # SDK method ("db.create") and how often, sorted by method

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "caller": self.caller,
            "authType": self.auth_type,
            "kind": self.kind,
            "scriptHash": self.script_hash,
            "startedAt": self.started_at,
            "durationMs": self.duration_ms,
            "outcome": self.outcome,
            "errorKind": self.error_kind,
            "calls": dict(self.calls),
        }


class AuditLog(Protocol):
    """Every execution, per tenant, kept for a retention period."""

    async def record(self, entry: ExecutionRecord) -> None:
        """Keep one entry; recording the same id twice keeps one."""
        ...

    async def list(
        self, tenant: str | None = None, limit: int = 100, before: str | None = None
    ) -> builtins.list[ExecutionRecord]:
        """Entries newest first (by `started_at`, then id); all tenants when `tenant` is None; only entries
        that started strictly before the ISO instant `before` when it is given (paging)."""
        ...

    async def purge(self, older_than: str) -> int:
        """Drop entries that started before the ISO instant `older_than`; how many went (backends that expire
        entries themselves, such as a DynamoDB TTL, may report 0 and leave it to the store)."""
        ...

    async def close(self) -> None: ...


class AfterAnswer(Protocol):
    """Work that may run once the caller has its answer, before the process takes its next request or is
    frozen (on Lambda an internal extension holds the execution environment until that work is done)."""

    def defer(self, work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Queue `work` for after the answer; False when it cannot be (the caller then does it at once)."""
        ...


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

    async def send(self, message: dict[str, Any], idempotency_key: str, *, tenant: str) -> None:
        """Send once per `idempotency_key`, as mail of `tenant`; InputError when the message has no recipient."""
        ...

    async def list(self, limit: int = 100, *, tenant: str | None = None) -> list[dict[str, Any]]:
        """Sent messages, newest first, each with its `tenant`; one tenant's, or everyone's when None."""
        ...

    async def close(self) -> None: ...


class ModuleStore(Protocol):
    """Registered module versions (what is live is the business of SubscriptionSync and ScheduleSync)."""

    async def save(self, module: StoredModule) -> None:
        """Store a new version; Conflict when that version, or a later one, is already stored."""
        ...

    async def get(self, tenant: str, id: str, version: int | None = None) -> StoredModule | None: ...

    async def next_version(self, tenant: str, id: str) -> int: ...

    async def list(self, tenant: str) -> list[StoredModule]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Generation:
    """What a model was asked for: a prompt, and the JSON Schema of the object it must return."""

    prompt: str
    schema: dict[str, Any]
    # The schema's name as the provider sees it (a tool name or a response_format name): [A-Za-z0-9_-]{1,64}.
    schema_name: str
    model: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Usage:
    """Tokens one or more model calls used."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass(frozen=True)
class Generated:
    """A model's answer: the object it returned (checked against the schema by the core) and its usage."""

    value: dict[str, Any]
    usage: Usage


@dataclass(frozen=True)
class Embedded:
    vector: list[float]
    usage: Usage


class ModelProvider(Protocol):
    """Language and embedding models. Adapters retry throttling and 5xx themselves and raise `ModelError`
    (never with the provider's key in the text) for what remains."""

    async def generate(self, request: Generation) -> Generated: ...

    async def embed(self, text: str, model: str) -> Embedded: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class HttpRequest:
    """One outgoing HTTP request, as the core built it."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    # Asked with each redirect's host before it is followed; it raises to refuse (a grant for one host).
    check_redirect: Callable[[str], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class HttpResponse:
    """A complete response (its body within the client's size cap); `url` is the last one after redirects."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


class WebClient(Protocol):
    """HTTP out of the deployment. `guarded` requests (every `api.fetch`) reach only public addresses or the
    allow-list, checked on the address connected to and on each redirect; unguarded ones (`api.proxy`, to a
    base URL the deployment configured) follow no redirects. Raises `FetchError` subclasses."""

    async def request(self, request: HttpRequest, *, guarded: bool) -> HttpResponse: ...

    async def close(self) -> None: ...


class SecretStore(Protocol):
    """Credentials by name, read host-side only; `None` for a secret that does not exist."""

    async def get(self, name: str) -> str | None: ...

    async def close(self) -> None: ...
