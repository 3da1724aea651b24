"""The local EventBus and RunLog on SQLite: a durable event log, one delivery row per (event, handler).

`publish` appends the event and fans it out to the live subscriptions in the same transaction, so an
accepted event is never lost and always sees one consistent set of subscriptions. Deliveries are claimed
with a lease: a dispatcher that dies mid-attempt leaves a `running` row whose lease expires, and the row is
handed out again. A delivery marked `done` is never handed out again.

Retries: a delivery gets `1 + max_retries` attempts (default 4). After the n-th failed attempt it waits
`backoff_base * 2 ** (n - 1)` seconds; after the last one it is dead-lettered until replayed.

Storms: an event deeper than `hop_limit` (handlers sending events that trigger handlers...) is stored, and
its deliveries are written as dead letters in the same transaction, never run or retried; replaying one runs
that hop once, and anything it sends is past the limit again. An event matching more than
`max_deliveries_per_send` subscriptions is refused whole (LimitExceeded, nothing stored). Claims take turns
across tenants, so one tenant's backlog cannot queue ahead of another tenant's work (see `claim_due`).
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from mcpdo.adapters.sqlite_events_db import EventsDatabase
from mcpdo.errors import Conflict, InputError, LimitExceeded, NotFound
from mcpdo.ids import check_id, new_id
from mcpdo.patterns import check_event_type, matches
from mcpdo.ports import (
    HOP_LIMIT,
    MAILER_MODULE,
    MAX_DELIVERIES_PER_SEND,
    Delivery,
    DeliveryStatus,
    Event,
    HandlerRef,
)
from mcpdo.timeparse import format_iso, now_ms, to_epoch_ms

MAX_ERROR_LENGTH = 4_000
DEFAULT_FALLBACKS: Mapping[str, str] = {"Email.send": MAILER_MODULE}

# Fair claiming. Each due delivery's turn is its rank within its tenant (oldest first) plus the tenant's
# deliveries already in flight; the lowest turns win, ties going to the tenant served least recently
# (remembered by the bus), then to the oldest. So tenants with due work take turns, a tenant holding the in-flight
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


class LocalEventBus:
    """EventBus on the state database file (its own connection)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        backoff_base: float = 1.0,
        max_retries: int = 3,
        clock: Callable[[], int] = now_ms,
        fallbacks: Mapping[str, str] | None = None,
        hop_limit: int = HOP_LIMIT,
        max_deliveries_per_send: int = MAX_DELIVERIES_PER_SEND,
    ) -> None:
        if backoff_base < 0 or max_retries < 0 or hop_limit < 0:
            raise ValueError("backoff_base, max_retries and hop_limit must not be negative")
        if max_deliveries_per_send < 1:
            raise ValueError("max_deliveries_per_send must be at least 1")
        self._db = EventsDatabase(path, "event bus")
        self._base_ms = backoff_base * 1000
        self._max_attempts = max_retries + 1
        self._hop_limit = hop_limit
        # When each tenant was last served a claim (a claim counter): the tie-break of fair claiming.
        self._served: dict[str, int] = {}
        self._claims = 0
        self._max_deliveries = max_deliveries_per_send
        self._clock = clock
        # Event types delivered to a built-in handler when no user handler claims them.
        self._fallbacks = dict(DEFAULT_FALLBACKS if fallbacks is None else fallbacks)

    async def publish(self, event: Event) -> None:
        """Append `event` and queue one delivery per live matching subscription; an already-known id is a no-op."""
        row = _event_row(event)
        now = self._clock()
        with self._db.transaction() as conn:
            if not _insert_event(conn, row, now):
                return
            subscriptions = conn.execute(
                "SELECT module_id, version, idx, pattern FROM subscriptions WHERE tenant = ?", (event.tenant,)
            ).fetchall()
            targets: list[HandlerRef] = []
            claimed = False
            for module_id, version, idx, pattern in subscriptions:
                if matches(pattern, event.type):
                    targets.append(HandlerRef(event.tenant, module_id, version, idx))
                    # `*` and `*.verb` observe events; exact and `Type.*` subscriptions take over delivery.
                    claimed = claimed or not pattern.startswith("*")
            fallback = self._fallbacks.get(event.type)
            if fallback is not None and not claimed:
                targets.append(HandlerRef(event.tenant, fallback, 0, 0))
            if len(targets) > self._max_deliveries:
                # Raised inside the transaction: the event row goes too, so nothing is half-published.
                raise LimitExceeded(
                    "deliveries",
                    (
                        f"send({event.type}) would make {len(targets)} deliveries, past the limit of "
                        f"{self._max_deliveries} per send (MCPDO_MAX_DELIVERIES_PER_SEND); nothing was published. "
                        f"Narrow the on() patterns that match {event.type}"
                    ),
                )
            refused = self._too_deep(event)
            for handler in targets:
                _insert_delivery(conn, event, handler, now, dead_error=refused)

    async def enqueue(self, event: Event, handler: HandlerRef) -> None:
        """Append `event` (if new) with one delivery to exactly `handler`; repeating it changes nothing."""
        if handler.tenant != event.tenant:
            raise InputError(
                f"Cannot deliver an event of tenant {event.tenant!r} to a handler of tenant {handler.tenant!r}"
            )
        row = _event_row(event)
        now = self._clock()
        with self._db.transaction() as conn:
            _insert_event(conn, row, now)
            _insert_delivery(conn, event, handler, now, dead_error=self._too_deep(event))

    def _too_deep(self, event: Event) -> str | None:
        """The dead-letter reason of an event past the hop limit, or None when it may be delivered."""
        if event.depth <= self._hop_limit:
            return None
        return (
            f"Event chain too deep: {event.type} reached depth {event.depth}, past the hop limit of "
            f"{self._hop_limit} (MCPDO_EVENT_HOP_LIMIT); handlers that send events in a loop stop here"
        )

    async def claim_due(self, limit: int, lease_seconds: float) -> builtins.list[Delivery]:
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
            conn.execute(
                "UPDATE deliveries SET status = 'dead', lease_until = NULL, claim = NULL, updated_at = ?, "
                "last_error = 'Attempt ' || attempts || ' was interrupted (its worker stopped) and no retry is "
                "left' WHERE status = 'running' AND lease_until <= ? AND attempts >= ?",
                (now, now, self._max_attempts),
            )
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
                conn.execute(
                    "UPDATE deliveries SET last_error = CASE WHEN status = 'running' THEN 'Attempt ' || attempts "
                    "|| ' was interrupted (its worker stopped)' ELSE last_error END, status = 'running', "
                    "attempts = attempts + 1, lease_until = ?, claim = ?, updated_at = ? WHERE id = ?",
                    (lease_until, claim, now, delivery_id),
                )
            # By id (a unique index), not by the unindexed claim token: that would scan a whole backlog.
            rows = _select_deliveries(conn, f"d.id IN ({', '.join('?' * len(ids))})", ids)
        return rows

    async def complete(self, delivery: Delivery) -> None:
        """Mark the delivery done (whoever holds it now): it will never be handed out again."""
        now = self._clock()
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE deliveries SET status = 'done', lease_until = NULL, claim = NULL, updated_at = ? WHERE id = ?",
                (now, delivery.id),
            )

    async def fail(self, delivery: Delivery, error: str, *, retry: bool = True) -> None:
        """Record the failure of the claimed attempt: retry after back-off, or dead-letter after the last one
        (or at once when `retry` is False)."""
        now = self._clock()
        error = error[:MAX_ERROR_LENGTH]
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT attempts FROM deliveries WHERE id = ? AND status = 'running' AND claim = ?",
                (delivery.id, delivery.claim),
            ).fetchone()
            if row is None:
                return  # the claim expired and someone else holds (or finished) the delivery now
            attempts = int(row[0])
            if attempts >= self._max_attempts or not retry:
                conn.execute(
                    "UPDATE deliveries SET status = 'dead', lease_until = NULL, claim = NULL, "
                    "last_error = ?, updated_at = ? WHERE id = ?",
                    (error, now, delivery.id),
                )
                return
            wait_ms = int(self._base_ms * 2 ** (attempts - 1))
            conn.execute(
                "UPDATE deliveries SET status = 'pending', lease_until = NULL, claim = NULL, "
                "next_attempt_at = ?, last_error = ?, updated_at = ? WHERE id = ?",
                (now + wait_ms, error, now, delivery.id),
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

    async def replay(self, delivery_id: str, version: int | None = None) -> None:
        """Queue a dead letter again with its attempts reset, to module `version` when given."""
        now = self._clock()
        with self._db.transaction() as conn:
            row = conn.execute("SELECT status FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
            if row is None:
                raise NotFound(f"Dead letter {delivery_id} not found")
            if row[0] != "dead":
                raise Conflict(
                    f"Delivery {delivery_id} is {row[0]}, not dead-lettered: only dead letters can be replayed"
                )
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


def _event_row(event: Event) -> tuple[Any, ...]:
    check_id(event.id, "event id")
    check_event_type(event.type)
    try:
        data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Event {event.type} data must be JSON-serializable: {exc}") from exc
    if isinstance(event.depth, bool) or not isinstance(event.depth, int) or event.depth < 0:
        raise InputError(f"Event {event.type} depth must be a non-negative integer, got {event.depth!r}")
    return (event.id, event.tenant, event.type, data, event.source, event.time, event.correlation_id, event.depth)


def _insert_event(conn: Any, row: tuple[Any, ...], now: int) -> bool:
    cursor = conn.execute(
        "INSERT OR IGNORE INTO events (id, tenant, type, data, source, time, correlation_id, depth, published_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*row, now),
    )
    return bool(cursor.rowcount)


def _insert_delivery(conn: Any, event: Event, handler: HandlerRef, now: int, *, dead_error: str | None = None) -> None:
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


def _select_deliveries(conn: Any, where: str, params: tuple[Any, ...]) -> builtins.list[Delivery]:
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
