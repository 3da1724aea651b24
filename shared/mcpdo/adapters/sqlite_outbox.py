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

from mcpdo.adapters.sqlite_db import SqliteDatabase
from mcpdo.inputs import check_listing_limit
from mcpdo.mail import checked_message, listed
from mcpdo.timeparse import format_iso, now_ms

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    key     TEXT    NOT NULL UNIQUE,
    message TEXT    NOT NULL,  -- JSON object
    sent_at INTEGER NOT NULL   -- epoch ms
);
"""


class SqliteOutbox:
    """Mailer that keeps messages in the outbox table (its own connection)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], int] = now_ms) -> None:
        self._db = SqliteDatabase(path, what="outbox", schema=SCHEMA)
        self._clock = clock

    async def send(self, message: dict[str, Any], idempotency_key: str) -> None:
        """Append `message` to the outbox unless a message with this key is already there."""
        body = checked_message(message, idempotency_key)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO outbox (key, message, sent_at) VALUES (?, ?, ?)",
                (idempotency_key, body, self._clock()),
            )

    async def list(self, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The latest messages, newest first: the message fields plus `sentAt` and `idempotencyKey`."""
        check_listing_limit(limit)
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(
                "SELECT key, message, sent_at FROM outbox ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
        return [listed(json.loads(message), format_iso(sent_at), key) for key, message, sent_at in rows]

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()
