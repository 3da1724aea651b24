"""The auditor: one entry per execution with its counts and outcome, old entries dropped now and then, and an
audit log that fails never failing the execution it records."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from mcpdo.adapters.memory_audit import MemoryAuditLog
from mcpdo.audit import PURGE_EVERY_SECONDS, Auditor, AuditReader, code_hash
from mcpdo.errors import ExecutionTimeout, InputError, PermissionDenied
from mcpdo.identity import Identity
from mcpdo.ports import ExecutionRecord
from mcpdo.timeparse import utc_now

pytestmark = pytest.mark.anyio
START = datetime(2026, 3, 1, tzinfo=UTC)
ADMIN = Identity.for_roles(id="key_admin", tenant="acme", auth_type="apiKey", roles=("admin",))
MEMBER = Identity.for_roles(id="key_member", tenant="acme", auth_type="apiKey", roles=("member",))


class Clocks:
    def __init__(self) -> None:
        self.now = START
        self.seconds = 0.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.seconds += seconds


async def test_an_execution_is_recorded_with_its_caller_counts_and_outcome_never_its_code() -> None:
    log, clocks = MemoryAuditLog(), Clocks()
    auditor = Auditor(log, timedelta(days=1), clock=lambda: clocks.now, monotonic=lambda: clocks.seconds)
    clocks.advance(0.25)
    code = "await db.create('Order', { secret: 'hunter2' })"
    await auditor.record(
        MEMBER, kind="script", code=code, started=START, error=None, calls=Counter({"db.create": 2, "db.list": 1})
    )
    await auditor.record(
        Identity.anonymous(), kind="script", code="1", started=START, error=ExecutionTimeout(10), calls=Counter()
    )
    ok, failed = sorted(await log.list(), key=lambda entry: entry.caller, reverse=True)
    assert (ok.tenant, ok.caller, ok.auth_type, ok.kind, ok.outcome) == ("acme", "key_member", "apiKey", "script", "ok")
    assert ok.duration_ms == 250 and ok.calls == (("db.create", 2), ("db.list", 1))
    assert ok.script_hash == code_hash(code) and "hunter2" not in repr(ok)
    assert (failed.caller, failed.tenant, failed.outcome, failed.error_kind) == (
        "anonymous",
        "public",
        "error",
        "ExecutionTimeout",
    )


async def test_entries_older_than_the_retention_are_dropped_at_most_hourly() -> None:
    log, clocks = MemoryAuditLog(), Clocks()
    auditor = Auditor(log, timedelta(days=1), clock=lambda: clocks.now, monotonic=lambda: clocks.seconds)

    async def execute(started: datetime) -> None:
        await auditor.record(MEMBER, kind="handler", code="1", started=started, error=None, calls=Counter())

    await execute(clocks.now)
    clocks.advance(2 * 86_400)
    await execute(clocks.now)  # a purge was due: the entry of two days ago is gone
    assert [entry.started_at for entry in await log.list()] == ["2026-03-03T00:00:00.000Z"]
    await execute(clocks.now - timedelta(days=3))  # a long-running one, recorded late
    clocks.advance(PURGE_EVERY_SECONDS / 2)
    await execute(clocks.now)
    assert len(await log.list()) == 3  # the next purge is not due yet
    clocks.advance(PURGE_EVERY_SECONDS / 2)
    await execute(clocks.now)
    assert "2026-02-28T00:00:00.000Z" not in [entry.started_at for entry in await log.list()]
    assert len(await log.list()) == 3


class BrokenLog(MemoryAuditLog):
    async def record(self, entry: ExecutionRecord) -> None:
        raise OSError("disk full")


async def test_a_failing_audit_log_is_logged_and_the_execution_stands(caplog: pytest.LogCaptureFixture) -> None:
    auditor = Auditor(BrokenLog(), timedelta(days=1))
    with caplog.at_level(logging.ERROR, logger="mcpdo.audit"):
        await auditor.record(MEMBER, kind="script", code="1", started=START, error=None, calls=Counter())
    assert "cannot record execution" in caplog.text


async def test_only_callers_granted_audit_read_the_trail_and_only_their_tenants() -> None:
    log = MemoryAuditLog()
    auditor = Auditor(log, timedelta(days=1))
    other = Identity.for_roles(id="key_other", tenant="other", auth_type="apiKey", roles=("admin",))
    for who in (MEMBER, other):
        await auditor.record(who, kind="script", code="1", started=utc_now(), error=None, calls=Counter())
    reader = AuditReader(log)
    listed = await reader.list(ADMIN, {})
    assert [(entry["$type"], entry["tenant"], entry["caller"]) for entry in listed] == [
        ("Execution", "acme", "key_member")
    ]
    for refused in (MEMBER, Identity.anonymous()):
        with pytest.raises(PermissionDenied, match="Permission denied: list Execution"):
            await reader.list(refused, {})
    with pytest.raises(InputError, match="takes \\{ limit, before \\}"):
        await reader.list(ADMIN, {"where": {"tenant": "other"}})
