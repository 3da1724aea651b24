"""The audit log on the state database: one row per execution, kept until `purge` drops it.

Rows are listed by start time then id (the port's order), not by insertion as the runs log is: an execution
is recorded when it ends, so a long one is recorded after shorter ones that started later. Start times are the
core's fixed-width ISO text, so the text order of the column is time order and the indexes serve both the
listings (per tenant, and all tenants) and `purge`.
"""

from __future__ import annotations

import builtins
import os
from typing import Any

from mcpdo.adapters.memory_audit import calls_from_text, calls_text, checked_instant
from mcpdo.adapters.sqlite_db import APPEND_LOG_CACHE_KIB, SqliteDatabase
from mcpdo.inputs import check_listing_limit
from mcpdo.ports import ExecutionRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    id          TEXT    PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    caller      TEXT    NOT NULL,
    auth_type   TEXT    NOT NULL,  -- apiKey | oauth | anonymous
    kind        TEXT    NOT NULL,  -- script | module | docs | handler
    script_hash TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,  -- ok | error
    error_kind  TEXT,
    calls       TEXT    NOT NULL   -- JSON object: SDK method -> count
);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit_log (tenant, started_at, id);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_log (started_at, id);
"""

_COLUMNS = "id, tenant, caller, auth_type, kind, script_hash, started_at, duration_ms, outcome, error_kind, calls"


class SqliteAuditLog:
    """AuditLog on the state database file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        # Appended to on every execution and read rarely: a full default page cache would only hold memory.
        self._db = SqliteDatabase(path, what="audit log", schema=SCHEMA, cache_kib=APPEND_LOG_CACHE_KIB)

    async def record(self, entry: ExecutionRecord) -> None:
        """Keep `entry` (an id already kept is ignored: the first record stays)."""
        with self._db.transaction() as conn:
            conn.execute(
                f"INSERT OR IGNORE INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _row(entry),
            )

    async def list(
        self, tenant: str | None = None, limit: int = 100, before: str | None = None
    ) -> builtins.list[ExecutionRecord]:
        """Entries newest first (start time, then id), of one tenant or all, strictly before `before`."""
        check_listing_limit(limit)
        conditions: builtins.list[str] = []
        params: builtins.list[str] = []
        if tenant is not None:
            conditions.append("tenant = ?")
            params.append(tenant)
        if before is not None:
            conditions.append("started_at < ?")
            params.append(checked_instant(before, "before"))
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM audit_log {where}ORDER BY started_at DESC, id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    async def purge(self, older_than: str) -> int:
        """Drop entries that started before `older_than`; how many went."""
        cut = checked_instant(older_than, "older_than")
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM audit_log WHERE started_at < ?", (cut,)).rowcount

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()


def _row(entry: ExecutionRecord) -> tuple[Any, ...]:
    return (
        entry.id,
        entry.tenant,
        entry.caller,
        entry.auth_type,
        entry.kind,
        entry.script_hash,
        entry.started_at,
        entry.duration_ms,
        entry.outcome,
        entry.error_kind,
        calls_text(entry.calls),
    )


def _entry(row: tuple[Any, ...]) -> ExecutionRecord:
    return ExecutionRecord(
        id=row[0],
        tenant=row[1],
        caller=row[2],
        auth_type=row[3],
        kind=row[4],
        script_hash=row[5],
        started_at=row[6],
        duration_ms=row[7],
        outcome=row[8],
        error_kind=row[9],
        calls=calls_from_text(row[10]),
    )
