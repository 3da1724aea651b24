"""SubscriptionSync on SQLite: the live `on()` subscriptions, looked up by the patterns an event type matches.

A sync replaces a module's subscriptions in one transaction, and a lookup is one read, so an event routed
while its module is registered again goes to the old handlers or to the new ones, never to both or neither.
"""

from __future__ import annotations

import builtins
import os

from mcpdo.adapters.sqlite_db import SqliteDatabase
from mcpdo.patterns import candidates
from mcpdo.ports import HandlerRef, StoredModule, Subscription

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    tenant    TEXT    NOT NULL,
    module_id TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    pattern   TEXT    NOT NULL,
    PRIMARY KEY (tenant, module_id, idx)
);
CREATE INDEX IF NOT EXISTS subscriptions_by_pattern ON subscriptions (tenant, pattern);
"""

_SELECT = "SELECT tenant, module_id, version, idx, pattern FROM subscriptions"


class SqliteSubscriptions:
    """The live subscriptions in the state database file (its own connection)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = SqliteDatabase(path, what="subscription index", schema=SCHEMA)

    async def sync(self, module: StoredModule, subscriptions: builtins.list[Subscription]) -> None:
        """Replace the live subscriptions of `module` with `subscriptions`, in one transaction."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM subscriptions WHERE tenant = ? AND module_id = ?", (module.tenant, module.id))
            conn.executemany(
                "INSERT INTO subscriptions (tenant, module_id, version, idx, pattern) VALUES (?, ?, ?, ?, ?)",
                [(module.tenant, module.id, s.handler.version, s.handler.index, s.pattern) for s in subscriptions],
            )

    async def matching(self, tenant: str, event_type: str) -> builtins.list[Subscription]:
        """The live subscriptions of `tenant` matching `event_type`: one index seek per candidate pattern."""
        patterns = candidates(event_type)
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE tenant = ? AND pattern IN ({', '.join('?' * len(patterns))}) ORDER BY module_id, idx",
                (tenant, *patterns),
            ).fetchall()
        return [_subscription(row) for row in rows]

    async def list(self, tenant: str) -> builtins.list[Subscription]:
        """Every live subscription of `tenant`."""
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(f"{_SELECT} WHERE tenant = ? ORDER BY module_id, idx", (tenant,)).fetchall()
        return [_subscription(row) for row in rows]

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()


def _subscription(row: tuple[str, str, int, int, str]) -> Subscription:
    return Subscription(HandlerRef(row[0], row[1], row[2], row[3]), row[4])
