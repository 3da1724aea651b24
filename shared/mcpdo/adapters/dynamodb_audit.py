"""AuditLog on the shared DynamoDB table: one item per execution, expired by DynamoDB's TTL.

Key layout:

- `pk = "AUDIT#<tenant>"` (the tenant through `key_part`, so it never holds a `#`), `sk = "<started at>#<id>"`:
  one execution. `list(tenant)` reads that partition backwards with a strongly consistent query, newest first;
  `before` becomes `sk < :before`. A tenant's reads name its own partition only, so no tenant (whatever its
  name: a prefix of another, one with `#`) ever reads another's entries.
- The same item is in the `gsi1` partition `"AUDITS"`, `gsi1sk = "<started at>#<id>"`: `list()` of every
  tenant (an operator's listing) reads it backwards. A Scan could not list newest first without reading the
  whole table, and gsi2 offers nothing gsi1 does not, so gsi1 it is, as the runs log does.

Start times are the core's fixed-width ISO text, so the sort keys order entries by start time, then id, as the
port asks; `before` is normalized to that text first (`checked_instant`), and since `"<t>#<id>" > "<t>"`, an
entry that started exactly at `before` is left out (strictly before).

Idempotency: the put is conditional on the item not existing, so recording an entry again keeps the first. The
key holds the start time with the id: a second record of one id with another start time or tenant would be
a second item. Ids are fresh ULIDs per execution, so the same id is only ever the same entry recorded again.

Retention: each item carries `ttl` (the table's TTL attribute, epoch seconds) = its start + `retention_seconds`,
and DynamoDB deletes it some time after that (usually within a few days). `purge` therefore deletes nothing
and reports 0, as the port allows; until TTL gets round to them, expired entries are still listed, as SQLite
lists them until its purge runs.

Limits: every execution also writes one entry into the single `AUDITS` index partition, which takes roughly
1,000 writes a second before it throttles (and a throttled index slows the table's writes): the ceiling of
audited executions per second, the same as the runs log's. Sharding that partition is the way past it.
"""

from __future__ import annotations

import builtins
import contextlib
from typing import Any

from mcpdo.adapters.dynamodb_table import ConditionFailed, DynamoTable, Item, key_part, text_value
from mcpdo.adapters.memory_audit import calls_from_text, calls_text, checked_instant, checked_ms
from mcpdo.inputs import check_listing_limit
from mcpdo.ports import ExecutionRecord

_ALL = "AUDITS"


class DynamoAuditLog:
    """AuditLog on the state table; the table (and its client) is shared with the other AWS adapters."""

    def __init__(self, table: DynamoTable, retention_seconds: int) -> None:
        if retention_seconds < 1:
            raise ValueError("retention_seconds must be at least 1")
        self._table = table
        self._retention_seconds = retention_seconds

    async def record(self, entry: ExecutionRecord) -> None:
        """Keep `entry` (an entry already kept stays as it was, as SQLite's INSERT OR IGNORE keeps it)."""
        item = _item(entry, ttl=checked_ms(entry.started_at, "started_at") // 1000 + self._retention_seconds)
        with contextlib.suppress(ConditionFailed):
            await self._table.call("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)")

    async def list(
        self, tenant: str | None = None, limit: int = 100, before: str | None = None
    ) -> builtins.list[ExecutionRecord]:
        """Entries newest first (start time, then id), of one tenant or all, strictly before `before`."""
        check_listing_limit(limit)
        arguments = _query(tenant, None if before is None else checked_instant(before, "before"))
        return [_entry(item) for item in await self._table.query_up_to(limit, **arguments)]

    async def purge(self, older_than: str) -> int:
        """Nothing to drop by hand: each entry's `ttl` has DynamoDB expire it. Reports 0 (see the module)."""
        checked_instant(older_than, "older_than")
        return 0

    async def close(self) -> None:
        """Release the shared table's client (closing it again is harmless)."""
        await self._table.close()


def _partition(tenant: str) -> str:
    return f"AUDIT#{key_part(tenant)}"


def _query(tenant: str | None, before: str | None) -> dict[str, Any]:
    """The query arguments of one listing: the tenant's partition, or the all-tenants index partition."""
    where: dict[str, Any]
    if tenant is None:
        (pk, sk), partition, where = ("gsi1pk", "gsi1sk"), _ALL, {"IndexName": "gsi1"}
    else:
        (pk, sk), partition, where = ("pk", "sk"), _partition(tenant), {"ConsistentRead": True}
    condition = f"{pk} = :partition"
    values = {":partition": text_value(partition)}
    if before is not None:
        condition += f" AND {sk} < :before"
        values[":before"] = text_value(before)
    return {
        **where,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
    }


def _n(number: int) -> dict[str, str]:
    return {"N": str(number)}


def _item(entry: ExecutionRecord, *, ttl: int) -> Item:
    order = f"{entry.started_at}#{entry.id}"
    item: Item = {
        "pk": text_value(_partition(entry.tenant)),
        "sk": text_value(order),
        "gsi1pk": text_value(_ALL),
        "gsi1sk": text_value(order),
        "ttl": _n(ttl),
        "id": text_value(entry.id),
        "tenant": text_value(entry.tenant),
        "caller": text_value(entry.caller),
        "auth_type": text_value(entry.auth_type),
        "kind": text_value(entry.kind),
        "script_hash": text_value(entry.script_hash),
        "started_at": text_value(entry.started_at),
        "duration_ms": _n(entry.duration_ms),
        "outcome": text_value(entry.outcome),
        "calls": text_value(calls_text(entry.calls)),
    }
    if entry.error_kind is not None:  # absent, as NULL is in the SQL column
        item["error_kind"] = text_value(entry.error_kind)
    return item


def _entry(item: Item) -> ExecutionRecord:
    error_kind = item.get("error_kind")
    return ExecutionRecord(
        id=item["id"]["S"],
        tenant=item["tenant"]["S"],
        caller=item["caller"]["S"],
        auth_type=item["auth_type"]["S"],
        kind=item["kind"]["S"],
        script_hash=item["script_hash"]["S"],
        started_at=item["started_at"]["S"],
        duration_ms=int(item["duration_ms"]["N"]),
        outcome=item["outcome"]["S"],
        error_kind=None if error_kind is None else error_kind["S"],
        calls=calls_from_text(item["calls"]["S"]),
    )
