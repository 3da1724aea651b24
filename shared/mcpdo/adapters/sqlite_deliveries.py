"""The DeliveryStore on SQLite, polled by the local worker: events, and one delivery row per (event, handler).

`add` stores the event and its deliveries in one transaction, so an accepted event is never half-stored.
Deliveries are claimed with a lease: a worker that dies mid-attempt leaves a `running` row whose lease
expires, and the row is handed out again. A delivery marked `done` is never handed out again. Which
handlers, when to retry and when to give up are the core's decisions (`mcpdo.events`); this stores them.
Claims take turns across tenants, so one tenant's backlog cannot queue ahead of another tenant's work
(see `_CLAIM_FAIR`). `claim` hands out one delivery by id (a queue names it) under the same rules.

What claiming one delivery in a given state does, and the texts of interrupted attempts and of refused
replays, are the rules every store shares (`mcpdo.events.claims`).
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from mcpdo.adapters.sqlite_db import Migration, SqliteDatabase
from mcpdo.events.claims import (
    INTERRUPTED,
    NO_RETRY_LEFT,
    claim_verdict,
    event_json,
    replay_refused,
)
from mcpdo.ids import new_id
from mcpdo.ports import Claim, Delivery, DeliveryStatus, Event, HandlerRef
from mcpdo.timeparse import format_iso, from_epoch_ms, now_ms, to_epoch_ms

SCHEMA = """
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
"""

MIGRATIONS: tuple[Migration, ...] = (("events", "depth", "INTEGER NOT NULL DEFAULT 0"),)

# Fair claiming. Each due delivery's turn is its rank within its tenant (oldest first) plus the tenant's
# deliveries already in flight; the lowest turns win, ties going to the tenant served least recently
# (remembered by the store), then to the oldest. So tenants with due work take turns, a tenant holding the in-flight
# slots yields the next free one to a tenant with nothing running, and a tenant alone takes the whole limit
# oldest first. The cost is bounded by (tenants with pending work) x limit index seeks, not by the size of
# a backlog: `waiting` walks the distinct tenants by seeking `deliveries_fair`, and each tenant contributes
# at most `limit` rows. ROW_NUMBER needs SQLite 3.25+.
_CLAIM_FAIR = """
WITH RECURSIVE waiting(tenant) AS (
    SELECT MIN(tenant) FROM deliveries WHERE status = 'pending'
    UNION ALL
    SELECT (SELECT MIN(tenant) FROM deliveries WHERE status = 'pending' AND tenant > waiting.tenant)
    FROM waiting WHERE waiting.tenant IS NOT NULL
), candidates AS (
    SELECT d.rowid AS seq, d.id, d.tenant, d.next_attempt_at, d.created_at
    FROM waiting JOIN deliveries AS d ON d.rowid IN (
        SELECT rowid FROM deliveries WHERE status = 'pending' AND tenant = waiting.tenant
        AND next_attempt_at <= :now ORDER BY next_attempt_at, created_at, rowid LIMIT :limit)
    UNION ALL
    SELECT rowid, id, tenant, next_attempt_at, created_at FROM deliveries
    WHERE status = 'running' AND lease_until <= :now
), ranked AS (
    SELECT seq, id, tenant, next_attempt_at, created_at,
           ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY next_attempt_at, created_at, seq) AS rank
    FROM candidates
), busy AS (
    SELECT tenant, COUNT(*) AS running FROM deliveries WHERE status = 'running' AND lease_until > :now
    GROUP BY tenant
)
SELECT ranked.id, ranked.tenant, ranked.rank + COALESCE(busy.running, 0) AS turn, ranked.next_attempt_at,
       ranked.created_at, ranked.seq
