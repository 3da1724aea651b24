"""Event storms through a real server: a self-feeding handler stops at the hop limit, another tenant's
handler is served during the storm and its records are untouched, and a too-wide `send` is refused whole.

The state file is read directly (read-only) to see every delivery, whatever its status: no CLI lists
pending work, and "nothing is left pending" is exactly what these tests need to know.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from tests.support.client import connect, text_of, value_of
from tests.support.server import RunningServer, start_server, stop_server
from tests.support.sync import run_script, wait_for

pytestmark = pytest.mark.anyio

HOP_LIMIT = 4
CAP = 3
OTHER = "other"

STORM = """---
$id: /storm/doubler
---
on($.Storm.tick, async (data) => {
  await db.create('Tick', { n: data.n })
  await new Promise((resolve) => setTimeout(resolve, 200))
  await send($.Storm.tick, { n: data.n + 1 })
  await send($.Storm.tick, { n: data.n + 1 })
})
"""

PING = """---
$id: /ping/pong
---
on($.Ping.sent, async (data) => { await db.create('Pong', { n: data.n }) })
"""

WIDE = "---\n$id: /fan/wide\n---\n" + "on($.Fan.out, async () => {})\n" * (CAP + 1)


@pytest.fixture(scope="module")
def storm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("storm"),
        MCPDO_EVENT_HOP_LIMIT=str(HOP_LIMIT),
        MCPDO_MAX_DELIVERIES_PER_SEND=str(CAP),
        MCPDO_RETRY_BASE_MS="50",
    )
    yield running
    stop_server(running)


async def do(server: RunningServer, key: str, **arguments: str) -> Any:
    async with connect(server.url, key=key) as client:
        return await client.call_tool("do", arguments)


async def value(server: RunningServer, key: str, script: str) -> Any:
    result = await do(server, key, script=script)
    return None if not result.is_error and text_of(result) == "undefined" else value_of(result)


def cli_json(server: RunningServer, *args: str) -> Any:
    done = server.mcpdo(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def query(server: RunningServer, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    uri = f"file:{server.data_dir / 'mcpdo.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
        return conn.execute(sql, params).fetchall()


def chain(server: RunningServer, root: str) -> dict[str, int]:
    """Deliveries of every event in the chain started by event `root` (they share its correlation id), by status."""
    rows = query(
        server,
        "SELECT d.status, COUNT(*) FROM deliveries AS d JOIN events AS e ON e.id = d.event_id "
        "WHERE e.correlation_id = ? GROUP BY d.status",
        root,
    )
    return {status: count for status, count in rows}


def chain_over(server: RunningServer, root: str) -> dict[str, int] | None:
    counts = chain(server, root)
    # A handler publishes before its own delivery is marked done: no pending or running row means quiet.
    return counts if counts and not counts.get("pending") and not counts.get("running") else None


def chain_event_ids(server: RunningServer, root: str, status: str) -> set[str]:
    rows = query(
        server,
        "SELECT d.event_id FROM deliveries AS d JOIN events AS e ON e.id = d.event_id "
        "WHERE e.correlation_id = ? AND d.status = ?",
        root,
        status,
    )
    return {row[0] for row in rows}


async def test_a_handler_that_sends_two_events_per_event_stops_at_the_hop_limit_without_starving_another_tenant(
    storm_server: RunningServer,
) -> None:
    admin = storm_server.admin_key
    other = storm_server.new_key("other-tenant", "--tenant", OTHER)
    tenant = await value(storm_server, admin, "user.current().tenant")
    assert tenant != OTHER
    assert not (await do(storm_server, admin, module=STORM)).is_error
    assert not (await do(storm_server, other, module=PING)).is_error
    ledger = await value(storm_server, other, "await db.create('Ledger', { balance: 100 })")
    before = await value(storm_server, other, "await db.list('Ledger')")
    ticks_before = len(records(storm_server, admin, "Tick"))

    root = (await value(storm_server, admin, "await send($.Storm.tick, { n: 0 })"))["id"]
    # Ping while the storm has a backlog waiting behind the worker's busy slots.
    wait_for(lambda: chain(storm_server, root).get("pending", 0) >= 4, timeout=30)
    pinged = time.monotonic()
    ping = (await value(storm_server, other, "await send($.Ping.sent, { n: 1 })"))["id"]
    pongs = wait_for(lambda: records(storm_server, other, "Pong"), timeout=15)
    ping_latency = time.monotonic() - pinged

    counts = wait_for(lambda: chain_over(storm_server, root), timeout=60)
    # Depth d has 2**d events; depths 0..HOP_LIMIT run, depth HOP_LIMIT + 1 is the dead-lettered frontier.
    assert counts == {"done": 2 ** (HOP_LIMIT + 1) - 1, "dead": 2 ** (HOP_LIMIT + 1)}
    assert counts["done"] <= 2 ** (HOP_LIMIT + 1)
    assert query(storm_server, "SELECT MAX(depth) FROM events WHERE correlation_id = ?", root) == [(HOP_LIMIT + 1,)]
    assert len(records(storm_server, admin, "Tick")) - ticks_before == counts["done"]

    dead_ids = chain_event_ids(storm_server, root, "dead")
    dead = [
        d
        for d in cli_json(storm_server, "events", "dead-letters", "list", "--tenant", tenant)
        if d["eventId"] in dead_ids
    ]
    assert len(dead) == 2 ** (HOP_LIMIT + 1)
    for letter in dead:
        assert (letter["eventType"], letter["eventDepth"], letter["attempts"]) == ("Storm.tick", HOP_LIMIT + 1, 0)
        assert letter["lastError"] == (
            f"Event chain too deep: Storm.tick reached depth {HOP_LIMIT + 1}, past the hop limit of {HOP_LIMIT} "
            "(MCPDO_EVENT_HOP_LIMIT); handlers that send events in a loop stop here"
        )
    done_ids = chain_event_ids(storm_server, root, "done")
    storm_runs = [
        r
        for r in cli_json(storm_server, "runs", "list", "--tenant", tenant, "--limit", "500")
        if r["eventId"] in done_ids
    ]
    assert len(storm_runs) == counts["done"] and all(r["status"] == "ok" for r in storm_runs)

    # The other tenant: served during the storm, not after it, and nothing of its own was touched.
    [ping_run] = cli_json(storm_server, "runs", "list", "--tenant", OTHER, "--limit", "500")
    assert (ping_run["eventType"], ping_run["status"]) == ("Ping.sent", "ok")
    assert ping_run["startedAt"] < max(r["startedAt"] for r in storm_runs), "the ping waited out the storm"
    # Taking turns, not first come first served: the ping overtook storm deliveries queued before it.
    [(ping_queued,)] = query(storm_server, "SELECT created_at FROM deliveries WHERE event_id = ?", ping)
    queued = dict(
        query(
            storm_server,
            "SELECT d.event_id, d.created_at FROM deliveries AS d JOIN events AS e "
            "ON e.id = d.event_id WHERE e.correlation_id = ?",
            root,
        )
    )
    overtaken = [r for r in storm_runs if queued[r["eventId"]] < ping_queued and r["startedAt"] > ping_run["startedAt"]]
    assert overtaken, "the ping ran only after every storm delivery queued before it"
    assert ping_latency < 15
    assert [p["n"] for p in pongs] == [1]
    assert await value(storm_server, other, "await db.list('Ledger')") == before
    assert before == [ledger]
    assert records(storm_server, other, "Tick") == []
    assert cli_json(storm_server, "events", "dead-letters", "list", "--tenant", OTHER) == []


async def test_a_replayed_hop_limit_dead_letter_runs_once_and_its_own_sends_are_dead_letters_again(
    storm_server: RunningServer,
) -> None:
    admin = storm_server.admin_key
    assert not (await do(storm_server, admin, module=STORM)).is_error
    root = (await value(storm_server, admin, "await send($.Storm.tick, { n: 0 })"))["id"]
    before = wait_for(lambda: chain_over(storm_server, root), timeout=60)
    assert before == {"done": 2 ** (HOP_LIMIT + 1) - 1, "dead": 2 ** (HOP_LIMIT + 1)}
    dead_ids = chain_event_ids(storm_server, root, "dead")
    letter = next(d for d in cli_json(storm_server, "events", "dead-letters", "list") if d["eventId"] in dead_ids)
    assert storm_server.mcpdo("events", "dead-letters", "replay", letter["id"]).returncode == 0
    after = wait_for(
        lambda: (lambda now: now if now and now.get("done") == before["done"] + 1 else None)(
            chain_over(storm_server, root)
        ),
        timeout=30,
    )
    # The replayed hop ran once; the two events it sent are past the limit: two new dead letters, not a storm.
    assert after == {"done": before["done"] + 1, "dead": before["dead"] - 1 + 2}
    assert query(storm_server, "SELECT MAX(depth) FROM events WHERE correlation_id = ?", root) == [(HOP_LIMIT + 2,)]


async def test_a_send_to_more_handlers_than_the_cap_throws_naming_the_limit_and_publishes_nothing(
    storm_server: RunningServer,
) -> None:
    admin = storm_server.admin_key
    assert not (await do(storm_server, admin, module=WIDE)).is_error
    message = (
        f"send(Fan.out) would make {CAP + 1} deliveries, past the limit of {CAP} per send "
        "(MCPDO_MAX_DELIVERIES_PER_SEND); nothing was published. Narrow the on() patterns that match Fan.out"
    )
    caught = await value(
        storm_server,
        admin,
        """let outcome = 'sent'
try {
  await send($.Fan.out, { n: 1 })
} catch (error) {
  outcome = error.message
}
outcome""",
    )
    assert caught == message
    result = await do(storm_server, admin, script="await send($.Fan.out, { n: 2 })\n'sent'")
    assert result.is_error
    assert text_of(result).startswith(f"Error: {message}\n    at line 1:")
    assert query(storm_server, "SELECT COUNT(*) FROM events WHERE type = 'Fan.out'") == [(0,)]
    assert query(storm_server, "SELECT COUNT(*) FROM deliveries WHERE module_id LIKE '%/fan/wide'") == [(0,)]


def records(server: RunningServer, key: str, kind: str) -> list[dict[str, Any]]:
    """Records of one type in the key's tenant, synchronously (for `wait_for` polling)."""
    return list(run_script(server, f"await db.list('{kind}', {{ limit: 1000 }})", key=key))
