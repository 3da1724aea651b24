"""The SQLite tables behind modules, events, schedules, the outbox and the worker lease.

Every adapter of the embedded event system opens its own connection to the state folder's database file
and creates all of these tables, so any of them can be opened first. The tables share one file with the
entity store, so registering a module and publishing an event see each other's writes transactionally.
"""

from __future__ import annotations

import os
import sqlite3

from mcpdo.adapters.sqlite_db import SqliteDatabase

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
-- The live subscriptions and schedules: only the latest version's, replaced together with it.
CREATE TABLE IF NOT EXISTS subscriptions (
    tenant    TEXT    NOT NULL,
    module_id TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    pattern   TEXT    NOT NULL,
    PRIMARY KEY (tenant, module_id, idx)
);
CREATE TABLE IF NOT EXISTS schedules (
    tenant    TEXT    NOT NULL,
    module_id TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    schedule  TEXT    NOT NULL,
    PRIMARY KEY (tenant, module_id, idx)
);
CREATE TABLE IF NOT EXISTS events (
    id             TEXT    PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    type           TEXT    NOT NULL,
    data           TEXT    NOT NULL,  -- JSON
    source         TEXT    NOT NULL,
    time           TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    published_at   INTEGER NOT NULL,  -- epoch ms
    depth          INTEGER NOT NULL DEFAULT 0  -- handler hops from a script or schedule fire (see MIGRATIONS)
);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id        TEXT    NOT NULL,
    handler_id      TEXT    NOT NULL,  -- module_id#index
    id              TEXT    NOT NULL UNIQUE,
    tenant          TEXT    NOT NULL,
    module_id       TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    idx             INTEGER NOT NULL,
    status          TEXT    NOT NULL,  -- pending | running | done | dead
    attempts        INTEGER NOT NULL,  -- attempts started
    next_attempt_at INTEGER NOT NULL,  -- epoch ms
    lease_until     INTEGER,           -- epoch ms, while running
    claim           TEXT,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (event_id, handler_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_by_tenant ON deliveries (tenant, status);
-- Fair claiming: walk the tenants with pending work and take each one's oldest due deliveries by seeks.
CREATE INDEX IF NOT EXISTS deliveries_fair ON deliveries (status, tenant, next_attempt_at, created_at);
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
CREATE TABLE IF NOT EXISTS schedule_state (
    tenant     TEXT    NOT NULL,
    module_id  TEXT    NOT NULL,
    idx        INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    schedule   TEXT    NOT NULL,
    next_fire  INTEGER NOT NULL,  -- epoch ms
    last_fired INTEGER,           -- epoch ms of the slot last fired
    PRIMARY KEY (tenant, module_id, idx)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    key     TEXT    NOT NULL UNIQUE,
    message TEXT    NOT NULL,  -- JSON object
    sent_at INTEGER NOT NULL   -- epoch ms
);
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL  -- epoch ms
);
"""


# Columns added after a table first shipped: (table, column, definition). `CREATE TABLE IF NOT EXISTS` leaves
# an existing file's tables as they were, so each is added when missing; the DEFAULT fills the old rows.
MIGRATIONS: tuple[tuple[str, str, str], ...] = (("events", "depth", "INTEGER NOT NULL DEFAULT 0"),)


class EventsDatabase(SqliteDatabase):
    """The state database with the event system's tables."""

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        super().__init__(path, what=what, schema=SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        with self.transaction(immediate=False) as conn:
            missing = [m for m in MIGRATIONS if not _has_column(conn, m[0], m[1])]
        if not missing:
            return
        # Several adapters (or processes) may open an old file at once: look again under the write lock.
        with self.transaction() as conn:
            for table, column, definition in missing:
                if not _has_column(conn, table, column):
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))
