"""The worker over the local adapters on a real state file: dispatch, retries, lease, crash recovery, cron."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcpdo.adapters.sqlite_deliveries import SqliteDeliveryStore
from mcpdo.adapters.sqlite_leases import SqliteLeases
from mcpdo.adapters.sqlite_modules import SqliteModuleStore
from mcpdo.adapters.sqlite_outbox import SqliteOutbox
from mcpdo.adapters.sqlite_runs import SqliteRunLog
from mcpdo.adapters.sqlite_schedules import SqliteSchedules
from mcpdo.adapters.sqlite_subscriptions import SqliteSubscriptions
from mcpdo.events import (
    SCHEDULE_EVENT_TYPE,
    Deliveries,
    HandlerFailed,
    HandlerOutcome,
    Publisher,
    RetryPolicy,
    schedule_event,
)
from mcpdo.ids import new_id
from mcpdo.ports import Event, HandlerRef, ScheduleEntry, StoredModule, Subscription
from mcpdo.timeparse import format_iso, utc_now
from mcpdo.worker import Step, Worker

pytestmark = pytest.mark.anyio

BASE = 0.05  # back-off base, seconds
TENANT = "acme"
MODULE = "https://acme.test/orders"
FAST = {"poll_interval": 0.05, "cron_interval": 0.05, "lease_ttl": 0.6, "renew_interval": 0.1, "stop_grace": 1.0}


@dataclass
class Handlers:
    """The worker's invoke callback: records every call; `behave` decides what a call does."""

    calls: list[tuple[HandlerRef, Event, float]] = field(default_factory=list)
    behave: Callable[[HandlerRef, Event, int], Awaitable[None]] | None = None

    async def __call__(self, ref: HandlerRef, event: Event) -> HandlerOutcome:
        self.calls.append((ref, event, time.monotonic()))
        if self.behave is not None:
            await self.behave(ref, event, len(self.calls))
        return HandlerOutcome(
            logs=({"level": "info", "message": f"handled {event.id}", "timestamp": format_iso(utc_now())},)
        )

    def event_ids(self) -> list[str]:
        return [event.id for _, event, _ in self.calls]


@dataclass
class Folder:
    """One view of a state folder, as one process would open it."""

    path: Path
    modules: SqliteModuleStore
    subscriptions: SqliteSubscriptions
    schedules: SqliteSchedules
    queue: SqliteDeliveryStore
    runs: SqliteRunLog
    outbox: SqliteOutbox
    publisher: Publisher = field(init=False)
    workers: list[Worker] = field(default_factory=list)
    leases: list[SqliteLeases] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.publisher = Publisher(self.subscriptions, self.queue)

    @classmethod
    def open(cls, path: Path) -> Folder:
        db = path / "state.db"
        return cls(
            path=db,
            modules=SqliteModuleStore(db),
            subscriptions=SqliteSubscriptions(db),
            schedules=SqliteSchedules(db),
            queue=SqliteDeliveryStore(db),
            runs=SqliteRunLog(db),
            outbox=SqliteOutbox(db),
        )

    def worker(self, invoke: Handlers, clock: Callable[[], datetime] = utc_now, **options: Any) -> Worker:
        leases = SqliteLeases(self.path)
        self.leases.append(leases)
        deliveries = Deliveries(
            self.queue,
            self.publisher,
            invoke,
            self.runs,
            subscriptions=self.subscriptions,
            schedules=self.schedules,
            mailer=self.outbox,
            policy=RetryPolicy(backoff_base=BASE),
            clock=clock,
        )
        worker = Worker(self.queue, self.schedules, leases, deliveries, clock=clock, **{**FAST, **options})
        self.workers.append(worker)
        return worker

    async def close(self) -> None:
        for worker in self.workers:
            await worker.stop()
        ports = (self.modules, self.subscriptions, self.schedules, self.queue, self.runs, self.outbox, *self.leases)
        for port in ports:
            await port.close()


