"""ModuleStore on SQLite: module versions, and the live subscriptions and schedules of each module.

A save writes the new version and swaps the module's subscriptions and schedules in one transaction, and
the local event bus reads the subscriptions inside its own publish transaction, so an event published
while a module is re-registered goes to the old handlers or to the new ones, never to both or neither.
"""

from __future__ import annotations

import builtins
import json
import os
from typing import Any

from mcpdo.adapters.sqlite_events_db import EventsDatabase
from mcpdo.errors import Conflict, InputError
from mcpdo.patterns import validate_pattern
from mcpdo.ports import HandlerRef, ScheduleEntry, StoredModule, Subscription
from mcpdo.schedules import parse_schedule

_COLUMNS = "tenant, id, version, type, source, code, owner, exports, metadata, created_at"


class SqliteModuleStore:
    """Registered modules in the state database file (its own connection)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = EventsDatabase(path, "module store")

    async def save(
        self, module: StoredModule, subscriptions: builtins.list[Subscription], schedules: builtins.list[ScheduleEntry]
    ) -> None:
        """Store a new version and replace the module's live subscriptions and schedules, in one transaction."""
        _check_version(module.version)
        for sub in subscriptions:
            _check_handler(module, sub.handler, "subscription")
            validate_pattern(sub.pattern)
        for entry in schedules:
            _check_handler(module, entry.handler, "schedule")
            parse_schedule(entry.schedule)
        for what, refs in (
            ("subscription", [s.handler.index for s in subscriptions]),
            ("schedule", [e.handler.index for e in schedules]),
        ):
            if len(set(refs)) != len(refs):
                raise InputError(f"Module {module.id}: two {what}s share a handler index")
        row = (
            module.tenant,
            module.id,
            module.version,
            module.type,
            module.source,
            module.code,
            _dumps(module.owner),
            _dumps(list(module.exports)),
            _dumps(module.metadata),
            module.created_at,
        )
        with self._db.transaction() as conn:
            exists = conn.execute(
                "SELECT 1 FROM modules WHERE tenant = ? AND id = ? AND version = ?",
                (module.tenant, module.id, module.version),
            ).fetchone()
            if exists:
                raise Conflict(f"Module {module.id} version {module.version} already exists")
            latest = conn.execute(
                "SELECT MAX(version) FROM modules WHERE tenant = ? AND id = ?", (module.tenant, module.id)
            ).fetchone()[0]
            if latest is not None and module.version < latest:
                raise Conflict(f"Module {module.id} version {module.version} is older than the latest version {latest}")
            conn.execute(f"INSERT INTO modules ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            for table in ("subscriptions", "schedules"):
                conn.execute(f"DELETE FROM {table} WHERE tenant = ? AND module_id = ?", (module.tenant, module.id))
            conn.executemany(
                "INSERT INTO subscriptions (tenant, module_id, version, idx, pattern) VALUES (?, ?, ?, ?, ?)",
                [(module.tenant, module.id, module.version, s.handler.index, s.pattern) for s in subscriptions],
            )
            conn.executemany(
                "INSERT INTO schedules (tenant, module_id, version, idx, schedule) VALUES (?, ?, ?, ?, ?)",
                [(module.tenant, module.id, module.version, e.handler.index, e.schedule) for e in schedules],
            )

    async def get(self, tenant: str, id: str, version: int | None = None) -> StoredModule | None:
        """One version of a module (the latest when `version` is None), or None."""
        with self._db.transaction(immediate=False) as conn:
            if version is None:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM modules WHERE tenant = ? AND id = ? ORDER BY version DESC LIMIT 1",
                    (tenant, id),
                ).fetchone()
            else:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM modules WHERE tenant = ? AND id = ? AND version = ?", (tenant, id, version)
                ).fetchone()
        return None if row is None else _module(row)

    async def next_version(self, tenant: str, id: str) -> int:
        """The version number the next save of this module should carry (1 for a new module)."""
        with self._db.transaction(immediate=False) as conn:
            latest = conn.execute(
                "SELECT MAX(version) FROM modules WHERE tenant = ? AND id = ?", (tenant, id)
            ).fetchone()[0]
        return 1 if latest is None else int(latest) + 1

    async def list(self, tenant: str) -> builtins.list[StoredModule]:
        """The latest version of every module of `tenant`, by id."""
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM modules AS m WHERE tenant = ? AND version = "
                "(SELECT MAX(version) FROM modules WHERE tenant = m.tenant AND id = m.id) ORDER BY id",
                (tenant,),
            ).fetchall()
        return [_module(row) for row in rows]

    async def subscriptions(self, tenant: str) -> builtins.list[Subscription]:
        """The live subscriptions of `tenant`, by module and handler index."""
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(
                "SELECT tenant, module_id, version, idx, pattern FROM subscriptions "
                "WHERE tenant = ? ORDER BY module_id, idx",
                (tenant,),
            ).fetchall()
        return [Subscription(HandlerRef(row[0], row[1], row[2], row[3]), row[4]) for row in rows]

    async def schedules(self, tenant: str | None = None) -> builtins.list[ScheduleEntry]:
        """The live schedules of `tenant` (of every tenant when None)."""
        sql = "SELECT tenant, module_id, version, idx, schedule FROM schedules"
        params: tuple[str, ...] = ()
        if tenant is not None:
            sql, params = sql + " WHERE tenant = ?", (tenant,)
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(sql + " ORDER BY tenant, module_id, idx", params).fetchall()
        return [ScheduleEntry(HandlerRef(row[0], row[1], row[2], row[3]), row[4]) for row in rows]

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()


def _check_version(version: object) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"A module version must be a positive integer, got {version!r}")


def _check_handler(module: StoredModule, ref: HandlerRef, what: str) -> None:
    if (ref.tenant, ref.module_id, ref.version) != (module.tenant, module.id, module.version):
        raise InputError(
            f"A {what} of module {module.id} version {module.version} (tenant {module.tenant}) points at "
            f"{ref.module_id} version {ref.version} (tenant {ref.tenant})"
        )


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Module data must be JSON-serializable: {exc}") from exc


def _module(row: tuple[Any, ...]) -> StoredModule:
    tenant, id, version, type, source, code, owner, exports, metadata, created_at = row
    return StoredModule(
        tenant=tenant,
        id=id,
        version=version,
        type=type,
        source=source,
        code=code,
        owner=json.loads(owner),
        exports=tuple(json.loads(exports)),
        metadata=json.loads(metadata),
        created_at=created_at,
    )
