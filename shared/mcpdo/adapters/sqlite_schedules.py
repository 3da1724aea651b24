"""The local cron table: the live `every()` schedules and their fire times, in the state database.

`sync` replaces a module's schedules in one transaction. Each live schedule has a state row (next fire
time, last slot fired). `due(now)` first reconciles the state with the live schedules: a new schedule (or
one whose text changed) starts from `now`, a schedule re-registered unchanged keeps its next fire time (now
run by the new version's handler), and a removed one loses its state and stops firing. A schedule whose
next fire time passed while nothing ran (downtime) is due once, for its latest missed slot; after
`mark_fired` it resumes its normal cadence.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
from datetime import UTC, datetime

from mcpdo.adapters.sqlite_db import SqliteDatabase
from mcpdo.errors import InputError
from mcpdo.ports import DueSchedule, HandlerRef, ScheduleEntry, StoredModule
from mcpdo.schedules import Schedule, parse_schedule
from mcpdo.timeparse import from_epoch_ms, to_epoch_ms

SCHEMA = """
-- The live schedules: only the latest version's of each module, replaced together by `sync`.
CREATE TABLE IF NOT EXISTS schedules (
    tenant    TEXT    NOT NULL,
    module_id TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    schedule  TEXT    NOT NULL,
    PRIMARY KEY (tenant, module_id, idx)
);
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
"""


class SqliteSchedules:
    """CronTable on the state database file (its own connection)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = SqliteDatabase(path, what="schedule table", schema=SCHEMA)
        self._parsed: dict[str, Schedule | None] = {}

    async def sync(self, module: StoredModule, schedules: builtins.list[ScheduleEntry]) -> None:
        """Replace the live schedules of `module` with `schedules`, in one transaction (the fire times follow
        at the next `due`)."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM schedules WHERE tenant = ? AND module_id = ?", (module.tenant, module.id))
            conn.executemany(
                "INSERT INTO schedules (tenant, module_id, version, idx, schedule) VALUES (?, ?, ?, ?, ?)",
                [(module.tenant, module.id, e.handler.version, e.handler.index, e.schedule) for e in schedules],
            )

    async def is_live(self, entry: ScheduleEntry) -> bool:
        """Whether exactly `entry` is live (one indexed read)."""
        ref = entry.handler
        with self._db.transaction(immediate=False) as conn:
            row = conn.execute(
                "SELECT 1 FROM schedules WHERE tenant = ? AND module_id = ? AND idx = ? AND version = ? "
                "AND schedule = ?",
                (ref.tenant, ref.module_id, ref.index, ref.version, entry.schedule),
            ).fetchone()
        return row is not None

    async def list(self, tenant: str | None = None) -> builtins.list[ScheduleEntry]:
        """The live schedules of `tenant` (of every tenant when None)."""
        sql = "SELECT tenant, module_id, version, idx, schedule FROM schedules"
        params: tuple[str, ...] = ()
        if tenant is not None:
            sql, params = sql + " WHERE tenant = ?", (tenant,)
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(sql + " ORDER BY tenant, module_id, idx", params).fetchall()
        return [ScheduleEntry(HandlerRef(row[0], row[1], row[2], row[3]), row[4]) for row in rows]

    async def due(self, now: datetime) -> builtins.list[DueSchedule]:
        """The schedules due at `now`, each once, for its latest slot at or before `now`."""
        now = _aware(now)
        # Polled several times a second: read first, and take the write lock only when the state must change.
        with self._db.transaction(immediate=False) as conn:
            out = self._reconcile(conn, now, write=False)
        if out is None:
            with self._db.transaction() as conn:
                out = self._reconcile(conn, now, write=True)
        assert out is not None
        out.sort(
            key=lambda item: (
                item.scheduled_time,
                item.entry.handler.tenant,
                item.entry.handler.module_id,
                item.entry.handler.index,
            )
        )
        return out

    def _reconcile(self, conn: sqlite3.Connection, now: datetime, write: bool) -> builtins.list[DueSchedule] | None:
        """Due schedules after syncing the state with the live schedules; None if that needs `write`."""
        now_ms = to_epoch_ms(now)
        out: builtins.list[DueSchedule] = []
        live = {
            (r[0], r[1], r[2]): (r[3], r[4])
            for r in conn.execute("SELECT tenant, module_id, idx, version, schedule FROM schedules")
        }
        state = {
            (r[0], r[1], r[2]): (r[3], r[4], r[5])
            for r in conn.execute("SELECT tenant, module_id, idx, version, schedule, next_fire FROM schedule_state")
        }
        for key in state.keys() - live.keys():
            if not write:
                return None
            conn.execute("DELETE FROM schedule_state WHERE tenant = ? AND module_id = ? AND idx = ?", key)
        for key, (version, text) in live.items():
            parsed = self._parse(text)
            if parsed is None:
                continue
            known = state.get(key)
            if known is not None and known[1] == text:
                next_fire = int(known[2])
                if known[0] != version:
                    if not write:
                        return None
                    conn.execute(
                        "UPDATE schedule_state SET version = ? WHERE tenant = ? AND module_id = ? AND idx = ?",
                        (version, *key),
                    )
            else:
                if not write:
                    return None
                next_fire = to_epoch_ms(parsed.next_after(now))
                conn.execute(
                    "INSERT OR REPLACE INTO schedule_state (tenant, module_id, idx, version, schedule, "
                    "next_fire, last_fired) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                    (*key, version, text, next_fire),
                )
            if next_fire <= now_ms:
                slot = parsed.last_at_or_before(now)
                entry = ScheduleEntry(HandlerRef(key[0], key[1], version, key[2]), text)
                out.append(DueSchedule(entry=entry, scheduled_time=slot))
        return out

    async def mark_fired(self, entry: ScheduleEntry, fired_for: datetime) -> None:
        """Record the slot fired; the next fire time becomes the first slot after it (and after any later mark)."""
        parsed = self._parse(entry.schedule)
        if parsed is None:
            raise InputError(f"Cannot mark schedule {entry.schedule!r} fired: it does not parse")
        fired_for = _aware(fired_for)
        fired_ms = to_epoch_ms(fired_for)
        next_fire = to_epoch_ms(parsed.next_after(fired_for))
        ref = entry.handler
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE schedule_state SET last_fired = MAX(COALESCE(last_fired, ?), ?), "
                "next_fire = MAX(next_fire, ?) WHERE tenant = ? AND module_id = ? AND idx = ? AND schedule = ?",
                (fired_ms, fired_ms, next_fire, ref.tenant, ref.module_id, ref.index, entry.schedule),
            )

    async def next_fire(self, entry: ScheduleEntry) -> datetime | None:
        """The next fire time held for `entry`, or None before the cron loop has seen the entry."""
        ref = entry.handler
        with self._db.transaction(immediate=False) as conn:
            row = conn.execute(
                "SELECT next_fire FROM schedule_state WHERE tenant = ? AND module_id = ? AND idx = ? AND schedule = ?",
                (ref.tenant, ref.module_id, ref.index, entry.schedule),
            ).fetchone()
        return None if row is None else from_epoch_ms(row[0])

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()

    def _parse(self, text: str) -> Schedule | None:
        # A schedule the module store accepted always parses; an unparseable row is skipped, never fatal.
        if text not in self._parsed:
            try:
                self._parsed[text] = parse_schedule(text)
            except InputError:
                self._parsed[text] = None
        return self._parsed[text]


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError("The scheduler needs timezone-aware datetimes")
    return moment.astimezone(UTC)