@pytest.fixture
async def folder(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Folder]:
    opened = Folder.open(tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


def stored(version: int = 1, module_id: str = MODULE) -> StoredModule:
    return StoredModule(
        tenant=TENANT,
        id=module_id,
        version=version,
        type="Workflow",
        source="",
        code="",
        owner={"id": "usr_1"},
        exports=(),
        metadata={},
        created_at=format_iso(utc_now()),
    )


async def register(
    folder: Folder,
    patterns: list[str] | None = None,
    schedules: list[str] | None = None,
    version: int = 1,
    first_index: int = 0,
) -> list[HandlerRef]:
    mod = stored(version)
    refs: list[HandlerRef] = []
    subs, entries = [], []
    for offset, pattern in enumerate(patterns or []):
        ref = HandlerRef(TENANT, MODULE, version, first_index + offset)
        subs.append(Subscription(ref, pattern))
        refs.append(ref)
    for offset, text in enumerate(schedules or [], start=len(refs)):
        ref = HandlerRef(TENANT, MODULE, version, first_index + offset)
        entries.append(ScheduleEntry(ref, text))
        refs.append(ref)
    await folder.modules.save(mod)
    await folder.subscriptions.sync(mod, subs)
    await folder.schedules.sync(mod, entries)
    return refs


def event(type: str = "Order.created", data: Any = None, id: str | None = None) -> Event:
    event_id = id or new_id("Event")
    return Event(
        id=event_id,
        type=type,
        data={"total": 10} if data is None else data,
        source="test",
        time=format_iso(utc_now()),
        tenant=TENANT,
        correlation_id=event_id,
    )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.02)


async def leader_of(workers: list[Worker]) -> Worker:
    async def one_leads() -> bool:
        return sum(worker.is_leader for worker in workers) == 1

    await eventually(one_leads)
    return next(worker for worker in workers if worker.is_leader)


# -- dispatch ----------------------------------------------------------------------------------------


async def test_a_published_event_is_delivered_as_handler_data_and_event_and_its_run_is_logged(
    folder: Folder,
) -> None:
    [ref] = await register(folder, ["Order.*"])
    handlers = Handlers()
    worker = folder.worker(handlers)
    await worker.start()
    sent = event(data={"total": 42})
    await folder.publisher.publish(sent)
    worker.notify()

    async def delivered() -> bool:
        return [d.status for d in await folder.queue.deliveries(sent.id)] == ["done"]

    await eventually(delivered)
    [(called_ref, called_event, _)] = handlers.calls
    assert called_ref == ref and called_event == sent
    [run] = await folder.runs.runs(TENANT)
    assert (run.status, run.event_id, run.event_type, run.handler, run.attempt) == (
        "ok",
        sent.id,
        "Order.created",
        ref,
        1,
    )
    assert run.logs[0]["message"] == f"handled {sent.id}"


async def test_notify_wakes_the_dispatcher_without_waiting_for_the_poll(folder: Folder) -> None:
    await register(folder, ["Order.created"])
    handlers = Handlers()
    worker = folder.worker(handlers, poll_interval=30.0)
    await worker.start()
    await leader_of([worker])
    await anyio.sleep(0.1)
    started = time.monotonic()
    await folder.publisher.publish(event())
    worker.notify()

    async def handled() -> bool:
        return len(handlers.calls) == 1

    await eventually(handled, timeout=2.0)
    assert time.monotonic() - started < 1.0


async def test_handlers_run_concurrently_up_to_the_bound(folder: Folder) -> None:
    await register(folder, ["Order.created"])
    running, peak = 0, 0

    async def slow(ref: HandlerRef, ev: Event, n: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.15)
        running -= 1

    handlers = Handlers(behave=slow)
    worker = folder.worker(handlers, concurrency=3)
    await worker.start()
    for _ in range(7):
        await folder.publisher.publish(event())
    worker.notify()

    async def all_done() -> bool:
        return len(await folder.runs.runs(TENANT)) == 7

    await eventually(all_done)
    assert peak == 3


# -- retries, dead letters, replay -------------------------------------------------------------------


