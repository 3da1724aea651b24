"""The runs log on the state database: one row per handler run, the latest ones kept."""

from __future__ import annotations

import builtins
import json
import os
from typing import cast

from mcpdo.adapters.sqlite_db import APPEND_LOG_CACHE_KIB, SqliteDatabase
from mcpdo.inputs import check_listing_limit
from mcpdo.ports import HandlerRef, Run

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    tenant      TEXT    NOT NULL,
    module_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    idx         INTEGER NOT NULL,
    status      TEXT    NOT NULL,  -- ok | error
    event_id    TEXT,
    event_type  TEXT,
    schedule    TEXT,
    attempt     INTEGER NOT NULL,
    logs        TEXT    NOT NULL,  -- JSON array of {level, message, timestamp}
    error       TEXT,
    started_at  TEXT    NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant, seq);
"""


class SqliteRunLog:
    """RunLog on the state database file: the latest `keep` runs are kept."""

    def __init__(self, path: str | os.PathLike[str], *, keep: int = 10_000) -> None:
        # Appended to on every delivery and read rarely: a full default page cache would only hold memory.
        self._db = SqliteDatabase(path, what="runs log", schema=SCHEMA, cache_kib=APPEND_LOG_CACHE_KIB)
        self._keep = keep
        self._since_prune = 0

    async def record_run(self, run: Run) -> None:
        """Append a run (a run id already recorded is ignored)."""
        logs = json.dumps(list(run.logs), ensure_ascii=False, default=str)
        handler = run.handler
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO runs (id, tenant, module_id, version, idx, status, event_id, event_type, "
                "schedule, attempt, logs, error, started_at, duration_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    handler.tenant,
                    handler.module_id,
                    handler.version,
                    handler.index,
                    run.status,
                    run.event_id,
                    run.event_type,
                    run.schedule,
                    run.attempt,
                    logs,
                    run.error,
                    run.started_at,
                    run.duration_ms,
                ),
            )
            self._since_prune += 1
            if self._since_prune >= 100:
                self._since_prune = 0
                conn.execute("DELETE FROM runs WHERE seq <= (SELECT MAX(seq) FROM runs) - ?", (self._keep,))

    async def runs(self, tenant: str | None = None, limit: int = 100) -> builtins.list[Run]:
        """The latest runs, newest first."""
        check_listing_limit(limit)
        where, params = "", cast(tuple[str, ...], ())
        if tenant is not None:
            where, params = "WHERE tenant = ? ", (tenant,)
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(
                "SELECT id, tenant, module_id, version, idx, status, event_id, event_type, schedule, attempt, "
                f"logs, error, started_at, duration_ms FROM runs {where}ORDER BY seq DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [
            Run(
                id=r[0],
                handler=HandlerRef(r[1], r[2], r[3], r[4]),
                status=r[5],
                event_id=r[6],
                event_type=r[7],
                schedule=r[8],
                attempt=r[9],
                logs=tuple(json.loads(r[10])),
                error=r[11],
                started_at=r[12],
                duration_ms=r[13],
            )
            for r in rows
        ]

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()
