"""The one place that reads Settings and wires adapters into the core."""

from __future__ import annotations

from dataclasses import dataclass

from mcpdo.adapters.sqlite_keys import SqliteKeyStore
from mcpdo.adapters.sqlite_store import SqliteEntityStore
from mcpdo.auth import Authenticator
from mcpdo.execution import Executor
from mcpdo.identity import Identity
from mcpdo.ports import EntityStore
from mcpdo.sandbox.pool import RunnerPool
from mcpdo.sandbox.types import HostCall
from mcpdo.sdk.host import Host
from mcpdo.settings import Settings
from mcpdo.tool import DoTool


@dataclass
class App:
    """Everything one process serves with, built once."""

    settings: Settings
    store: EntityStore
    keys: SqliteKeyStore
    auth: Authenticator
    sandbox: RunnerPool
    executor: Executor
    tool: DoTool

    async def close(self) -> None:
        await self.sandbox.close()
        await self.store.close()
        await self.keys.close()


def build_local(settings: Settings, *, start_sandbox: bool = True) -> App:
    """The embedded default: SQLite for entities and keys, a pool of warm Node runners."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteEntityStore(settings.database_path)
    keys = SqliteKeyStore(settings.database_path)
    sandbox = RunnerPool(size=settings.sandbox_pool_size, node_path=settings.node_path,
                         runner_dir=settings.runtime_dir)

    def host_for(identity: Identity) -> HostCall:
        return Host(identity, store)

    executor = Executor(settings, sandbox, host_for)
    return App(settings=settings, store=store, keys=keys,
               auth=Authenticator(keys, settings.default_tenant), sandbox=sandbox, executor=executor,
               tool=DoTool(executor.run_script))
