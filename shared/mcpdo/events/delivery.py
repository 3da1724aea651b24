"""Delivering events: the core step that the local worker loop, and an events function in the cloud, both
call. One delivery is one run of one handler (or of the built-in mailer for `Email.send`), recorded in the
runs log, then completed, retried with back-off or dead-lettered in the delivery store.

Retries: a delivery gets `1 + max_retries` attempts (default 4). After the n-th failed attempt it waits
`backoff_base * 2 ** (n - 1)` seconds; after the last one (or at once, for a failure no retry can fix, such
as a revoked owner) it is a dead letter until replayed. A replay runs the live version of the handler.

A schedule fire is an event delivered to exactly the scheduled handler, so it shares the retries, dead
letters and runs log of ordinary deliveries::

    {"type": "Schedule.fired", "data": {"schedule": "0 9 * * *", "scheduledTime": "2026-01-05T09:00:00.000Z"},
     "source": "schedule:<module id>#<index>", ...}

Its id is derived from the handler and the slot, so firing the same slot twice (a crash between queueing
the fire and recording it) delivers it once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mcpdo.errors import Conflict, McpdoError, NotConfigured
from mcpdo.events.routing import MAILER_MODULE, Publisher
from mcpdo.ids import new_id
from mcpdo.operations import note
from mcpdo.ports import (
    Delivery,
    DeliveryStore,
    Event,
    HandlerRef,
    Mailer,
    Run,
    RunLog,
    ScheduleEntry,
    ScheduleSync,
    SubscriptionSync,
)
from mcpdo.timeparse import format_iso, utc_now

SCHEDULE_EVENT_TYPE = "Schedule.fired"
MAX_ERROR_LENGTH = 4_000

log = logging.getLogger("mcpdo.delivery")


@dataclass(frozen=True)
class HandlerOutcome:
    """What a handler run produced: its captured logs ({level, message, timestamp}) and return value."""

    logs: tuple[dict[str, Any], ...] = ()
    value: Any = None


class HandlerFailed(Exception):
    """A handler threw; `logs` holds what it logged before. `invoke` may raise any exception with `.logs`."""

    def __init__(self, message: str, logs: tuple[dict[str, Any], ...] = (), *, retryable: bool = True) -> None:
        super().__init__(message)
        self.logs = logs
        # False when another attempt cannot succeed (the owner's key was revoked): straight to the dead letters.
        self.retryable = retryable


Invoke = Callable[[HandlerRef, Event], Awaitable[HandlerOutcome]]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a failed delivery is tried again (settings MCPDO_RETRY_BASE_SECONDS)."""

    max_retries: int = 3
    backoff_base: float = 1.0

    def __post_init__(self) -> None:
        if self.backoff_base < 0 or self.max_retries < 0:
            raise ValueError("backoff_base and max_retries must not be negative")

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def delay(self, attempts: int) -> timedelta | None:
        """The wait before the next attempt after `attempts` failed ones, or None when none is left."""
        if attempts >= self.max_attempts:
            return None
        return timedelta(seconds=self.backoff_base * 2 ** (max(attempts, 1) - 1))


def schedule_event(entry: ScheduleEntry, slot_time: datetime, now: datetime | None = None) -> Event:
    """The event that fires one slot of `entry`: same handler and slot, same id."""
    ref = entry.handler
    slot = format_iso(slot_time)
    digest = hashlib.sha256(
        "\n".join((ref.tenant, ref.module_id, str(ref.index), entry.schedule, slot)).encode()
    ).hexdigest()[:32]
    event_id = f"sch_{digest}"
    return Event(
        id=event_id,
        type=SCHEDULE_EVENT_TYPE,
        data={"schedule": entry.schedule, "scheduledTime": slot},
        source=f"schedule:{ref.handler_id}",
        time=format_iso(now or utc_now()),
        tenant=ref.tenant,
        correlation_id=event_id,
    )


