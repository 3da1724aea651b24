"""SubscriptionSync on the shared DynamoDB table: the live `on()` subscriptions, found by the patterns an
event type matches.

Key layout (`<tenant>` has `%` and `#` percent-encoded, so the first `#` after it ends it; patterns never
contain `#`; in a sort key the module id is whatever comes before the final `#<index>`):

- `pk = "SUB#<tenant>#<pattern>"`, `sk = "<module id>#<handler index>"`: one live subscription, with its
  version. `matching` runs one strongly consistent Query per candidate pattern (`patterns.candidates`), all
  at once, and orders what they find by module id and handler index, as the SQLite adapter does.
- `pk = "SUBSET#<tenant>#<module id>"`, `sk = "SET"`: the module's live set (JSON `[[version, index,
  pattern], ...]`) and a revision number, in the `gsi1` partition `gsi1pk = "SUBS#<tenant>"`,
  `gsi1sk = "M#<module id>"`, which `list(tenant)` reads. `sync` reads it (strongly consistent) to know which
  subscription items to delete, and writes it on the condition that its revision is still the one read: of
  two concurrent syncs of one module, one commits and the other reads again and retries.

- `pk = "SUBREV#<tenant>"`, `sk = "REV"`: the tenant's subscription revision, raised by every sync.

A sync is one TransactWriteItems: the set item, the tenant's revision, and a put or a delete for every
subscription item of the old set and of the new one (an item in both, same index and pattern, is one put).
DynamoDB allows 100 writes in a transaction, so with this adapter a module has at most 98 `on()` handlers,
and re-registering it needs old and new together to fit; a sync that does not fit is refused whole
(InputError) and the old set stays live. The core bounds handlers only by the SDK call limit (each `on()` is
one call; 1000 by default): this bound is the tighter one, and it is this adapter's.

Isolation: DynamoDB gives several Queries no common snapshot, so `matching` brackets its Queries with two
reads of the tenant's revision (GetItem is serializable with transactions): when a sync committed in
between, the lookup may have combined partitions from before and after it, and it runs again. A lookup thus
sees the old set or the new one, never a mix, like the SQLite adapter's single read; when syncs of the
tenant keep committing during every one of its attempts it gives up with a StoreError (the caller retries).
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import Iterable

from mcpdo.adapters.dynamodb_table import ConditionFailed, DynamoTable, Item, key_part, text_value
from mcpdo.errors import InputError, StoreError
from mcpdo.patterns import candidates
from mcpdo.ports import HandlerRef, StoredModule, Subscription

MAX_WRITES = 100  # items in one TransactWriteItems
_ATTEMPTS = 5  # syncs of one module racing this one; a handful is already unusual
_LOOKUP_ATTEMPTS = 10  # lookups overlapping syncs of the same tenant; each sync is one short transaction
_SET = "SET"
_REVISION = {"#revision": "revision"}  # spelled through a name: expressions refuse some attribute names
_BOOKKEEPING = ("set item", "tenant revision")  # the writes of a sync besides its subscription items

Row = tuple[int, int, str]  # version, handler index, pattern: a subscription of the synced module


class DynamoSubscriptions:
    """SubscriptionSync on the state table; the table (and its client) is shared with the other AWS adapters."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    async def sync(self, module: StoredModule, subscriptions: builtins.list[Subscription]) -> None:
        """Replace the live subscriptions of `module` with `subscriptions`, in one transaction."""
        # Like the SQL rows: the tenant and module are the synced module's, the version and index the entry's.
        rows = sorted(((s.handler.version, s.handler.index, s.pattern) for s in subscriptions), key=lambda r: r[1])
        _check_indexes(module, rows)
        for _ in range(_ATTEMPTS):
            writes = self._writes(module, await self._live(module), rows)
            if not writes:
                return  # nothing live and nothing to make live
            try:
                await self._table.raw("transact_write_items", TransactItems=writes)
                return
            except ConditionFailed:
                continue  # another sync of this module committed since the read: replace what it left
        raise StoreError(f"The subscription index operation failed: module {module.id} kept changing during a sync")

    async def matching(self, tenant: str, event_type: str) -> builtins.list[Subscription]:
        """The live subscriptions of `tenant` matching `event_type`: one Query per candidate pattern, between
        two reads of the tenant's revision that must agree (see the module docstring)."""
        patterns = dict.fromkeys(candidates(event_type))  # an odd type ('*') can list a candidate twice
        before = await self._revision(tenant)
        for _ in range(_LOOKUP_ATTEMPTS):
            found = await asyncio.gather(*(self._partition(tenant, pattern) for pattern in patterns))
            after = await self._revision(tenant)
            if after == before:
                return _ordered(_subscription(item) for items in found for item in items)
            before = after
        raise StoreError(f"The subscription index operation failed: tenant {tenant!r} kept re-registering modules")

    async def list(self, tenant: str) -> builtins.list[Subscription]:
        """Every live subscription of `tenant`, from the modules' set items."""
        items = await self._table.query_all(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :tenant",
            ExpressionAttributeValues={":tenant": text_value(f"SUBS#{tenant}")},
        )
        return _ordered(sub for item in items for sub in _set_subscriptions(item))

    async def close(self) -> None:
        """Release the shared table's client (closing it again is harmless)."""
        await self._table.close()

    async def _revision(self, tenant: str) -> int:
        found = await self._table.call("get_item", Key=_revision_key(tenant), ConsistentRead=True)
        item: Item | None = found.get("Item")
        return 0 if item is None else int(item["revision"]["N"])

    async def _live(self, module: StoredModule) -> Item | None:
        """The module's set item as stored now, or None when it has no live subscriptions."""
        key = _set_key(module.tenant, module.id)
        found = await self._table.call("get_item", Key=key, ConsistentRead=True)
        item: Item | None = found.get("Item")
        return item

    def _writes(self, module: StoredModule, live: Item | None, rows: builtins.list[Row]) -> builtins.list[Item]:
        """The transaction making `rows` the live set in place of `live`: [] when there is nothing to do."""
        old = [] if live is None else _rows(live)
        table = self._table.name
        writes: dict[tuple[str, str], Item] = {}
        for _, index, pattern in old:
            key = _sub_key(module, index, pattern)
            writes[key["pk"]["S"], key["sk"]["S"]] = {"Delete": {"TableName": table, "Key": key}}
        for row in rows:
            item = _sub_item(module, row)
            writes[item["pk"]["S"], item["sk"]["S"]] = {"Put": {"TableName": table, "Item": item}}
        if not writes and live is None:
            return []
        total = len(writes) + len(_BOOKKEEPING)
        if total > MAX_WRITES:
            raise _too_many(module, len(old), len(rows), total)
        return [*writes.values(), _set_write(table, module, live, rows), _revision_write(table, module.tenant)]

    async def _partition(self, tenant: str, pattern: str) -> builtins.list[Item]:
        return await self._table.query_all(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": text_value(f"SUB#{key_part(tenant)}#{pattern}")},
            ConsistentRead=True,
        )


