"""The one place that reads Settings and wires adapters into the core."""

from __future__ import annotations

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
from mcpdo.ports import Event, HandlerRef
from mcpdo.sandbox.admission import Caps
from mcpdo.sandbox.pool import Sandbox
from mcpdo.settings import Settings
from mcpdo.tool import DoTool
from mcpdo.worker import HandlerOutcome, Worker


@dataclass
class App:
    """Everything one process serves with, built once."""

    settings: Settings
    store: SqliteEntityStore
    keys: SqliteKeyStore
    auth: Authenticator
    sandbox: Sandbox
    modules: SqliteModuleStore
    bus: LocalEventBus
    runs: SqliteRunLog
    scheduler: LocalScheduler
    outbox: LocalOutbox
    leases: SqliteLeases
    worker: Worker
    executor: Executor
    module_service: ModuleService
    tool: DoTool

    async def start(self, *, worker: bool = True) -> None:
        """Warm the sandbox; long-lived processes also run the worker (deliveries and schedules)."""
        await self.sandbox.start()
        if worker:
            await self.worker.start()

    async def close(self) -> None:
        await self.worker.stop()
        await self.sandbox.close()
        closables = (self.bus, self.runs, self.scheduler, self.outbox, self.leases, self.modules, self.store, self.keys)
        for closable in closables:
            await closable.close()


def build_local(settings: Settings) -> App:
    """The embedded default: SQLite for everything durable, a pool of warm Node runners, an in-process worker."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.database_path
    store = SqliteEntityStore(path)
    modules = SqliteModuleStore(path)
    bus = LocalEventBus(
        path,
        backoff_base=settings.retry_base_seconds,
        hop_limit=settings.event_hop_limit,
        max_deliveries_per_send=settings.max_deliveries_per_send,
    )
    runs = SqliteRunLog(path)
    scheduler = LocalScheduler(path)
    outbox = LocalOutbox(path)
    keys = SqliteKeyStore(path)
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

    async def invoke(handler: HandlerRef, event: Event) -> HandlerOutcome:
        return await service.invoke(handler, event)

    leases = SqliteLeases(path)
    worker = Worker(bus, scheduler, leases, invoke, runs=runs, mailer=outbox)

    async def publish(event: Event) -> None:
        await bus.publish(event)
        worker.notify()

    executor = Executor(settings, sandbox, store, publish, partial(resolve_import, modules, settings.default_context))
    auth = Authenticator(keys, settings.default_tenant)
    service = ModuleService(modules, executor, settings.default_context, auth.still_valid)
    return App(
        settings=settings,
        store=store,
        keys=keys,
        auth=auth,
        sandbox=sandbox,
        modules=modules,
        bus=bus,
        runs=runs,
        scheduler=scheduler,
        outbox=outbox,
        leases=leases,
        worker=worker,
        executor=executor,
        module_service=service,
        tool=DoTool(executor.run_script, service.register),
    )
