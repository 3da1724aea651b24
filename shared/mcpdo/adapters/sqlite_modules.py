"""ModuleStore on SQLite: every registered version of every module, per tenant."""

from __future__ import annotations

import builtins
import os
from typing import Any

from mcpdo.adapters.sqlite_db import SqliteDatabase
from mcpdo.errors import Conflict
from mcpdo.ports import StoredModule
from mcpdo.stored_modules import check_version, decode, encode

SCHEMA = """
CREATE TABLE IF NOT EXISTS modules (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    type       TEXT,
    source     TEXT    NOT NULL,
    code       TEXT    NOT NULL,
    owner      TEXT    NOT NULL,  -- JSON object
    exports    TEXT    NOT NULL,  -- JSON array of names
    metadata   TEXT    NOT NULL,  -- JSON object
    created_at TEXT    NOT NULL,  -- ISO-8601
    PRIMARY KEY (tenant, id, version)
);
"""

_COLUMNS = "tenant, id, version, type, source, code, owner, exports, metadata, created_at"


class SqliteModuleStore:
    """Registered modules in the state database file (its own connection)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = SqliteDatabase(path, what="module store", schema=SCHEMA)

    async def save(self, module: StoredModule) -> None:
        """Store a new version; Conflict when that version or a later one exists."""
        check_version(module.version)
        owner, exports, metadata = encode(module)
        row = (
            module.tenant,
            module.id,
            module.version,
            module.type,
            module.source,
            module.code,
            owner,
            exports,
            metadata,
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

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()


def _module(row: tuple[Any, ...]) -> StoredModule:
    tenant, id, version, type, source, code, owner, exports, metadata, created_at = row
    module = StoredModule(tenant, id, version, type, source, code, {}, (), {}, created_at)
    return decode(module, owner, exports, metadata)
