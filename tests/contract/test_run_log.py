"""RunLog contract: every adapter lists runs newest first, per tenant or all, once per run id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcpdo.adapters.dynamodb_runs import DynamoRunLog
from mcpdo.adapters.memory import MemoryRunLog
from mcpdo.adapters.sqlite_runs import SqliteRunLog
from mcpdo.errors import InputError
from mcpdo.ids import new_id
from mcpdo.ports import HandlerRef, Run, RunLog

from tests.contract.dynamodb_backends import dynamo_table

pytestmark = pytest.mark.anyio

RUN_LOGS: dict[str, Callable[[Path, pytest.FixtureRequest], RunLog]] = {
    "dynamodb": lambda path, request: DynamoRunLog(dynamo_table(request)),
    "memory": lambda path, request: MemoryRunLog(),
    "sqlite": lambda path, request: SqliteRunLog(path / "runs.db"),
}


@pytest.fixture(params=sorted(RUN_LOGS))
async def runs(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[RunLog]:
    log = RUN_LOGS[request.param](tmp_path, request)
    try:
        yield log
    finally:
        await log.close()


def run(tenant: str = "acme", status: str = "ok", **extra: Any) -> Run:
    fields: dict[str, Any] = {
        "started_at": "2026-01-01T00:00:00.000Z",
        "duration_ms": 12,
        "event_id": "evt_1",
        "event_type": "Order.created",
    }
    fields.update(extra)
    return Run(id=new_id("Run"), handler=HandlerRef(tenant, "https://acme.test/orders", 1, 0), status=status, **fields)  # type: ignore[arg-type]


async def test_runs_are_listed_newest_first_with_their_logs(runs: RunLog) -> None:
    logs = ({"level": "info", "message": "hello", "timestamp": "2026-01-01T00:00:00.001Z"},)
    first = run(logs=logs)
    second = run(status="error", error="Error: boom", attempt=2, schedule="5m")
    await runs.record_run(first)
    await runs.record_run(second)
    assert await runs.runs("acme") == [second, first]
    assert await runs.runs("acme", limit=1) == [second]


async def test_runs_are_listed_per_tenant_or_all_and_recording_twice_keeps_one(runs: RunLog) -> None:
    mine = run("acme")
    await runs.record_run(mine)
    await runs.record_run(mine)
    await runs.record_run(run("globex"))
    assert [r.tenant for r in await runs.runs("acme")] == ["acme"]
    assert sorted(r.tenant for r in await runs.runs()) == ["acme", "globex"]
    with pytest.raises(InputError, match="limit"):
        await runs.runs(limit=0)
