"""A state file written before events had a depth opens, migrates, and keeps its queued work."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mcpdo.adapters.sqlite_deliveries import SqliteDeliveryStore
from mcpdo.adapters.sqlite_subscriptions import SqliteSubscriptions
from mcpdo.events import Publisher
from mcpdo.ports import Event

pytestmark = pytest.mark.anyio

# The events and deliveries tables as the first release created them (no `depth` column).
OLD_TABLES = """
CREATE TABLE events (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, source TEXT NOT NULL,
    time TEXT NOT NULL, correlation_id TEXT NOT NULL, published_at INTEGER NOT NULL
);
CREATE TABLE deliveries (
    event_id TEXT NOT NULL, handler_id TEXT NOT NULL, id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
    module_id TEXT NOT NULL, version INTEGER NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL, lease_until INTEGER, claim TEXT,
    last_error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (event_id, handler_id)
);
CREATE TABLE subscriptions (
    tenant TEXT NOT NULL, module_id TEXT NOT NULL, version INTEGER NOT NULL, idx INTEGER NOT NULL,
    pattern TEXT NOT NULL, PRIMARY KEY (tenant, module_id, idx)
);
INSERT INTO events VALUES ('evt_old', 'acme', 'Order.created', '{"n":1}', 'test', '2026-01-01T00:00:00.000Z',
                           'evt_old', 1);
INSERT INTO deliveries VALUES ('evt_old', 'https://acme.test/orders#0', 'del_old', 'acme',
                               'https://acme.test/orders', 1, 0, 'pending', 0, 1, NULL, NULL, NULL, 1, 1);
INSERT INTO subscriptions VALUES ('acme', 'https://acme.test/orders', 1, 0, 'Order.created');
"""


def old_state_file(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_TABLES)
    conn.close()
    return path


async def test_an_old_state_file_gains_the_depth_column_and_its_queued_events_are_depth_zero(tmp_path: Path) -> None:
    path = old_state_file(tmp_path)
    subscriptions = SqliteSubscriptions(path)
    bus = SqliteDeliveryStore(path)
    second = SqliteDeliveryStore(path)  # opening a migrated file again changes nothing
    try:
        [queued] = await bus.claim_due(10, 30, 4)
        assert (queued.id, queued.event.id, queued.event.depth) == ("del_old", "evt_old", 0)
        deep = Event(
            id="evt_deep",
            type="Order.created",
            data={},
            source="test",
            time="2026-01-01T00:00:00.000Z",
            tenant="acme",
            correlation_id="evt_old",
            depth=9,
        )
        await Publisher(subscriptions, second).publish(deep)
        [dead] = await bus.dead_letters()
        assert dead.event == deep and dead.last_error is not None and "hop limit of 8" in dead.last_error
    finally:
        for port in (bus, second, subscriptions):
            await port.close()
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    conn.close()
    assert columns.count("depth") == 1