def _check_indexes(module: StoredModule, rows: builtins.list[Row]) -> None:
    indexes = [index for _, index, _ in rows]
    if len(set(indexes)) != len(indexes):
        # The SQL primary key (tenant, module_id, idx) refuses this, and the transaction changes nothing.
        raise StoreError(
            f"The subscription index operation failed: a handler index of module {module.id} is listed twice"
        )


def _too_many(module: StoredModule, old: int, new: int, writes: int) -> InputError:
    if new > MAX_WRITES - len(_BOOKKEEPING):
        return InputError(
            f"Module {module.id} has {new} on() handlers: with the DynamoDB backend a module has at most "
            f"{MAX_WRITES - len(_BOOKKEEPING)} (its subscriptions change in one transaction, of at most "
            f"{MAX_WRITES} writes)"
        )
    # Old and new subscriptions are written together: a version without handlers in between frees room.
    return InputError(
        f"Module {module.id}: replacing its {old} live subscriptions with {new} takes {writes} writes, and one "
        f"DynamoDB transaction allows {MAX_WRITES}; register a version without on() handlers first, then this one"
    )


def _set_write(table: str, module: StoredModule, live: Item | None, rows: builtins.list[Row]) -> Item:
    """The write of the set item, conditional on the revision `live` was read at (or on there being none)."""
    if live is None:
        condition: Item = {"ConditionExpression": "attribute_not_exists(pk)"}
        revision = 0
    else:
        revision = int(live["revision"]["N"])
        condition = {
            "ConditionExpression": "#revision = :revision",
            "ExpressionAttributeNames": _REVISION,
            "ExpressionAttributeValues": {":revision": _n(revision)},
        }
    key = _set_key(module.tenant, module.id)
    if not rows:
        return {"Delete": {"TableName": table, "Key": key, **condition}}
    item = {
        **key,
        "tenant": text_value(module.tenant),
        "module_id": text_value(module.id),
        "revision": _n(revision + 1),
        "subscriptions": text_value(json.dumps(rows, separators=(",", ":"), ensure_ascii=False)),
        "gsi1pk": text_value(f"SUBS#{module.tenant}"),
        "gsi1sk": text_value(f"M#{module.id}"),
    }
    return {"Put": {"TableName": table, "Item": item, **condition}}


