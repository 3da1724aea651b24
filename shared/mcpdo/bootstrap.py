"""The one place that reads Settings and wires adapters into the core."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from mcpdo.adapters.local_bus import LocalEventBus
from mcpdo.adapters.local_scheduler import LocalScheduler
from mcpdo.adapters.outbox import LocalOutbox
from mcpdo.adapters.sqlite_keys import SqliteKeyStore
from mcpdo.adapters.sqlite_leases import SqliteLeases
from mcpdo.adapters.sqlite_modules import SqliteModuleStore
from mcpdo.adapters.sqlite_runs import SqliteRunLog
from mcpdo.adapters.sqlite_store import SqliteEntityStore
from mcpdo.auth import Authenticator
from mcpdo.execution import Executor
from mcpdo.modules import ModuleService, resolve_import
from mcpdo.ports import Closable, EntityStore, Event, EventBus, KeyStore, Leases, Mailer, ModuleStore, RunLog, Scheduler
from mcpdo.sandbox.admission import Caps
from mcpdo.sandbox.pool import Sandbox
from mcpdo.settings import Settings
from mcpdo.tool import DoTool
from mcpdo.worker import Worker


class Published:
    """The publish step the core calls for `send`: the bus accepts the event, then listeners (the local worker)
    are told there is work. Listeners are added after the worker exists, so wiring has no cycle."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._listeners: list[Callable[[], None]] = []

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    async def __call__(self, event: Event) -> None:
        await self._bus.publish(event)
        for listener in self._listeners:
            listener()


@dataclass(frozen=True)
class Adapters:
    """The backends of one deployment: `build_local` chooses the embedded ones (a later `build_aws` the AWS
    ones); the core sees only their ports."""

    store: EntityStore
    keys: KeyStore
    modules: ModuleStore
    bus: EventBus
    runs: RunLog
    scheduler: Scheduler
    mailer: Mailer
    leases: Leases
    sandbox: Sandbox

    def closables(self) -> tuple[Closable, ...]:
        """Every backend that holds a connection, in the order they are released."""
        return (self.bus, self.runs, self.scheduler, self.mailer, self.leases, self.modules, self.store, self.keys)


@dataclass
class App:
    """Everything one process serves with, built once."""

    settings: Settings
    adapters: Adapters
    auth: Authenticator
    worker: Worker
    executor: Executor
    module_service: ModuleService
    tool: DoTool

    async def start(self, *, worker: bool = True) -> None:
        """Warm the sandbox; long-lived processes also run the worker (deliveries and schedules)."""
        await self.adapters.sandbox.start()
        if worker:
            await self.worker.start()

    async def close(self) -> None:
        await self.worker.stop()
        await self.adapters.sandbox.close()
        for closable in self.adapters.closables():
            await closable.close()


def build_app(settings: Settings, adapters: Adapters) -> App:
    """The one place that connects the core: tool, executor, module service, worker, over `adapters`."""
    publish = Published(adapters.bus)
    resolver = partial(resolve_import, adapters.modules, settings.default_context)
    executor = Executor(settings, adapters.sandbox, adapters.store, publish, resolver)
    auth = Authenticator(adapters.keys, settings.default_tenant)
    service = ModuleService(adapters.modules, executor, settings.default_context, auth.still_valid)
    worker = Worker(
        adapters.bus, adapters.scheduler, adapters.leases, service.invoke, runs=adapters.runs, mailer=adapters.mailer
    )
    publish.listen(worker.notify)
    return App(
        settings=settings,
        adapters=adapters,
        auth=auth,
        worker=worker,
        executor=executor,
        module_service=service,
        tool=DoTool(executor.run_script, service.register),
    )


def build_local(settings: Settings) -> App:
    """The embedded default: SQLite for everything durable, a pool of warm Node runners, an in-process worker."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.database_path
    bus = LocalEventBus(
        path,
        backoff_base=settings.retry_base_seconds,
        hop_limit=settings.event_hop_limit,
        max_deliveries_per_send=settings.max_deliveries_per_send,
    )
    sandbox = Sandbox(
        node_path=settings.node_path,
        runner_path=settings.runner_path,
        size=settings.sandbox_pool_size,
        max_size=settings.sandbox_pool_max,
        wait_ms=settings.sandbox_wait_ms,
        memory_bytes=settings.memory_bytes,
        caps=Caps(
            per_key=settings.concurrency_per_key,
            per_anonymous=settings.concurrency_per_anonymous,
            anonymous_runners=settings.anonymous_runners,
        ),
    )
    adapters = Adapters(
        store=SqliteEntityStore(path),
        keys=SqliteKeyStore(path),
        modules=SqliteModuleStore(path),
        bus=bus,
        runs=SqliteRunLog(path),
        scheduler=LocalScheduler(path),
        mailer=LocalOutbox(path),
        leases=SqliteLeases(path),
        sandbox=sandbox,
    )
    return build_app(settings, adapters)
