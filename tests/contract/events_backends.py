"""Backends of the event system under contract: module store, subscriptions, schedules, deliveries, runs
log and mailer, with the core event services (`mcpdo.events`) running over them.

A backend kind joins by adding a factory to `BACKEND_FACTORIES`: given a state location and a clock
(epoch ms) it returns the ports wired to one shared state. Calling the factory twice with the same
location gives a second, independent view of the same state (as a second process would have). It must then
pass the ModuleStore, SubscriptionSync, CronTable, DeliveryQueue and event-routing suites.

Suites import the `*_fixture` functions to use the `backend`, `backend_factory` and `clock` fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcpdo.adapters.memory import MemoryMailer, MemoryRunLog
from mcpdo.adapters.memory_events import MemoryDeliveryStore, MemoryModuleStore, MemorySchedules, MemorySubscriptions
from mcpdo.adapters.sqlite_deliveries import SqliteDeliveryStore
from mcpdo.adapters.sqlite_modules import SqliteModuleStore
from mcpdo.adapters.sqlite_outbox import SqliteOutbox
from mcpdo.adapters.sqlite_runs import SqliteRunLog
from mcpdo.adapters.sqlite_schedules import SqliteSchedules
from mcpdo.adapters.sqlite_subscriptions import SqliteSubscriptions
from mcpdo.events import Deliveries, HandlerOutcome, Publisher, RetryPolicy
from mcpdo.modules import check_handlers
from mcpdo.ports import (
    CronTable,
    Delivery,
    DeliveryQueue,
    Event,
    HandlerRef,
    Mailer,
    ModuleStore,
    RunLog,
    ScheduleEntry,
    StoredModule,
    Subscription,
    SubscriptionSync,
)
from mcpdo.timeparse import from_epoch_ms

BACKOFF_BASE = 1.0  # seconds; the suites drive time with FakeClock
LEASE = 30.0


class FakeClock:
    """Epoch milliseconds that move only when told to."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:  # 2026-01-01T00:00:00Z
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


async def _no_handler(handler: HandlerRef, event: Event) -> HandlerOutcome:
    raise AssertionError("the suites drive deliveries by hand")


@dataclass
class EventsBackend:
    """The ports of one backend kind, and the core services over them (default hop limit and send cap)."""

    modules: ModuleStore
    subscriptions: SubscriptionSync
    schedules: CronTable
    queue: DeliveryQueue
    runs: RunLog
    mailer: Mailer
    clock: Callable[[], int]
    publisher: Publisher = field(init=False)
    core: Deliveries = field(init=False)

    def __post_init__(self) -> None:
        self.publisher = Publisher(self.subscriptions, self.queue)
        self.core = Deliveries(
            self.queue,
            self.publisher,
            _no_handler,
            self.runs,
            subscriptions=self.subscriptions,
            schedules=self.schedules,
            mailer=self.mailer,
            policy=RetryPolicy(backoff_base=BACKOFF_BASE),
            clock=lambda: from_epoch_ms(self.clock()),
        )

    async def register(
        self, module: StoredModule, subscriptions: list[Subscription], schedules: list[ScheduleEntry]
    ) -> None:
        """What registering does to the ports: check, store the version, make its handlers live."""
        check_handlers(module, subscriptions, schedules)
        await self.modules.save(module)
        await self.subscriptions.sync(module, subscriptions)
        await self.schedules.sync(module, schedules)

    async def claim(self, limit: int, lease: float = LEASE) -> list[Delivery]:
        """What the local worker does to take work: claim with the core's attempt limit."""
        return await self.queue.claim_due(limit, lease, self.core.policy.max_attempts)

    async def close(self) -> None:
        for port in (self.modules, self.subscriptions, self.schedules, self.queue, self.runs, self.mailer):
            await port.close()


def _sqlite(location: Path, clock: Callable[[], int]) -> EventsBackend:
    path = location / "state.db"
    return EventsBackend(
        modules=SqliteModuleStore(path),
        subscriptions=SqliteSubscriptions(path),
        schedules=SqliteSchedules(path),
        queue=SqliteDeliveryStore(path, clock=clock),
        runs=SqliteRunLog(path),
        mailer=SqliteOutbox(path, clock=clock),
        clock=clock,
    )


# One shared state per location, so a second factory call is a second view of it (as with a file).
_MEMORY_STATES: dict[tuple[Path, int], tuple[Any, ...]] = {}


def _memory(location: Path, clock: Callable[[], int]) -> EventsBackend:
    key = (location, id(clock))
    if key not in _MEMORY_STATES:
        _MEMORY_STATES[key] = (
            MemoryModuleStore(),
            MemorySubscriptions(),
            MemorySchedules(),
            MemoryDeliveryStore(clock=clock),
            MemoryRunLog(),
            MemoryMailer(clock=clock),
        )
    modules, subscriptions, schedules, queue, runs, mailer = _MEMORY_STATES[key]
    return EventsBackend(modules, subscriptions, schedules, queue, runs, mailer, clock)


BACKEND_FACTORIES: dict[str, Callable[[Path, Callable[[], int]], EventsBackend]] = {
    "memory": _memory,
    "sqlite": _sqlite,
}


@pytest.fixture(name="clock")
def clock_fixture() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="backend_factory", params=sorted(BACKEND_FACTORIES))
def backend_factory_fixture(request: pytest.FixtureRequest) -> Callable[[Path, Callable[[], int]], EventsBackend]:
    return BACKEND_FACTORIES[request.param]


@pytest.fixture(name="backend")
async def backend_fixture(
    backend_factory: Callable[[Path, Callable[[], int]], EventsBackend],
    tmp_path: Path,
    clock: FakeClock,
    anyio_backend: str,
) -> AsyncIterator[EventsBackend]:
    """A fresh, empty backend of each kind."""
    events = backend_factory(tmp_path, clock)
    try:
        yield events
    finally:
        await events.close()


def module(
    module_id: str = "https://acme.test/orders", version: int = 1, tenant: str = "acme", **extra: Any
) -> StoredModule:
    fields: dict[str, Any] = {
        "type": "Workflow",
        "source": "---\n$id: x\n---\n",
        "code": "on('Order.created', () => {})",
        "owner": {"id": "usr_1", "tenant": tenant, "roles": ["admin"]},
        "exports": ("total",),
        "metadata": {"title": "Orders"},
        "created_at": "2026-01-01T00:00:00.000Z",
    }
    fields.update(extra)
    return StoredModule(tenant=tenant, id=module_id, version=version, **fields)


def subscription(mod: StoredModule, index: int, pattern: str) -> Subscription:
    return Subscription(HandlerRef(mod.tenant, mod.id, mod.version, index), pattern)


def schedule(mod: StoredModule, index: int, text: str) -> ScheduleEntry:
    return ScheduleEntry(HandlerRef(mod.tenant, mod.id, mod.version, index), text)
