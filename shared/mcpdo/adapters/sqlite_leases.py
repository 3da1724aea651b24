"""Leases on the state database: which process runs the worker of a state folder."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from mcpdo.adapters.sqlite_db import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL  -- epoch ms
);
"""


class SqliteLeases:
    """Named leases in the state database: one owner at a time, until it releases or stops renewing."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self._db = SqliteDatabase(path, what="lease store", schema=SCHEMA)
        self._clock = clock

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take or renew the lease for `ttl_seconds`; False while another owner holds an unexpired one."""
        now = int(self._clock() * 1000)
        with self._db.transaction() as conn:
            row = conn.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO leases (name, owner, expires_at) VALUES (?, ?, ?)",
                (name, owner, now + int(ttl_seconds * 1000)),
            )
        return True

    async def release(self, name: str, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    async def holder(self, name: str) -> str | None:
        """The current owner of an unexpired lease, or None."""
        now = int(self._clock() * 1000)
        with self._db.transaction(immediate=False) as conn:
            row = conn.execute("SELECT owner FROM leases WHERE name = ? AND expires_at > ?", (name, now)).fetchone()
        return None if row is None else str(row[0])

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()