async def test_a_failing_handler_is_retried_with_back_off_then_dead_lettered_then_replayed(folder: Folder) -> None:
    [ref] = await register(folder, ["Order.created"])
    healthy = False

    async def flaky(ref: HandlerRef, ev: Event, n: int) -> None:
        if not healthy:
            raise HandlerFailed(
                f"boom {n}", logs=({"level": "error", "message": f"attempt {n}", "timestamp": format_iso(utc_now())},)
            )

    handlers = Handlers(behave=flaky)
    worker = folder.worker(handlers)
    await worker.start()
    sent = event()
    await folder.publisher.publish(sent)
    worker.notify()

    async def dead() -> bool:
        return len(await folder.queue.dead_letters(TENANT)) == 1

    await eventually(dead)
    assert len(handlers.calls) == 4  # 1 attempt + 3 retries
    times = [at for _, _, at in handlers.calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for gap, wait in zip(gaps, (BASE, 2 * BASE, 4 * BASE), strict=True):
        assert gap >= wait * 0.9
    [letter] = await folder.queue.dead_letters(TENANT)
    assert letter.last_error == "boom 4" and letter.handler == ref
    runs = await folder.runs.runs(TENANT)
    assert [r.status for r in runs] == ["error"] * 4
    assert [r.attempt for r in runs] == [4, 3, 2, 1]
    assert runs[0].logs[0]["message"] == "attempt 4" and runs[0].error == "boom 4"

    healthy = True
    await folder.queue.replay(letter.id)
    worker.notify()

    async def done() -> bool:
        return [d.status for d in await folder.queue.deliveries(sent.id)] == ["done"]

    await eventually(done)
    assert len(handlers.calls) == 5
    assert await folder.queue.dead_letters() == []


# -- idempotency -------------------------------------------------------------------------------------


async def test_a_completed_delivery_is_never_run_again_even_if_the_event_is_published_again(
    folder: Folder,
    tmp_path: Path,
) -> None:
    await register(folder, ["Order.created"])
    handlers = Handlers()
    worker = folder.worker(handlers)
    await worker.start()
    sent = event()
    await folder.publisher.publish(sent)
    await folder.publisher.publish(sent)
    worker.notify()

    async def handled() -> bool:
        return len(handlers.calls) >= 1

    await eventually(handled)
    await folder.publisher.publish(sent)
    worker.notify()
    await worker.stop()

    # A fresh process on the same folder finds nothing left to do.
    second = Folder.open(tmp_path)
    try:
        later = Handlers()
        assert await second.worker(later).run_once() == Step(leader=True, fired=0, delivered=0)
        assert later.calls == []
    finally:
        await second.close()
    assert handlers.event_ids() == [sent.id]


# -- the lease ---------------------------------------------------------------------------------------


async def test_only_the_lease_holder_dispatches_and_another_takes_over_when_it_stops(
    tmp_path: Path, anyio_backend: str
) -> None:
    first, second = Folder.open(tmp_path), Folder.open(tmp_path)
    try:
        await register(first, ["Order.created"])
        handlers = {id(first): Handlers(), id(second): Handlers()}
        workers = [first.worker(handlers[id(first)]), second.worker(handlers[id(second)])]
        for worker in workers:
            await worker.start()
        leader = await leader_of(workers)
        follower = next(worker for worker in workers if worker is not leader)
        leases = SqliteLeases(first.path)
        assert await leases.holder("worker") == leader.owner
        await leases.close()
        sent = [event() for _ in range(6)]
        for item in sent:
            await first.publisher.publish(item)
        for worker in workers:
            worker.notify()

        async def all_handled() -> bool:
            return sum(len(h.calls) for h in handlers.values()) == len(sent)

        await eventually(all_handled)
        # Nothing is left for anyone: the follower may not dispatch, and the leader finds nothing due.
        assert await follower.run_once() == Step(leader=False)
        assert (await leader.run_once()).delivered == 0
        by_leader = handlers[id(first) if leader is workers[0] else id(second)]
        by_follower = handlers[id(second) if leader is workers[0] else id(first)]
        assert sorted(by_leader.event_ids()) == sorted(e.id for e in sent)
        assert by_follower.calls == [] and not follower.is_leader

        await leader.stop()
        await eventually(lambda: _true(follower.is_leader), timeout=2.0)
        more = event()
        await second.publisher.publish(more)
        follower.notify()

        async def taken_over() -> bool:
            return more.id in by_follower.event_ids()

        await eventually(taken_over)
        assert more.id not in by_leader.event_ids()
    finally:
        await first.close()
        await second.close()


async def _true(value: bool) -> bool:
    return value


# -- crash recovery ----------------------------------------------------------------------------------


async def test_a_delivery_left_running_by_a_dead_process_is_run_again_once_its_lease_expires(
    folder: Folder,
) -> None:
    await register(folder, ["Order.created"])
    crashed, finished = event(), event()
    await folder.publisher.publish(crashed)
    await folder.publisher.publish(finished)
    # The dead process: it held the worker lease, had claimed both, and completed only one.
    leases = SqliteLeases(folder.path)
    assert await leases.acquire("worker", "dead-process", ttl_seconds=0.3)
    await leases.close()
    claimed = await folder.queue.claim_due(10, 120, RetryPolicy().max_attempts)
    await folder.queue.complete(next(d for d in claimed if d.event.id == finished.id))

    handlers = Handlers()
    worker = folder.worker(handlers)
    await worker.start()

    async def recovered() -> bool:
        return [d.status for d in await folder.queue.deliveries(crashed.id)] == ["done"]

    await eventually(recovered, timeout=3.0)
    assert handlers.event_ids() == [crashed.id]
    [delivery] = await folder.queue.deliveries(crashed.id)
    assert delivery.attempts == 2


_CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from mcpdo.adapters.sqlite_deliveries import SqliteDeliveryStore
    from mcpdo.adapters.sqlite_leases import SqliteLeases
    from mcpdo.adapters.sqlite_runs import SqliteRunLog
    from mcpdo.adapters.sqlite_schedules import SqliteSchedules
    from mcpdo.adapters.sqlite_subscriptions import SqliteSubscriptions
    from mcpdo.events import Deliveries, HandlerOutcome, Publisher
    from mcpdo.worker import Worker

    db, log = Path(sys.argv[1]), Path(sys.argv[2])

    async def invoke(ref, event):
        with log.open("a") as out:
            out.write(f"start {event.id}\\n")
        if event.data.get("slow"):
            await asyncio.sleep(60)
        with log.open("a") as out:
            out.write(f"done {event.id}\\n")
        return HandlerOutcome()

    async def main():
        queue, schedules, subscriptions = SqliteDeliveryStore(db), SqliteSchedules(db), SqliteSubscriptions(db)
        deliveries = Deliveries(queue, Publisher(subscriptions, queue), invoke, SqliteRunLog(db),
                                subscriptions=subscriptions, schedules=schedules)
        worker = Worker(queue, schedules, SqliteLeases(db), deliveries,
                        concurrency=2, poll_interval=0.05, lease_ttl=1.0, renew_interval=0.2)
        await worker.start()
        await asyncio.sleep(120)

    asyncio.run(main())
""")


async def test_after_kill_9_every_accepted_event_is_delivered_and_completed_ones_are_not_rerun(
    folder: Folder,
    tmp_path: Path,
) -> None:
    await register(folder, ["Order.created"])
    fast = [event(data={"slow": False}) for _ in range(3)]
    slow = [event(data={"slow": True}) for _ in range(2)]
    for item in fast + slow:
        await folder.publisher.publish(item)
    log = tmp_path / "child.log"
    log.touch()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(folder.path), str(log)], env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:

        async def busy() -> bool:
            lines = log.read_text().splitlines()
            return (
                sum(line.startswith("done") for line in lines) == 3
                and sum(line.startswith("start") for line in lines) == 5
            )

        await eventually(busy, timeout=10.0)
        # Accepted while both of the child's slots are busy: it cannot have started it.
        await folder.publisher.publish(queued := event(data={"slow": False}))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    done_before = {line.split()[1] for line in log.read_text().splitlines() if line.startswith("done")}
    assert done_before == {e.id for e in fast}

    handlers = Handlers()
    worker = folder.worker(handlers)
    await worker.start()
    expected = {e.id for e in slow} | {queued.id}

    async def all_delivered() -> bool:
        statuses = [d.status for e in fast + slow + [queued] for d in await folder.queue.deliveries(e.id)]
        return statuses == ["done"] * 6

    await eventually(all_delivered, timeout=5.0)
    assert sorted(handlers.event_ids()) == sorted(expected)


# -- cron --------------------------------------------------------------------------------------------


def shifted_clock(target: datetime) -> Callable[[], datetime]:
    """A clock that reads `target` now and then runs at real speed."""
    offset = target - utc_now()
    return lambda: utc_now() + offset


async def test_a_schedule_fires_within_one_second_of_its_slot(folder: Folder) -> None:
    [ref] = await register(folder, schedules=["1m"])
    slot = (utc_now() + timedelta(minutes=5)).replace(second=0, microsecond=0)
    clock = shifted_clock(slot - timedelta(seconds=0.6))
    fired_at: list[datetime] = []

    async def note(ref: HandlerRef, ev: Event, n: int) -> None:
        fired_at.append(clock())

    handlers = Handlers(behave=note)
    await folder.worker(handlers, clock=clock, cron_interval=0.25).start()

    async def fired() -> bool:
        return len(handlers.calls) == 1

    await eventually(fired, timeout=3.0)
    [(called, fire, _)] = handlers.calls
    assert called == ref
    assert fire.type == SCHEDULE_EVENT_TYPE
    assert fire.data == {"schedule": "1m", "scheduledTime": format_iso(slot)}
    assert timedelta(0) <= fired_at[0] - slot < timedelta(seconds=1)
    [run] = await folder.runs.runs(TENANT)
    assert run.schedule == "1m" and run.status == "ok"


async def test_a_schedule_missed_during_downtime_fires_once_on_restart(folder: Folder) -> None:
    [ref] = await register(folder, schedules=["1m"])
    before = (utc_now() - timedelta(hours=1)).replace(second=5, microsecond=0)
    assert await folder.schedules.due(before) == []  # the last process saw it, then went down
    now = (utc_now() + timedelta(minutes=30)).replace(second=10, microsecond=0)
    handlers = Handlers()
    worker = folder.worker(handlers, clock=shifted_clock(now))
    assert await worker.run_once() == Step(leader=True, fired=1, delivered=1)
    assert await worker.run_once() == Step(leader=True, fired=0, delivered=0)
    await worker.stop()
    [(called, fire, _)] = handlers.calls
    assert called == ref
    assert fire.data["scheduledTime"] == format_iso(now.replace(second=0))


async def test_a_scheduled_slot_queued_twice_is_delivered_once(folder: Folder) -> None:
    await register(folder, schedules=["1m"])
    before = (utc_now() - timedelta(hours=1)).replace(second=5, microsecond=0)
    await folder.schedules.due(before)
    now = utc_now().replace(second=10, microsecond=0) + timedelta(minutes=30)
    [due] = await folder.schedules.due(now)
    # A process that queued the fire and died before recording it: the restart queues the same slot again.
    await folder.publisher.enqueue(schedule_event(due.entry, due.scheduled_time), due.entry.handler)
    handlers = Handlers()
    worker = folder.worker(handlers, clock=shifted_clock(now))
    assert await worker.run_once() == Step(leader=True, fired=1, delivered=1)
    assert await worker.run_once() == Step(leader=True, fired=0, delivered=0)
    await worker.stop()
    assert len(handlers.calls) == 1


# -- re-registration ---------------------------------------------------------------------------------


async def test_events_published_while_a_module_is_re_registered_run_exactly_once(
    folder: Folder, tmp_path: Path
) -> None:
    await register(folder, ["Order.created"], version=1, first_index=1)
    handlers = Handlers()
    worker = folder.worker(handlers, concurrency=8)
    await worker.start()
    publisher = Folder.open(tmp_path)
    sent: list[str] = []
    stop = threading.Event()

    def publish_thread() -> None:
        async def run() -> None:
            while not stop.is_set() or len(sent) < 40:
                item = event()
                await publisher.publisher.publish(item)
                sent.append(item.id)

        asyncio.run(run())

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, publish_thread)
            for version in range(2, 30):
                await register(folder, ["Order.created"], version=version, first_index=version % 2)
                await anyio.sleep(0.001)
            stop.set()
        worker.notify()

        async def all_ran() -> bool:
            return len(handlers.calls) >= len(sent)

        await eventually(all_ran, timeout=10.0)
        assert (await worker.run_once()).delivered == 0  # nothing left over to run a second time
        assert sorted(handlers.event_ids()) == sorted(sent)
    finally:
        await publisher.close()


# -- mail ----------------------------------------------------------------------------------------------


async def test_email_send_without_a_user_handler_lands_in_the_outbox_once(folder: Folder) -> None:
    handlers = Handlers()
    worker = folder.worker(handlers)
    await worker.start()
    mail = event("Email.send", {"to": "alice@example.com", "subject": "Shipped", "body": "On its way"})
    await folder.publisher.publish(mail)
    worker.notify()

    async def sent() -> bool:
        return len(await folder.outbox.list()) == 1

    await eventually(sent)
    [message] = await folder.outbox.list()
    assert message["to"] == "alice@example.com" and message["eventId"] == mail.id
    assert handlers.calls == []
    [run] = await folder.runs.runs(TENANT)
    assert run.status == "ok" and run.handler.module_id == "builtin:mailer"


async def test_an_email_without_a_recipient_is_dead_lettered_with_the_reason(folder: Folder) -> None:
    worker = folder.worker(Handlers())
    await worker.start()
    await folder.publisher.publish(event("Email.send", {"subject": "nobody"}))
    worker.notify()

    async def dead() -> bool:
        return len(await folder.queue.dead_letters()) == 1

    await eventually(dead)
    [letter] = await folder.queue.dead_letters()
    assert letter.last_error is not None and "'to'" in letter.last_error


async def test_stopping_releases_the_lease_at_once(folder: Folder) -> None:
    worker = folder.worker(Handlers(), lease_ttl=30.0)
    await worker.start()
    await leader_of([worker])
    await worker.stop()
    leases = SqliteLeases(folder.path)
    try:
        assert await leases.holder("worker") is None
        assert await leases.acquire("worker", "someone-else", 5.0)
    finally:
        await leases.close()