@dataclass(frozen=True)
class Settled:
    """How one queued delivery ended, which says what becomes of the queue message that named it.

    - `retry_at`: the delivery is due again then (a failed attempt, or a message that came early): the message
      comes back at that time.
    - `dead`: this attempt made it a dead letter: the message goes to the dead-letter queue.
    - `unrecorded`: the outcome could not be stored: the message comes back when the queue redelivers it.
    - none of these: delivered, or nothing to do (already done, dead or unknown): the message is done with.
    """

    run: Run | None = None
    retry_at: datetime | None = None
    dead: bool = False
    unrecorded: bool = False


class Deliveries:
    """Runs deliveries, fires schedule slots and replays dead letters over the ports; no state of its own."""

    def __init__(
        self,
        store: DeliveryStore,
        publisher: Publisher,
        invoke: Invoke,
        runs: RunLog,
        *,
        subscriptions: SubscriptionSync,
        schedules: ScheduleSync,
        mailer: Mailer | None = None,
        policy: RetryPolicy = RetryPolicy(),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._invoke = invoke
        self._runs = runs
        self._subscriptions = subscriptions
        self._schedules = schedules
        self._mailer = mailer
        self.policy = policy
        self._clock = clock

    async def fire(self, entry: ScheduleEntry, slot_time: datetime) -> Event:
        """Queue the delivery of one slot of a schedule to its handler; firing a slot again changes nothing."""
        event = schedule_event(entry, slot_time, self._clock())
        await self._publisher.enqueue(event, entry.handler)
        handler = entry.handler
        note(
            "schedule fire",
            tenant=handler.tenant,
            handlerId=handler.handler_id,
            schedule=entry.schedule,
            eventId=event.id,
        )
        return event

    async def fire_if_live(self, entry: ScheduleEntry, slot_time: datetime) -> Event | None:
        """Fire one slot of `entry` as a scheduler service names it, unless that exact entry (version, handler
        index, text) is no longer live: the fire of a removed or replaced schedule already in flight. None then."""
        if not await self._schedules.is_live(entry):
            return None
        return await self.fire(entry, slot_time)

    async def fail(self, delivery: Delivery, error: str, *, retry: bool = True) -> datetime | None:
        """Record a failed attempt of a claimed delivery: due again after its back-off (returns when), or a
        dead letter after the last attempt (at once when `retry` is False; returns None)."""
        error = error[:MAX_ERROR_LENGTH]
        wait = self.policy.delay(delivery.attempts) if retry else None
        if wait is None:
            await self._store.bury(delivery, error)
            return None
        due = self._clock() + wait
        await self._store.retry(delivery, error, due)
        return due

    async def run_queued(self, delivery_id: str, lease_seconds: float) -> Settled:
        """Claim and run the delivery a queue message names (the cloud's entrypoint; the local worker claims
        in batches and calls `deliver`). Idempotent: a message for a delivery that is done, dead or running
        under another claim runs nothing."""
        claim = await self._store.claim(delivery_id, lease_seconds, self.policy.max_attempts)
        if claim.delivery is None:
            return Settled(retry_at=claim.due_at)
        run, settled = await self._attempt(claim.delivery)
        return dataclasses.replace(settled, run=run)

    async def replay(self, delivery_id: str) -> None:
        """Queue a dead letter again with fresh retries, to the live version of its handler."""
        dead = await self._store.dead_letter(delivery_id)
        # Unknown ids and live deliveries are refused by the store, naming which it is.
        version = None if dead is None else await self._live_version(dead)
        await self._store.replay(delivery_id, version)
        if dead is not None:
            await self._publisher.dispatch_pending(dead.event.id)

    async def _live_version(self, delivery: Delivery) -> int | None:
        """The module version a replay runs: the live one whose handler at the same index still takes the
        event (None: the built-in mailer, which has no versions). Conflict when none does."""
        ref = delivery.handler
        if ref.module_id == MAILER_MODULE:
            return None
        event = delivery.event
        if event.type == SCHEDULE_EVENT_TYPE:
            live = [entry.handler for entry in await self._schedules.list(ref.tenant)]
        else:
            live = [s.handler for s in await self._subscriptions.matching(ref.tenant, event.type)]
        for handler in live:
            if handler.module_id == ref.module_id and handler.index == ref.index:
                return handler.version
        raise Conflict(
            f"Cannot replay {delivery.id}: the live version of {ref.module_id} has no handler "
            f"#{ref.index} for {event.type} (the module was registered again without it); the dead "
            f"letter stays"
        )

    async def deliver(self, delivery: Delivery) -> Run:
        """Run one claimed delivery: the built-in mailer or the handler; then complete it, or schedule its
        retry or dead-letter it, and record the run. Idempotent per (event, handler): the store never hands
        out a completed delivery again."""
        run, _ = await self._attempt(delivery)
        return run

    async def _attempt(self, delivery: Delivery) -> tuple[Run, Settled]:
        started = format_iso(self._clock())
        t0 = time.monotonic()
        logs: tuple[dict[str, Any], ...] = ()
        error: str | None = None
        retry = True
        try:
            if delivery.handler.module_id == MAILER_MODULE:
                await self._send_mail(delivery.event)
            else:
                outcome = await self._invoke(delivery.handler, delivery.event)
                logs = tuple(outcome.logs)
        except Exception as exc:
            error = _error_text(exc)
            logs = tuple(getattr(exc, "logs", ()) or ())
            retry = getattr(exc, "retryable", True) is not False
        duration_ms = int((time.monotonic() - t0) * 1000)
        settled = Settled()
        try:
            if error is None:
                await self._store.complete(delivery)
            else:
                due = await self.fail(delivery, error, retry=retry)
                settled = Settled(retry_at=due, dead=due is None)
        except Exception:
            log.exception("cannot record the outcome of delivery %s", delivery.id)
            settled = Settled(unrecorded=True)
        event = delivery.event
        schedule = (
            event.data.get("schedule") if event.type == SCHEDULE_EVENT_TYPE and isinstance(event.data, dict) else None
        )
        run = Run(
            id=new_id("Run"),
            handler=delivery.handler,
            status="ok" if error is None else "error",
            started_at=started,
            duration_ms=duration_ms,
            event_id=event.id,
            event_type=event.type,
            schedule=schedule if isinstance(schedule, str) else None,
            attempt=delivery.attempts,
            logs=logs,
            error=error,
        )
        try:
            await self._runs.record_run(run)
        except Exception:
            log.exception("cannot record the run of delivery %s", delivery.id)
        _note_attempt(delivery, run, settled)
        return run, settled

    async def _send_mail(self, event: Event) -> None:
        if self._mailer is None:
            raise NotConfigured("No mailer is configured for Email.send events")
        if not isinstance(event.data, dict):
            kind = type(event.data).__name__
            raise McpdoError(f"Email.send data must be an object like {{ to, subject, body }}, got a {kind}")
        await self._mailer.send({**event.data, "eventId": event.id}, idempotency_key=event.id, tenant=event.tenant)


def _note_attempt(delivery: Delivery, run: Run, settled: Settled) -> None:
    """The operator's line for one attempt: delivered, retried or dead; the error's text stays in the runs log."""
    if settled.unrecorded:
        what = "delivery not recorded"  # its outcome could not be stored: it runs again (logged above)
    elif run.status == "ok":
        what = "delivery"
    else:
        what = "dead letter" if settled.dead else "delivery retry"
    note(
        what,
        tenant=run.tenant,
        deliveryId=delivery.id,
        handlerId=run.handler.handler_id,
        eventType=run.event_type,
        eventId=run.event_id,
        attempt=run.attempt,
        durationMs=run.duration_ms,
        retryAt=format_iso(settled.retry_at) if settled.retry_at is not None else None,
    )


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, McpdoError):
        return exc.text
    if isinstance(exc, HandlerFailed):
        return str(exc)  # already the handler's own error text
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
