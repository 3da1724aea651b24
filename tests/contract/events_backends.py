"""Backends of the event system under contract: module store, event bus, runs log, scheduler and mailer.

A backend kind joins by adding a factory to `BACKEND_FACTORIES`: given a state location and a clock
(epoch ms) it returns the five ports wired to one shared state. Calling the factory twice with the same
location gives a second, independent view of the same state (as a second process would have). It must then
pass the ModuleStore, EventBus and Scheduler contract suites.

Suites import the `*_fixture` functions to use the `backend`, `backend_factory` and `clock` fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcpdo.adapters.local_bus import LocalEventBus
from mcpdo.adapters.local_scheduler import LocalScheduler
from mcpdo.adapters.outbox import LocalOutbox
from mcpdo.adapters.sqlite_modules import SqliteModuleStore
from mcpdo.adapters.sqlite_runs import SqliteRunLog
from mcpdo.ports import (
    EventBus,
    HandlerRef,
    Mailer,
    ModuleStore,
    RunLog,
    ScheduleEntry,
    Scheduler,
    StoredModule,
    Subscription,
)

BACKOFF_BASE = 1.0  # seconds; the suites drive time with FakeClock


class FakeClock:
    """Epoch milliseconds that move only when told to."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:  # 2026-01-01T00:00:00Z
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@dataclass
class EventsBackend:
    modules: ModuleStore
    bus: EventBus
    runs: RunLog
    scheduler: Scheduler
    mailer: Mailer

    async def close(self) -> None:
        for port in (self.modules, self.bus, self.runs, self.scheduler, self.mailer):
            await port.close()


def _local(location: Path, clock: Callable[[], int]) -> EventsBackend:
    path = location / "state.db"
    return EventsBackend(
        modules=SqliteModuleStore(path),
        bus=LocalEventBus(path, backoff_base=BACKOFF_BASE, clock=clock),
        runs=SqliteRunLog(path),
        scheduler=LocalScheduler(path),
        mailer=LocalOutbox(path, clock=clock),
    )


BACKEND_FACTORIES: dict[str, Callable[[Path, Callable[[], int]], EventsBackend]] = {
    "local": _local,
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
