"""Delivering events: the core step that the local worker loop, and an events function in the cloud, both
call. One delivery is one run of one handler (or of the built-in mailer for `Email.send`), recorded in the
runs log, completed, retried with back-off or dead-lettered through the event bus.

A schedule fire is an event delivered to exactly the scheduled handler, so it shares the retries, dead
letters and runs log of ordinary deliveries::

    {"type": "Schedule.fired", "data": {"schedule": "0 9 * * *", "scheduledTime": "2026-01-05T09:00:00.000Z"},
     "source": "schedule:<module id>#<index>", ...}

Its id is derived from the handler and the slot, so firing the same slot twice (a crash between queueing
the fire and recording it) delivers it once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcpdo.errors import McpdoError, NotConfigured
from mcpdo.ids import new_id
from mcpdo.ports import (
    MAILER_MODULE,
    Delivery,
    DueSchedule,
    Event,
    EventBus,
    HandlerRef,
    Mailer,
    Run,
    RunLog,
    Scheduler,
)
from mcpdo.timeparse import format_iso, utc_now

SCHEDULE_EVENT_TYPE = "Schedule.fired"

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


def schedule_event(due: DueSchedule, now: datetime | None = None) -> Event:
    """The event that fires `due`: same handler and slot, same id."""
    ref = due.entry.handler
    slot = format_iso(due.scheduled_time)
    digest = hashlib.sha256(
        "\n".join((ref.tenant, ref.module_id, str(ref.index), due.entry.schedule, slot)).encode()
    ).hexdigest()[:32]
    event_id = f"sch_{digest}"
    return Event(
        id=event_id,
        type=SCHEDULE_EVENT_TYPE,
        data={"schedule": due.entry.schedule, "scheduledTime": slot},
        source=f"schedule:{ref.handler_id}",
        time=format_iso(now or utc_now()),
        tenant=ref.tenant,
        correlation_id=event_id,
    )


class Deliveries:
    """Runs deliveries and fires schedules over the ports; holds no state of its own."""

    def __init__(
        self,
        bus: EventBus,
        scheduler: Scheduler,
        invoke: Invoke,
        runs: RunLog,
        mailer: Mailer | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._bus = bus
        self._scheduler = scheduler
        self._invoke = invoke
        self._runs = runs
        self._mailer = mailer
        self._clock = clock

    async def fire_due(self) -> int:
        """Queue one delivery for each schedule whose slot has come; how many fired."""
        fired = 0
        for due in await self._scheduler.due(self._clock()):
            await self.fire(due)
            fired += 1
        return fired

    async def fire(self, due: DueSchedule) -> Event:
        """Queue the delivery of one schedule slot to its handler and record the slot as fired."""
        event = schedule_event(due, self._clock())
        await self._bus.enqueue(event, due.entry.handler)
        await self._scheduler.mark_fired(due.entry, due.scheduled_time)
        return event

    async def deliver(self, delivery: Delivery) -> Run:
        """Run one claimed delivery: the built-in mailer or the handler; then complete it, or schedule its
        retry or dead-letter it, and record the run. Idempotent per (event, handler): the bus never hands
        out a completed delivery again."""
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
        try:
            if error is None:
                await self._bus.complete(delivery)
            else:
                await self._bus.fail(delivery, error, retry=retry)
        except Exception:
            log.exception("cannot record the outcome of delivery %s", delivery.id)
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
        return run

    async def _send_mail(self, event: Event) -> None:
        if self._mailer is None:
            raise NotConfigured("No mailer is configured for Email.send events")
        if not isinstance(event.data, dict):
            raise McpdoError(f"Email.send data must be an object like {{ to, subject, body }}, got {event.data!r}")
        await self._mailer.send({**event.data, "eventId": event.id}, idempotency_key=event.id)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, McpdoError):
        return exc.text
    if isinstance(exc, HandlerFailed):
        return str(exc)  # already the handler's own error text
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