def _revision_write(table: str, tenant: str) -> Item:
    """Raise the tenant's revision, so that a lookup overlapping this sync knows to look again."""
    return {
        "Update": {
            "TableName": table,
            "Key": _revision_key(tenant),
            "UpdateExpression": "ADD #revision :one",
            "ExpressionAttributeNames": _REVISION,
            "ExpressionAttributeValues": {":one": _n(1)},
        }
    }


def _revision_key(tenant: str) -> Item:
    return {"pk": text_value(f"SUBREV#{key_part(tenant)}"), "sk": text_value("REV")}


def _set_key(tenant: str, module_id: str) -> Item:
    return {"pk": text_value(f"SUBSET#{key_part(tenant)}#{module_id}"), "sk": text_value(_SET)}


def _sub_key(module: StoredModule, index: int, pattern: str) -> Item:
    return {"pk": text_value(f"SUB#{key_part(module.tenant)}#{pattern}"), "sk": text_value(f"{module.id}#{index}")}


def _sub_item(module: StoredModule, row: Row) -> Item:
    version, index, pattern = row
    return {
        **_sub_key(module, index, pattern),
        "tenant": text_value(module.tenant),
        "module_id": text_value(module.id),
        "version": _n(version),
        "idx": _n(index),
        "pattern": text_value(pattern),
    }


def _rows(live: Item) -> builtins.list[Row]:
    return [(version, index, pattern) for version, index, pattern in json.loads(live["subscriptions"]["S"])]


def _subscription(item: Item) -> Subscription:
    handler = HandlerRef(item["tenant"]["S"], item["module_id"]["S"], int(item["version"]["N"]), int(item["idx"]["N"]))
    return Subscription(handler, item["pattern"]["S"])


def _set_subscriptions(item: Item) -> builtins.list[Subscription]:
    tenant, module_id = item["tenant"]["S"], item["module_id"]["S"]
    return [Subscription(HandlerRef(tenant, module_id, v, i), pattern) for v, i, pattern in _rows(item)]


def _ordered(subscriptions: Iterable[Subscription]) -> builtins.list[Subscription]:
    # By module id then handler index, as the SQL `ORDER BY module_id, idx` (both compare code points).
    return sorted(subscriptions, key=lambda sub: (sub.handler.module_id, sub.handler.index))


def _n(number: int) -> dict[str, str]:
    return {"N": str(number)}
