"""RunLog on the shared DynamoDB table: one item per handler run, kept for `keep_days`.

Key layout:

- `pk = "RUN#<tenant>"`, `sk = "<started at>#<run id>"`: one run, its logs as JSON text (as SQLite keeps
  them). `runs(tenant)` reads the partition backwards, newest first.
- The same item is in the `gsi1` partition `"RUNS"`, with the same sort key: `runs()` of every tenant reads
  it backwards.

Start times are the core's ISO text (`format_iso`: fixed width, UTC), so the sort keys order runs by start
time, then by id (ULIDs: creation order, which breaks ties as SQLite's insertion order does). SQLite lists by
insertion; here a run recorded late (a long handler) sits at its start time.

Growth: the SQLite log keeps the latest 10,000 runs; this one is bounded by age, not count. Each run carries a
`ttl` (epoch seconds) `keep_days` after it is recorded, and DynamoDB's TTL deletes it some time after that
(within a day or two); until then reads skip it, so a listing never shows a run older than `keep_days`. A
tenant's partition holds its last `keep_days` of runs, however many that is.

Limits: a run's logs (256 KB at most per execution, by the sandbox) and its error must fit one 400 KB item
(LimitExceeded otherwise). Every run also writes one entry into the single `RUNS` index partition, which takes
roughly 1,000 writes a second (fewer for runs with long logs: a write unit is 1 KB) before it throttles.
"""

from __future__ import annotations

import builtins
import contextlib
import json
from collections.abc import Callable
from typing import Any, cast

from mcpdo.adapters.dynamodb_table import ConditionFailed, DynamoTable, Item, text_value
from mcpdo.inputs import check_listing_limit
from mcpdo.ports import HandlerRef, Run
from mcpdo.timeparse import now_ms

_ALL = "RUNS"
_DAY_SECONDS = 86_400


class DynamoRunLog:
    """RunLog on the state table; the table (and its client) is shared with the other AWS adapters."""

    def __init__(self, table: DynamoTable, *, keep_days: int = 30, clock: Callable[[], int] = now_ms) -> None:
        if keep_days < 1:
            raise ValueError("keep_days must be at least 1")
        self._table = table
        self._keep_seconds = keep_days * _DAY_SECONDS
        self._clock = clock

    async def record_run(self, run: Run) -> None:
        """Append a run (a run already recorded is kept as it was, as SQLite's INSERT OR IGNORE keeps it)."""
        item = _item(run, ttl=self._now_seconds() + self._keep_seconds)
        with contextlib.suppress(ConditionFailed):
            await self._table.call("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)")

    async def runs(self, tenant: str | None = None, limit: int = 100) -> builtins.list[Run]:
        """The latest runs, newest first; every tenant's when `tenant` is None."""
        check_listing_limit(limit)
        if tenant is None:
            where: dict[str, Any] = {"IndexName": "gsi1", "KeyConditionExpression": "gsi1pk = :partition"}
        else:
            where = {"KeyConditionExpression": "pk = :partition", "ConsistentRead": True}
        partition = _ALL if tenant is None else _partition(tenant)
        arguments = {
            **where,
            "ExpressionAttributeValues": {":partition": text_value(partition)},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        now = self._now_seconds()
        found: builtins.list[Run] = []
        while len(found) < limit:
            page = await self._table.call("query", **arguments)
            # Expired runs stay until TTL gets round to them (moto never does): skip them here.
            found.extend(_run(item) for item in page.get("Items", []) if int(item["ttl"]["N"]) > now)
            if "LastEvaluatedKey" not in page:
                break
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found[:limit]

    async def close(self) -> None:
        """Release the shared table's client (closing it again is harmless)."""
        await self._table.close()

    def _now_seconds(self) -> int:
        return self._clock() // 1000


def _partition(tenant: str) -> str:
    return f"RUN#{tenant}"


def _n(number: int) -> dict[str, str]:
    return {"N": str(number)}


def _item(run: Run, *, ttl: int) -> Item:
    handler = run.handler
    order = f"{run.started_at}#{run.id}"
    item: Item = {
        "pk": text_value(_partition(handler.tenant)),
        "sk": text_value(order),
        "gsi1pk": text_value(_ALL),
        "gsi1sk": text_value(order),
        "ttl": _n(ttl),
        "id": text_value(run.id),
        "tenant": text_value(handler.tenant),
        "module_id": text_value(handler.module_id),
        "version": _n(handler.version),
        "idx": _n(handler.index),
        "status": text_value(run.status),
        "attempt": _n(run.attempt),
        "logs": text_value(json.dumps(list(run.logs), ensure_ascii=False, default=str)),
        "started_at": text_value(run.started_at),
        "duration_ms": _n(run.duration_ms),
    }
    # Absent, as NULL is in the SQL columns.
    optional = {"event_id": run.event_id, "event_type": run.event_type, "schedule": run.schedule, "error": run.error}
    item.update({name: text_value(value) for name, value in optional.items() if value is not None})
    return item


def _run(item: Item) -> Run:
    def text(name: str) -> str | None:
        value = item.get(name)
        return None if value is None else cast(str, value["S"])

    return Run(
        id=item["id"]["S"],
        handler=HandlerRef(
            item["tenant"]["S"], item["module_id"]["S"], int(item["version"]["N"]), int(item["idx"]["N"])
        ),
        status=item["status"]["S"],
        started_at=item["started_at"]["S"],
        duration_ms=int(item["duration_ms"]["N"]),
        event_id=text("event_id"),
        event_type=text("event_type"),
        schedule=text("schedule"),
        attempt=int(item["attempt"]["N"]),
        logs=tuple(json.loads(item["logs"]["S"])),
        error=text("error"),
    )
