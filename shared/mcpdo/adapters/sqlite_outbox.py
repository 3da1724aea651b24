"""The local Mailer: messages are appended to an outbox table in the state database, never sent.

`mcpdo outbox list` shows them. A message is stored once per idempotency key, so a retried delivery of the
same `Email.send` event does not produce a second message.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Callable
from typing import Any

from mcpdo.adapters.sqlite_db import Migration, SqliteDatabase
from mcpdo.inputs import check_listing_limit
from mcpdo.mail import checked_message, listed
from mcpdo.timeparse import format_iso, now_ms

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    key     TEXT    NOT NULL UNIQUE,
    message TEXT    NOT NULL,  -- JSON object
    sent_at INTEGER NOT NULL,  -- epoch ms
    tenant  TEXT    NOT NULL DEFAULT 'default'
);
CREATE INDEX IF NOT EXISTS outbox_by_tenant ON outbox (tenant, seq);
"""
# Outboxes from before mail had a tenant: their messages were sent by the default tenant's handlers.
MIGRATIONS: tuple[Migration, ...] = (("outbox", "tenant", "TEXT NOT NULL DEFAULT 'default'"),)


class SqliteOutbox:
    """Mailer that keeps messages in the outbox table (its own connection)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], int] = now_ms) -> None:
        self._db = SqliteDatabase(path, what="outbox", schema=SCHEMA, migrations=MIGRATIONS)
        self._clock = clock

    async def send(self, message: dict[str, Any], idempotency_key: str, *, tenant: str) -> None:
        """Append `message` to the outbox unless a message with this key is already there."""
        body = checked_message(message, idempotency_key)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO outbox (key, message, sent_at, tenant) VALUES (?, ?, ?, ?)",
                (idempotency_key, body, self._clock(), tenant),
            )

    async def list(self, limit: int = 100, *, tenant: str | None = None) -> builtins.list[dict[str, Any]]:
        """The latest messages, newest first: the message fields plus `sentAt`, `idempotencyKey`, `tenant`."""
        check_listing_limit(limit)
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(
                "SELECT key, message, sent_at, tenant FROM outbox WHERE ? IS NULL OR tenant = ?"
                " ORDER BY seq DESC LIMIT ?",
                (tenant, tenant, limit),
            ).fetchall()
        return [listed(json.loads(message), format_iso(at), key, owner) for key, message, at, owner in rows]

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()
