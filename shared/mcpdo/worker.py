"""The event worker of a long-lived process (`mcpdo serve`, `mcpdo stdio`): dispatcher and cron loop.

Several processes may share one state folder; only the holder of the `worker` lease dispatches and fires
schedules. The lease is renewed every few seconds and expires after about ten, so a process that is
killed hands over within that time, and one that stops cleanly releases it at once. A worker that takes the
lease over makes its predecessor's in-flight deliveries due again (at-least-once: an attempt cut short by a
crash runs again; a delivery recorded done never does).

A schedule fire is an event delivered to exactly the scheduled handler, so it shares the retries, dead
letters and runs log of ordinary deliveries::

    {"type": "Schedule.fired", "data": {"schedule": "0 9 * * *", "scheduledTime": "2026-01-05T09:00:00.000Z"},
     "source": "schedule:<module id>#<index>", ...}

Its id is derived from the handler and the slot, so firing the same slot twice (a crash between queueing
the fire and recording it) delivers it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    Leases,
    Mailer,
    Run,
    RunLog,
    Scheduler,
)
from mcpdo.timeparse import format_iso, utc_now

__all__ = [
    "SCHEDULE_EVENT_TYPE",
    "HandlerFailed",
    "HandlerOutcome",
    "Invoke",
    "Step",
    "Worker",
    "schedule_event",
]

SCHEDULE_EVENT_TYPE = "Schedule.fired"
WORKER_LEASE = "worker"

log = logging.getLogger("mcpdo.worker")


@dataclass(frozen=True)
class HandlerOutcome:
    """What a handler run produced: its captured logs ({level, message, timestamp}) and return value."""

    logs: tuple[dict[str, Any], ...] = ()
    value: Any = None


@dataclass(frozen=True)
class Step:
    """What one `Worker.run_once` did: whether it held the lease, schedules fired, deliveries run."""

    leader: bool
    fired: int = 0
    delivered: int = 0


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


class Worker:
    """Runs deliveries and fires schedules while this process holds the state folder's worker lease."""

    def __init__(
        self,
        bus: EventBus,
        scheduler: Scheduler,
        leases: Leases,
        invoke: Invoke,
        *,
        runs: RunLog,
        mailer: Mailer | None = None,
        owner: str | None = None,
        concurrency: int = 4,
        poll_interval: float = 0.2,
        cron_interval: float = 0.25,
        lease_ttl: float = 10.0,
        renew_interval: float = 3.0,
        delivery_lease: float = 120.0,
        stop_grace: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._bus = bus
        self._scheduler = scheduler
        self._leases = leases
        self._invoke = invoke
        self._runs = runs
        self._mailer = mailer
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._cron_interval = cron_interval
        self._lease_ttl = lease_ttl
        self._renew_interval = renew_interval
        self._delivery_lease = delivery_lease
        self._stop_grace = stop_grace
        self._clock = clock
        self._retention = retention
        self._last_purge: datetime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leader = asyncio.Event()
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def is_leader(self) -> bool:
        """True while this worker holds the lease (and so dispatches and fires schedules)."""
        return self._leader.is_set()

    async def start(self) -> None:
        """Start competing for the lease; once held, dispatch and fire schedules until `stop`."""
        if self._loops:
            return
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._loops = [
            asyncio.create_task(loop(), name=f"mcpdo-worker-{loop.__name__}")
            for loop in (self._lease_loop, self._dispatch_loop, self._cron_loop)
        ]

    async def stop(self) -> None:
        """Stop the loops, let running handlers finish (up to the grace period), release the lease."""
        self._stopping = True
        loops, self._loops = self._loops, []
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if self._inflight:
            # Handlers still running past the grace period are cut short; the next holder runs them again.
            _, pending = await asyncio.wait(set(self._inflight), timeout=self._stop_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._leader.is_set():
            self._leader.clear()
            with contextlib.suppress(Exception):
                await self._leases.release(WORKER_LEASE, self.owner)

    def notify(self) -> None:
        """Dispatch now rather than at the next poll (call after publishing); safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    # -- loops -----------------------------------------------------------------------------------------

    async def run_once(self) -> Step:
        """One turn, awaited to its end, for tests and one-shot callers: take or renew the lease; as its holder,
        fire the schedules that are due, then run every delivery that is due now (and those they make due)."""
        if not await self._renew_lease():
            return Step(leader=False)
        fired = await self._fire_due()
        delivered = 0
        while claimed := await self._bus.claim_due(self._concurrency, self._delivery_lease):
            await asyncio.gather(*(self._run_delivery(delivery) for delivery in claimed))
            delivered += len(claimed)
        return Step(leader=True, fired=fired, delivered=delivered)

    async def _renew_lease(self) -> bool:
        try:
            held = await self._leases.acquire(WORKER_LEASE, self.owner, self._lease_ttl)
        except Exception:
            log.exception("cannot renew the worker lease")
            held = False
        if held and not self._leader.is_set():
            if not self._inflight:
                try:
                    await self._bus.requeue_running()
                except Exception:
                    log.exception("cannot requeue the previous worker's deliveries")
            self._leader.set()
            self._wake.set()
        elif not held and self._leader.is_set():
            log.warning("worker lease lost to another process")
            self._leader.clear()
        return held

    async def _lease_loop(self) -> None:
        while not self._stopping:
            if await self._renew_lease():
                await self._housekeeping()
            await asyncio.sleep(self._renew_interval)

    async def _housekeeping(self) -> None:
        """Hourly, the leader forgets completed deliveries past the retention period (dead letters stay)."""
        now = self._clock()
        if self._last_purge is not None and now - self._last_purge < timedelta(hours=1):
            return
        self._last_purge = now
        try:
            removed = await self._bus.purge(now - self._retention)
        except Exception:
            log.exception("cannot purge old deliveries")
            return
        if removed:
            log.info("purged %d completed deliveries older than %s", removed, self._retention)

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            await self._leader.wait()
            self._wake.clear()
            free = self._concurrency - len(self._inflight)
            claimed: list[Delivery] = []
            if free > 0:
                # Only free slots are claimed, one claim per freed slot: the claim counts each tenant's
                # in-flight deliveries, so a tenant whose storm fills the slots yields the next one to a
                # tenant with due work and nothing running.
                try:
                    claimed = await self._bus.claim_due(free, self._delivery_lease)
                except Exception:
                    log.exception("cannot claim deliveries")
            for delivery in claimed:
                task = asyncio.create_task(self._run_delivery(delivery))
                self._inflight.add(task)
                task.add_done_callback(self._finished)
            # A finished delivery, a publish in this process or a schedule fire sets `_wake`; other processes'
            # publishes are picked up by the poll.
            await self._wait_for_wake(self._poll_interval)

    async def _cron_loop(self) -> None:
        while not self._stopping:
            await self._leader.wait()
            try:
                if await self._fire_due():
                    self._wake.set()
            except Exception:
                log.exception("cannot fire schedules")
            await asyncio.sleep(self._cron_interval)

    async def _fire_due(self) -> int:
        """Queue one delivery for each schedule whose slot has come; how many fired."""
        fired = 0
        for due in await self._scheduler.due(self._clock()):
            await self._bus.enqueue(schedule_event(due, self._clock()), due.entry.handler)
            await self._scheduler.mark_fired(due.entry, due.scheduled_time)
            fired += 1
        return fired

    async def _wait_for_wake(self, timeout: float) -> None:
        # Not `asyncio.wait_for`: on Python 3.11 it can swallow a cancellation that races with the wake-up.
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()

    # -- one delivery ----------------------------------------------------------------------------------

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _run_delivery(self, delivery: Delivery) -> None:
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
