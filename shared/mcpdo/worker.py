"""The event worker of a long-lived process (`mcpdo serve`, `mcpdo stdio`): dispatcher and cron loop.

Several processes may share one state folder; only the holder of the `worker` lease dispatches and fires
schedules. The lease is renewed every few seconds and expires after about ten, so a process that is
killed hands over within that time, and one that stops cleanly releases it at once. A worker that takes the
lease over makes its predecessor's in-flight deliveries due again (at-least-once: an attempt cut short by a
crash runs again; a delivery recorded done never does).
What one delivery does, and what firing a slot does, is `mcpdo.events.Deliveries`: the same step the cloud
functions call. This entrypoint only decides when, and which process: it polls the local delivery queue and
the local cron table, which are the local stand-ins for a queue service and a scheduler service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mcpdo.events import Deliveries
from mcpdo.ports import CronTable, Delivery, DeliveryQueue, Leases, Run
from mcpdo.timeparse import utc_now

WORKER_LEASE = "worker"

log = logging.getLogger("mcpdo.worker")


@dataclass(frozen=True)
class Step:
    """What one `Worker.run_once` did: whether it held the lease, schedules fired, deliveries run."""

    leader: bool
    fired: int = 0
    delivered: int = 0


class Worker:
    """Runs deliveries and fires schedules while this process holds the state folder's worker lease."""

    def __init__(
        self,
        queue: DeliveryQueue,
        cron: CronTable,
        leases: Leases,
        deliveries: Deliveries,
        *,
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
        self._queue = queue
        self._cron = cron
        self._leases = leases
        # The core step each claimed delivery and due schedule goes through.
        self.deliveries = deliveries
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
        self._inflight: set[asyncio.Task[Run]] = set()
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
            for unfinished in pending:
                unfinished.cancel()
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
        while claimed := await self._claim(self._concurrency):
            await asyncio.gather(*(self.deliveries.deliver(delivery) for delivery in claimed))
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
                    await self._queue.requeue_running()
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
            removed = await self._queue.purge(now - self._retention)
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
                    claimed = await self._claim(free)
                except Exception:
                    log.exception("cannot claim deliveries")
            for delivery in claimed:
                task = asyncio.create_task(self.deliveries.deliver(delivery))
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

    async def _wait_for_wake(self, timeout: float) -> None:
        # Not `asyncio.wait_for`: on Python 3.11 it can swallow a cancellation that races with the wake-up.
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()

    async def _claim(self, limit: int) -> list[Delivery]:
        return await self._queue.claim_due(limit, self._delivery_lease, self.deliveries.policy.max_attempts)

    async def _fire_due(self) -> int:
        """Fire each schedule whose slot has come, then mark it fired; how many fired. A crash between the two
        fires the slot again, which changes nothing (a slot's event id is derived from it)."""
        due = await self._cron.due(self._clock())
        for item in due:
            await self.deliveries.fire(item.entry, item.scheduled_time)
            await self._cron.mark_fired(item.entry, item.scheduled_time)
        return len(due)

    def _finished(self, task: asyncio.Task[Run]) -> None:
        self._inflight.discard(task)
        self._wake.set()