FROM ranked LEFT JOIN busy ON busy.tenant = ranked.tenant
WHERE ranked.rank <= :limit
"""

_DELIVERY_SELECT = (
    "SELECT d.id, d.tenant, d.module_id, d.version, d.idx, d.status, d.attempts, d.next_attempt_at, "
    "d.last_error, d.claim, e.id, e.type, e.data, e.source, e.time, e.tenant, e.correlation_id, e.depth "
    "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id"
)


class SqliteDeliveryStore:
    """DeliveryQueue on the state database file (its own connection)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], int] = now_ms) -> None:
        self._db = SqliteDatabase(path, what="delivery store", schema=SCHEMA, migrations=MIGRATIONS)
        # When each tenant was last served a claim (a claim counter): the tie-break of fair claiming.
        self._served: dict[str, int] = {}
        self._claims = 0
        self._clock = clock

    async def add(self, event: Event, handlers: Sequence[HandlerRef], *, dead_error: str | None = None) -> bool:
        """Store `event` with one delivery per handler (dead letters with `dead_error`), once per event id."""
        row = _event_row(event)
        now = self._clock()
        with self._db.transaction() as conn:
            if not _insert_event(conn, row, now):
                return False
            for handler in handlers:
                _insert_delivery(conn, event, handler, now, dead_error=dead_error)
        return True

    async def claim_due(self, limit: int, lease_seconds: float, max_attempts: int) -> builtins.list[Delivery]:
        """Lease up to `limit` due deliveries (pending and due, or running with an expired lease), taking
        turns across tenants (see `_CLAIM_FAIR`)."""
        if limit <= 0:
            return []
        now = self._clock()
        lease_until = now + int(lease_seconds * 1000)
        claim = secrets.token_hex(8)
        # Polled several times a second: look before taking the write lock the entity store also needs.
        with self._db.transaction(immediate=False) as conn:
            if (
                conn.execute(
                    "SELECT 1 FROM deliveries WHERE (status = 'pending' AND next_attempt_at <= ?) "
                    "OR (status = 'running' AND lease_until <= ?) LIMIT 1",
                    (now, now),
                ).fetchone()
                is None
            ):
                return []
        with self._db.transaction() as conn:
            _bury_interrupted(conn, now, max_attempts)
            candidates = conn.execute(_CLAIM_FAIR, {"now": now, "limit": limit}).fetchall()
            if not candidates:
                return []
            # Ties between tenants go to the one served least recently (by this bus: one worker claims at a time).
            picked = sorted(candidates, key=lambda row: (row[2], self._served.get(row[1], 0), *row[3:]))[:limit]
            self._claims += 1
            for row in picked:
                self._served[row[1]] = self._claims
            ids = tuple(row[0] for row in picked)
            for delivery_id in ids:
                _take(conn, delivery_id, lease_until, claim, now)
            # By id (a unique index), not by the unindexed claim token: that would scan a whole backlog.
            rows = _select_deliveries(conn, f"d.id IN ({', '.join('?' * len(ids))})", ids)
        return rows

    async def claim(self, delivery_id: str, lease_seconds: float, max_attempts: int) -> Claim:
        """Lease one delivery by id if it is due (see `claim_verdict`); otherwise say when it is, or bury an
        interrupted one with no attempt left."""
        now = self._clock()
        with self._db.transaction() as conn:
            row: tuple[str, int, int, int | None] | None = conn.execute(
                "SELECT status, attempts, next_attempt_at, lease_until FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            verdict, due = ("skip", None) if row is None else claim_verdict(*row, now=now, max_attempts=max_attempts)
            if verdict == "wait" and due is not None:
                return Claim(due_at=from_epoch_ms(due))
            if verdict == "bury":
                _bury_interrupted(conn, now, max_attempts, delivery_id)
            if verdict != "take":
                return Claim()
            _take(conn, delivery_id, now + int(lease_seconds * 1000), secrets.token_hex(8), now)
            [delivery] = _select_deliveries(conn, "d.id = ?", (delivery_id,))
        return Claim(delivery=delivery)

    async def complete(self, delivery: Delivery) -> None:
        """Mark the delivery done (whoever holds it now): it will never be handed out again."""
        now = self._clock()
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE deliveries SET status = 'done', lease_until = NULL, claim = NULL, updated_at = ? WHERE id = ?",
                (now, delivery.id),
            )

    async def retry(self, delivery: Delivery, error: str, at: datetime) -> None:
        """Record the failure of the claimed attempt; the delivery is due again at `at`."""
        self._finish_claim(delivery, "pending", error, to_epoch_ms(at))

    async def bury(self, delivery: Delivery, error: str) -> None:
        """Record the failure of the claimed attempt and make the delivery a dead letter."""
        self._finish_claim(delivery, "dead", error, None)

    def _finish_claim(self, delivery: Delivery, status: DeliveryStatus, error: str, next_at: int | None) -> None:
        # Only the claim that holds the delivery may settle it: after its lease expired another claim took over.
        now = self._clock()
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE deliveries SET status = ?, lease_until = NULL, claim = NULL, last_error = ?, "
                "next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ? "
                "WHERE id = ? AND status = 'running' AND claim = ?",
                (status, error, next_at, now, delivery.id, delivery.claim),
            )

    async def requeue_running(self) -> int:
        """Make every running delivery due now; a dispatcher taking over calls this for its predecessor's work."""
        now = self._clock()
        with self._db.transaction() as conn:
            return int(conn.execute("UPDATE deliveries SET lease_until = ? WHERE status = 'running'", (now,)).rowcount)

    async def purge(self, older_than: datetime) -> int:
        """Forget completed deliveries older than `older_than`, and events left with no delivery."""
        cut = to_epoch_ms(older_than)
        with self._db.transaction() as conn:
            removed = int(
                conn.execute("DELETE FROM deliveries WHERE status = 'done' AND updated_at < ?", (cut,)).rowcount
            )
            conn.execute(
                "DELETE FROM events WHERE published_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
                (cut,),
            )
        return removed

    async def dead_letters(self, tenant: str | None = None) -> builtins.list[Delivery]:
        """Dead-lettered deliveries, oldest first; every tenant's when `tenant` is None."""
        where, params = "d.status = 'dead'", cast(tuple[str, ...], ())
        if tenant is not None:
            where, params = where + " AND d.tenant = ?", (tenant,)
        with self._db.transaction(immediate=False) as conn:
            return _select_deliveries(conn, where, params)

    async def dead_letter(self, delivery_id: str) -> Delivery | None:
        """One dead letter by id, or None."""
        with self._db.transaction(immediate=False) as conn:
            found = _select_deliveries(conn, "d.id = ? AND d.status = 'dead'", (delivery_id,))
        return found[0] if found else None

    async def replay(self, delivery_id: str, version: int | None = None) -> None:
        """Queue a dead letter again with its attempts reset, to module `version` when given."""
        now = self._clock()
        with self._db.transaction() as conn:
            row = conn.execute("SELECT status FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
            if row is None or row[0] != "dead":
                raise replay_refused(delivery_id, None if row is None else row[0])
            conn.execute(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, "
                "lease_until = NULL, claim = NULL, last_error = NULL, updated_at = ?, "
                "version = COALESCE(?, version) WHERE id = ?",
                (now, now, version, delivery_id),
            )

    async def deliveries(self, event_id: str) -> builtins.list[Delivery]:
        """Every delivery of one event."""
        with self._db.transaction(immediate=False) as conn:
            return _select_deliveries(conn, "d.event_id = ?", (event_id,))

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()


def _bury_interrupted(conn: sqlite3.Connection, now: int, max_attempts: int, delivery_id: str | None = None) -> None:
    """Dead-letter the interrupted deliveries (lease expired) with no attempt left: all, or the one named."""
    only = "" if delivery_id is None else " AND id = ?"
    conn.execute(
        "UPDATE deliveries SET status = 'dead', lease_until = NULL, claim = NULL, updated_at = ?, "
        f"last_error = ? || attempts || ? WHERE status = 'running' AND lease_until <= ? AND attempts >= ?{only}",
        (now, INTERRUPTED[0], INTERRUPTED[1] + NO_RETRY_LEFT, now, max_attempts)
        + (() if delivery_id is None else (delivery_id,)),
    )


def _take(conn: sqlite3.Connection, delivery_id: str, lease_until: int, claim: str, now: int) -> None:
    """Lease a due delivery to `claim`, counting the attempt (an interrupted one's error says so)."""
    conn.execute(
        "UPDATE deliveries SET last_error = CASE WHEN status = 'running' THEN ? || attempts || ? ELSE last_error "
        "END, status = 'running', attempts = attempts + 1, lease_until = ?, claim = ?, updated_at = ? WHERE id = ?",
        (*INTERRUPTED, lease_until, claim, now, delivery_id),
    )


def _event_row(event: Event) -> tuple[Any, ...]:
    data = event_json(event)
    return (event.id, event.tenant, event.type, data, event.source, event.time, event.correlation_id, event.depth)


def _insert_event(conn: sqlite3.Connection, row: tuple[Any, ...], now: int) -> bool:
    cursor = conn.execute(
        "INSERT OR IGNORE INTO events (id, tenant, type, data, source, time, correlation_id, depth, published_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*row, now),
    )
    return bool(cursor.rowcount)


def _insert_delivery(
    conn: sqlite3.Connection, event: Event, handler: HandlerRef, now: int, *, dead_error: str | None = None
) -> None:
    """Queue one delivery, or with `dead_error` write it straight to the dead letters (0 attempts)."""
    conn.execute(
        "INSERT OR IGNORE INTO deliveries (event_id, handler_id, id, tenant, module_id, version, idx, status, "
        "attempts, next_attempt_at, last_error, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
        (
            event.id,
            handler.handler_id,
            new_id("Delivery"),
            handler.tenant,
            handler.module_id,
            handler.version,
            handler.index,
            "pending" if dead_error is None else "dead",
            now,
            dead_error,
            now,
            now,
        ),
    )


def _select_deliveries(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> builtins.list[Delivery]:
    rows = conn.execute(f"{_DELIVERY_SELECT} WHERE {where} ORDER BY d.created_at, d.id", params).fetchall()
    out: builtins.list[Delivery] = []
    for (
        delivery_id,
        tenant,
        module_id,
        version,
        idx,
        status,
        attempts,
        next_at,
        last_error,
        claim,
        event_id,
        type,
        data,
        source,
        time,
        event_tenant,
        correlation_id,
        depth,
    ) in rows:
        event = Event(
            id=event_id,
            type=type,
            data=json.loads(data),
            source=source,
            time=time,
            tenant=event_tenant,
            correlation_id=correlation_id,
            depth=depth,
        )
        state: DeliveryStatus = status
        out.append(
            Delivery(
                id=delivery_id,
                event=event,
                handler=HandlerRef(tenant, module_id, version, idx),
                status=state,
                attempts=attempts,
                next_attempt_at=format_iso(next_at),
                last_error=last_error,
                claim=claim,
            )
        )
    return out
