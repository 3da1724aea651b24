"""AuditLog contract: every adapter lists entries newest first, per tenant or all, pages by `before`, keeps one
entry per id, hands records back exactly, never shows one tenant another's entries, and forgets old entries:
by `purge` in memory and SQLite, by the TTL attribute on DynamoDB (moto never expires items, so the attribute
itself is checked there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcpdo.adapters.dynamodb_audit import DynamoAuditLog
from mcpdo.adapters.dynamodb_table import DynamoTable
from mcpdo.adapters.memory_audit import MemoryAuditLog
from mcpdo.adapters.sqlite_audit import SqliteAuditLog
from mcpdo.errors import InputError
from mcpdo.ids import new_id
from mcpdo.ports import AuditLog, ExecutionRecord
from mcpdo.timeparse import format_iso, parse_iso_ms

from tests.contract.dynamodb_backends import dynamo_table

pytestmark = pytest.mark.anyio

RETENTION_SECONDS = 30 * 86_400
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00.000Z


@dataclass
class Backend:
    """An audit log under test, with the DynamoDB table it writes to (None for the others)."""

    log: AuditLog
    table: DynamoTable | None = None


def _dynamodb(path: Path, request: pytest.FixtureRequest) -> Backend:
    table = dynamo_table(request)
    return Backend(DynamoAuditLog(table, RETENTION_SECONDS), table)


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Backend]] = {
    "dynamodb": _dynamodb,
    "memory": lambda path, request: Backend(MemoryAuditLog()),
    "sqlite": lambda path, request: Backend(SqliteAuditLog(path / "audit.db")),
}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[Backend]:
    """A fresh, empty audit log of each kind."""
    made = BACKENDS[request.param](tmp_path, request)
    try:
        yield made
    finally:
        await made.log.close()


@pytest.fixture
def audit(backend: Backend) -> AuditLog:
    return backend.log


def at(seconds: float) -> str:
    """An instant `seconds` after BASE_MS, as the core writes it."""
    return format_iso(BASE_MS + int(seconds * 1000))


def entry(tenant: str = "acme", started: float = 0, **extra: Any) -> ExecutionRecord:
    fields: dict[str, Any] = {
        "id": new_id("Execution"),
        "tenant": tenant,
        "caller": "key_123",
        "auth_type": "apiKey",
        "kind": "script",
        "script_hash": "ab" * 32,
        "started_at": at(started),
        "duration_ms": 12,
        "outcome": "ok",
        "calls": (("db.create", 2), ("db.list", 1)),
    }
    fields.update(extra)
    return ExecutionRecord(**fields)


async def record_all(audit: AuditLog, entries: list[ExecutionRecord]) -> None:
    for one in entries:
        await audit.record(one)


def newest_first(entries: list[ExecutionRecord]) -> list[ExecutionRecord]:
    return sorted(entries, key=lambda one: (one.started_at, one.id), reverse=True)


async def test_entries_are_listed_newest_first_whatever_order_they_were_recorded_in(audit: AuditLog) -> None:
    # An execution is recorded when it ends: a long one comes in after later, shorter ones.
    entries = [entry(started=5), entry(started=1), entry(started=9), entry(started=3)]
    await record_all(audit, entries)
    assert await audit.list("acme") == newest_first(entries)
    assert await audit.list() == newest_first(entries)


async def test_entries_that_started_together_are_ordered_by_id(audit: AuditLog) -> None:
    same = [entry(id=f"exe_{n}", started=2) for n in "bca"]
    await record_all(audit, same)
    assert [one.id for one in await audit.list("acme")] == ["exe_c", "exe_b", "exe_a"]


async def test_entries_are_listed_per_tenant_or_all(audit: AuditLog) -> None:
    mine, theirs = entry("acme", 1), entry("globex", 2)
    await record_all(audit, [mine, theirs])
    assert await audit.list("acme") == [mine]
    assert await audit.list("globex") == [theirs]
    assert await audit.list() == [theirs, mine]
    assert await audit.list("initech") == []


async def test_limit_keeps_the_newest_and_must_be_positive(audit: AuditLog) -> None:
    entries = [entry(started=n) for n in range(5)]
    await record_all(audit, entries)
    assert await audit.list("acme", limit=2) == newest_first(entries)[:2]
    assert await audit.list(limit=3) == newest_first(entries)[:3]
    for wrong in (0, -1):
        with pytest.raises(InputError, match="limit"):
            await audit.list(limit=wrong)


async def walk(audit: AuditLog, tenant: str | None, page: int) -> list[ExecutionRecord]:
    """Every entry, page after page, each page before the last one's oldest start."""
    seen: list[ExecutionRecord] = []
    before: str | None = None
    while found := await audit.list(tenant, limit=page, before=before):
        seen.extend(found)
        before = found[-1].started_at
    return seen


async def test_paging_by_before_walks_every_entry_exactly_once(audit: AuditLog) -> None:
    # Distinct start times: `before` is an instant, so a page boundary never falls inside a tie.
    mine = [entry("acme", n * 1.5) for n in range(11)]
    theirs = [entry("globex", n * 1.5 + 0.25) for n in range(6)]
    await record_all(audit, mine + theirs)
    assert await walk(audit, "acme", page=4) == newest_first(mine)
    assert await walk(audit, None, page=5) == newest_first(mine + theirs)
    assert await walk(audit, "globex", page=100) == newest_first(theirs)


async def test_before_is_strict_and_compares_instants_not_text(audit: AuditLog) -> None:
    early, edge, late = entry(started=1), entry(started=2), entry(started=3)
    await record_all(audit, [early, edge, late])
    assert await audit.list("acme", before=edge.started_at) == [early]
    assert await audit.list(before=edge.started_at) == [early]
    # The same instant without milliseconds, and in another zone.
    assert await audit.list("acme", before="2026-01-01T00:00:02Z") == [early]
    assert await audit.list("acme", before="2026-01-01T01:00:03+01:00") == [edge, early]
    assert await audit.list("acme", before=at(0)) == []
    with pytest.raises(InputError, match="before"):
        await audit.list("acme", before="yesterday-ish")


async def test_recording_the_same_entry_twice_keeps_one(audit: AuditLog) -> None:
    once = entry()
    await audit.record(once)
    await audit.record(once)
    assert await audit.list("acme") == [once]
    assert await audit.list() == [once]


async def test_records_come_back_exactly(audit: AuditLog) -> None:
    ok = entry(error_kind=None, calls=(("api.fetch", 3), ("db.create", 1), ("db.get", 12)))
    failed = entry(
        "globex",
        started=1,
        caller="anonymous",
        auth_type="anonymous",
        kind="handler",
        outcome="error",
        error_kind="ExecutionTimeout",
        duration_ms=30_000,
        calls=(),
    )
    await record_all(audit, [ok, failed])
    assert await audit.list("acme") == [ok]
    assert await audit.list("globex") == [failed]
    [listed] = await audit.list("acme")
    assert listed.error_kind is None
    assert isinstance(listed.calls, tuple)
    assert all(isinstance(pair, tuple) for pair in listed.calls)


async def test_calls_come_back_sorted_by_method(audit: AuditLog) -> None:
    await audit.record(entry(calls=(("db.list", 1), ("api.fetch", 2), ("db.create", 3))))
    [listed] = await audit.list("acme")
    assert listed.calls == (("api.fetch", 2), ("db.create", 3), ("db.list", 1))


# Prefixes of each other, separators of the key layouts, and a percent-encoding of one of them.
TENANTS = ["acme", "acme2", "acme#", "acme#2", "acme%232", "acme#AUDIT", "a", "#", "%"]


async def test_tenants_never_see_each_others_entries(audit: AuditLog) -> None:
    entries = {tenant: [entry(tenant, n + i / 10) for i in range(2)] for n, tenant in enumerate(TENANTS)}
    await record_all(audit, [one for kept in entries.values() for one in kept])
    for tenant, kept in entries.items():
        assert await audit.list(tenant) == newest_first(kept), tenant
        assert await audit.list(tenant, before=kept[1].started_at) == [kept[0]], tenant
    everyone = [one for kept in entries.values() for one in kept]
    assert await audit.list(limit=100) == newest_first(everyone)


HOSTILE = "'\"; DROP TABLE audit_log; -- # %23 \\ ${x} Zoë 🚀 漢字 \u200b\t\n"


async def test_hostile_text_is_stored_and_returned_intact(audit: AuditLog) -> None:
    hostile = entry(
        "acme#'\"🚀",
        id="exe_#'\"ü",
        caller=HOSTILE + "x" * 20_000,
        auth_type=HOSTILE,
        kind=HOSTILE,
        script_hash="#" + HOSTILE,
        outcome="error",
        error_kind=HOSTILE,
        calls=((HOSTILE, 1), ("db.#\"'", 2), ("🚀", 3)),
    )
    await audit.record(hostile)
    expected = dataclasses.replace(hostile, calls=tuple(sorted(hostile.calls)))
    assert await audit.list("acme#'\"🚀") == [expected]
    assert await audit.list() == [expected]
    assert await audit.list("acme") == []


async def test_old_entries_go_by_purge_or_by_the_ttl_attribute(backend: Backend) -> None:
    entries = [entry(started=n) for n in range(4)]
    await record_all(backend.log, entries)
    cut = entries[2].started_at
    if backend.table is None:
        assert await backend.log.purge(cut) == 2  # strictly before: the entry at `cut` stays
        assert await backend.log.list() == newest_first(entries[2:])
        assert await backend.log.purge(cut) == 0
    else:
        assert await backend.log.purge(cut) == 0  # DynamoDB expires them itself
        assert await ttl_by_id(backend.table) == {one.id: expected_ttl(one) for one in entries}
    with pytest.raises(InputError, match="older_than"):
        await backend.log.purge("not a time")


def expected_ttl(one: ExecutionRecord) -> int:
    started_ms = parse_iso_ms(one.started_at)
    assert started_ms is not None
    return started_ms // 1000 + RETENTION_SECONDS


async def ttl_by_id(table: DynamoTable) -> dict[str, int]:
    """The raw `ttl` attribute of every audit item of the (fresh, per test) table."""
    items = table.client.scan(TableName=table.name)["Items"]
    return {item["id"]["S"]: int(item["ttl"]["N"]) for item in items if "script_hash" in item}
