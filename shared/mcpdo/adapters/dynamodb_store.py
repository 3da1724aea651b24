"""EntityStore on DynamoDB: records and their edges as items of the shared state table, never scanned.

Key layout (type names and ids never contain `#`, so every key splits from the right even when a tenant
name does; the `ENT#` / `REL#` / `RIN#` namespaces keep clear of the other adapters' items):

    record  pk      ENT#<tenant>#<type>                 sk      <id>
            gsi1pk  ENT#<tenant>#<type>                 gsi1sk  <created>#<id>              creation order
            gsi2pk  ENT#<tenant>#<type>                 gsi2sk  <updated>#<created>#<id>    update order
            data (the record's own fields as JSON text, so every value keeps its JSON shape), created,
            updated, version (numbers), born (a ULID made at insert: which incarnation of the id this is)
    edge    pk      REL#<tenant>#<from type>#<from id>  sk      <rel>#<to type>#<to id>
            gsi2pk  RIN#<tenant>#<to type>#<to id>      gsi2sk  <rel>#<from type>#<from id>
            created, ord (a ULID: insertion order), from_born, to_born

Times in keys are epoch ms counted from year 1 and zero-padded to 15 digits, so they sort as strings.

What key conditions serve:
- get, update, delete: the item's key. A `where` naming ids (`id: x`, `id: {in: [...]}`): BatchGetItem.
- the listing's order picks the index when one holds it: creation order (the default, `createdAt`, with
  `id` for ties) reads gsi1, `updatedAt` ascending (or descending with `createdAt` descending) gsi2, `id`
  the table; pages are read in that order, from the cursor, until the page is full (`Limit` counts items
  before any filtering, so one request may not fill it).
- top-level `where` terms on `id` (range, `startsWith`), `createdAt` or `updatedAt` (equality, range,
  `before`/`after`) narrow that index's sort key, inclusively: a superset, made exact by the evaluator.
- any other order (a data field, `updatedAt` descending alone ...): the partition, narrowed as above
  where it can be, is read whole, consistently from the table when it has no narrowing on an index, and
  sorted in Python.
Every `where` is then evaluated in Python by the in-memory adapter's evaluator of the core's condition
tree, and sorts use its mirror of SQLite's ordering, so answers are SQLite's, dates as instants included.

Writes: an insert is a put on `attribute_not_exists`; an update (`$inc`, `ifVersion`) is a read then a
put conditioned on the version and incarnation read, retried on a lost race (optimistic concurrency: the
record logic's change function cannot be an update expression), and updates of one record within one
process take turns locally rather than race each other through the table (moto, unlike DynamoDB, does not
even make a conditional write atomic). Edges are written in a
transaction that checks both records' incarnations; an edge whose end was deleted (and maybe created
again) is ignored when read, so edges left behind by an interrupted delete never come back to life.
Lists through a GSI are eventually consistent on AWS (moto is not); gets and updates are not.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import math
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from mcpdo.adapters.dynamodb_table import CONDITION_FAILED, ConditionFailed, DynamoTable, Item
from mcpdo.errors import InputError, StoreError

# The core's query evaluator, for now in the in-memory adapter (private there, hence the alias).
from mcpdo.evaluate import compile_where
from mcpdo.evaluate import select_records as evaluate_list
from mcpdo.ids import is_valid_id, ulid
from mcpdo.inputs import MAX_INSTANT_MS, MIN_INSTANT_MS
from mcpdo.ports import Direction, ListQuery, Ref
from mcpdo.query import And, Condition, Eq, Or, Range, StartsWith, parse_field
from mcpdo.records import RecordStore, StoredRecord
from mcpdo.timeparse import now_ms

Key = tuple[str, str]  # pk, sk

_MS_DIGITS = 15  # MAX_INSTANT_MS - MIN_INSTANT_MS has 15 digits
_AFTER_TIME = "$"  # sorts right after the "#" that follows a time in a key: an inclusive upper bound
_AFTER_ID = "\x7f"  # sorts after every id character: `prefix + _AFTER_ID` bounds the ids with that prefix
_INDEX_KEYS: dict[str | None, tuple[str, str]] = {
    None: ("pk", "sk"),
    "gsi1": ("gsi1pk", "gsi1sk"),
    "gsi2": ("gsi2pk", "gsi2sk"),
}
# The orders each index holds, as the metadata keys SQLite sorts by (after dropping what cannot matter).
_ORDERS: dict[str | None, tuple[str, ...]] = {
    None: ("id",),
    "gsi1": ("createdAt", "id"),
    "gsi2": ("updatedAt", "createdAt", "id"),
}
_NARROWS: dict[str | None, str] = {None: "id", "gsi1": "createdAt", "gsi2": "updatedAt"}
_MIN_FILTERED_BATCH = 100  # items per request when a filter may drop most of them
_MAX_BATCH = 1000
_BATCH_GET = 100  # BatchGetItem's most keys per request
_BATCH_WRITE = 25  # BatchWriteItem's most requests per call
_ATTEMPTS = 50  # tries of a conditional read-modify-write before giving up on a contended item
_BACKOFF_BASE = 0.002
_BACKOFF_CAP = 0.1
_POLL_STEPS = 2  # a thread lock held by another loop is polled at most every 8 ms
_CHECK_FAILED = ("ConditionalCheckFailed", CONDITION_FAILED)  # a transaction's reason code, a write's error


class DynamoEntityStore(RecordStore):
    """Records of any type, partitioned by tenant and type, in the state table: storage only, the record
    logic is RecordStore's."""

    def __init__(self, table: DynamoTable, *, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(clock)
        self._table = table
        self._turns = _LocalTurns()

    async def close(self) -> None:
        """Release the table's client."""
        await self._table.close()

    # -- storage hooks ---------------------------------------------------------------------------------

    async def _query(self, tenant: str, type: str, query: ListQuery) -> builtins.list[StoredRecord]:
        pk = _entity_pk(tenant, type)
        cursor = None if query.cursor is None else await self._cursor(pk, type, query.cursor)
        terms = _conjuncts(query.where)
        named = _named_ids(terms)
        if named is not None:
            found = await self._batch_get([(pk, id) for id in named])
            return _answer(found.values(), cursor, type, query)
        path, ordered = _plan(terms, query.sort)
        if ordered:
            return await self._read_page(pk, path, query, cursor)
        return _answer([item async for item in self._items(pk, path)], cursor, type, query)

    async def _fetch(self, tenant: str, type: str, id: str) -> StoredRecord | None:
        item = await self._get(_entity_pk(tenant, type), id)
        return None if item is None else _stored(item)

    async def _insert(self, tenant: str, row: StoredRecord) -> bool:
        try:
            await self._table.call(
                "put_item", Item=_record_item(tenant, row, ulid()), ConditionExpression="attribute_not_exists(pk)"
            )
        except ConditionFailed:
            return False
        return True

    async def _replace(
        self, tenant: str, type: str, id: str, change: Callable[[StoredRecord], StoredRecord]
    ) -> StoredRecord | None:
        pk = _entity_pk(tenant, type)
        async with self._turns.turn(pk, id):
            for attempt in range(_ATTEMPTS):
                item = await self._get(pk, id)
                if item is None:
                    return None
                # `change` may raise (ifVersion, a bad $inc): then nothing has been written.
                row = change(_stored(item))
                if await self._put_if_unchanged(tenant, row, item):
                    return row
                await _backoff(attempt)
        raise StoreError(f"The entity store could not update {type} {id}: too many concurrent writes")

    async def _remove(self, tenant: str, type: str, id: str) -> bool:
        if not is_valid_id(id):
            return False
        try:
            await self._table.call(
                "delete_item", Key=_key(_entity_pk(tenant, type), id), ConditionExpression="attribute_exists(pk)"
            )
        except ConditionFailed:
            return False
        await self._drop_edges(tenant, Ref(type, id))
        return True

    async def _link(self, tenant: str, source: Ref, rel: str, target: Ref, now: int) -> Ref | int:
        for attempt in range(_ATTEMPTS):
            ends = await self._ends(tenant, source, target)
            if isinstance(ends, Ref):
                return ends
            borns = [ends[_record_key(tenant, ref)]["born"]["S"] for ref in (source, target)]
            edge = _edge_item(tenant, source, rel, target, now, borns[0], borns[1])
            failed = await self._transact(self._link_writes(ends, edge))
            if not failed:
                return now
            if failed[-1] in _CHECK_FAILED and not any(code in _CHECK_FAILED for code in failed[:-1]):
                # Only the edge's own condition failed: it exists between these incarnations already.
                existing = await self._get_item(edge["pk"]["S"], edge["sk"]["S"])
                if existing is not None and _same_ends(existing, edge):
                    return int(existing["created"]["N"])
            await _backoff(attempt)
        raise StoreError("The entity store could not relate the records: too many concurrent writes")

    async def _linked(
        self, tenant: str, ref: Ref, rel: str | None, direction: Direction
    ) -> builtins.list[StoredRecord]:
        near = await self._get(*_record_key(tenant, ref))
        if near is None:
            return []
        ends = await self._far_ends(tenant, ref, rel, direction, near["born"]["S"])
        found = await self._batch_get([key for _, key, _ in ends])
        # An end whose incarnation differs was deleted since (and perhaps created again): not this edge's.
        return [
            _stored(found[key]) for _, key, end_born in ends if key in found and found[key]["born"]["S"] == end_born
        ]

    # -- reads ---------------------------------------------------------------------------------------------

    async def _get(self, pk: str, id: str) -> Item | None:
        """A record's item, or None."""
        if not is_valid_id(id):
            return None  # no record has such an id, and it could not be a key
        return await self._get_item(pk, id)

    async def _get_item(self, pk: str, sk: str) -> Item | None:
        found: Item | None = (await self._table.call("get_item", Key=_key(pk, sk), ConsistentRead=True)).get("Item")
        return found

    async def _cursor(self, pk: str, type: str, cursor: str) -> Item:
        item = await self._get(pk, cursor)
        if item is None:
            raise InputError(f"Unknown cursor '{cursor}': no {type} with that id")
        return item

    async def _page(
        self, pk: str, path: _Path, limit: int | None, start: Item | None
    ) -> tuple[list[Item], Item | None]:
        arguments = path.arguments(pk)
        if limit is not None:
            arguments["Limit"] = limit
        if start is not None:
            arguments["ExclusiveStartKey"] = start
        page = await self._table.call("query", **arguments)
        return page.get("Items", []), page.get("LastEvaluatedKey")

    async def _items(self, pk: str, path: _Path) -> AsyncIterator[Item]:
        """Every item of the path, page after page."""
        start: Item | None = None
        while not path.empty:
            items, start = await self._page(pk, path, None, start)
            for item in items:
                yield item
            if start is None:
                return

    async def _read_page(self, pk: str, path: _Path, query: ListQuery, cursor: Item | None) -> list[StoredRecord]:
        # The path's order is the listing's: read from the cursor on, only as far as the page needs.
        mark = None if cursor is None else cursor[_INDEX_KEYS[path.index][1]]["S"]
        page = _Page(query, mark, _INDEX_KEYS[path.index][1])
        path = path if mark is None else path.after(mark)
        start: Item | None = None
        while not path.empty and not page.full:
            items, start = await self._page(pk, path, page.batch(), start)
            for item in items:
                if page.offer(item):
                    break
            if start is None:
                break
        return page.rows

    async def _batch_get(self, keys: Iterable[Key]) -> dict[Key, Item]:
        """The items that exist among `keys` (each read once, consistently), by key."""
        wanted = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in dict.fromkeys(keys) if is_valid_id(sk)]
        found: dict[Key, Item] = {}
        for start in range(0, len(wanted), _BATCH_GET):
            request = {self._table.name: {"Keys": wanted[start : start + _BATCH_GET], "ConsistentRead": True}}
            for attempt in range(_ATTEMPTS):
                answer = await self._table.raw("batch_get_item", RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table.name, []):
                    found[(item["pk"]["S"], item["sk"]["S"])] = item
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                await _backoff(attempt)  # throttled: DynamoDB hands back what it did not read
            if request:
                raise StoreError("The entity store could not read the records: too many unprocessed keys")
        return found

    async def _ends(self, tenant: str, source: Ref, target: Ref) -> dict[Key, Item] | Ref:
        """The items of an edge's records (one for a self-loop), or the reference whose record is missing."""
        ends: dict[Key, Item] = {}
        for ref in (source, target):
            key = _record_key(tenant, ref)
            if key not in ends:
                item = await self._get(*key)
                if item is None:
                    return ref
                ends[key] = item
        return ends

    async def _far_ends(
        self, tenant: str, ref: Ref, rel: str | None, direction: Direction, born: str
    ) -> list[tuple[str, Key, str]]:
        """(insertion order, record key, incarnation) of the other end of each of the edges of `ref`'s
        incarnation `born`, in insertion order; a self-loop counts once per direction, as in SQLite."""
        ends: list[tuple[str, Key, str]] = []
        if direction in ("out", "both"):
            for item in await self._edges(_edge_pk(tenant, ref), _Path(prefix=_rel_prefix(rel)), rel):
                if item["from_born"]["S"] == born:
                    ends.append((item["ord"]["S"], _far_end(tenant, item["sk"]["S"]), item["to_born"]["S"]))
        if direction in ("in", "both"):
            for item in await self._edges(_edge_in_pk(tenant, ref), _Path("gsi2", prefix=_rel_prefix(rel)), rel):
                if item["to_born"]["S"] == born:
                    ends.append((item["ord"]["S"], _near_end(tenant, item["pk"]["S"]), item["from_born"]["S"]))
        return sorted(ends, key=lambda end: end[0])

    async def _edges(self, pk: str, path: _Path, rel: str | None) -> list[Item]:
        # The key condition holds `<rel>#` as a prefix; a relation name may itself contain '#', so the
        # name is checked whole as well.
        items = [item async for item in self._items(pk, path)]
        side = "sk" if path.index is None else "gsi2sk"
        return [item for item in items if rel is None or item[side]["S"].rsplit("#", 2)[0] == rel]

    # -- writes --------------------------------------------------------------------------------------------

    async def _put_if_unchanged(self, tenant: str, row: StoredRecord, read: Item) -> bool:
        """Write `row` unless the item changed (or was deleted, or created again) since it was `read`."""
        try:
            await self._table.call(
                "put_item",
                Item=_record_item(tenant, row, read["born"]["S"]),
                ConditionExpression="#version = :version AND #born = :born",
                ExpressionAttributeNames={"#version": "version", "#born": "born"},
                ExpressionAttributeValues={":version": read["version"], ":born": read["born"]},
            )
        except ConditionFailed:
            return False
        return True

    async def _transact(self, writes: list[Item]) -> tuple[str, ...]:
        """Run a write transaction: () once committed, else each write's cancellation code when a condition
        was false."""
        try:
            await self._table.raw("transact_write_items", TransactItems=writes)
        except ConditionFailed as failed:
            return failed.reasons or (CONDITION_FAILED,)
        return ()

    def _link_writes(self, ends: dict[Key, Item], edge: Item) -> list[Item]:
        # Both records must still be the incarnations read (one check for a self-loop: a transaction may
        # touch an item once); the edge is new, or a leftover between other incarnations, replaced.
        checks: list[Item] = [
            {
                "ConditionCheck": {
                    "TableName": self._table.name,
                    "Key": _key(*key),
                    "ConditionExpression": "#born = :born",
                    "ExpressionAttributeNames": {"#born": "born"},
                    "ExpressionAttributeValues": {":born": item["born"]},
                }
            }
            for key, item in ends.items()
        ]
        put = {
            "TableName": self._table.name,
            "Item": edge,
            "ConditionExpression": "attribute_not_exists(pk) OR #from <> :from OR #to <> :to",
            "ExpressionAttributeNames": {"#from": "from_born", "#to": "to_born"},
            "ExpressionAttributeValues": {":from": edge["from_born"], ":to": edge["to_born"]},
        }
        return [*checks, {"Put": put}]

    async def _drop_edges(self, tenant: str, ref: Ref) -> None:
        """Delete every edge from or to `ref` (a self-loop is both, and deleted once)."""
        keys: dict[Key, None] = {}
        for path, pk in ((_Path(), _edge_pk(tenant, ref)), (_Path("gsi2"), _edge_in_pk(tenant, ref))):
            async for item in self._items(pk, path):
                keys[(item["pk"]["S"], item["sk"]["S"])] = None
        deletes = [{"DeleteRequest": {"Key": _key(*key)}} for key in keys]
        for start in range(0, len(deletes), _BATCH_WRITE):
            await self._batch_write(deletes[start : start + _BATCH_WRITE])

    async def _batch_write(self, requests: list[Item]) -> None:
        pending: dict[str, list[Item]] = {self._table.name: requests}
        for attempt in range(_ATTEMPTS):
            answer = await self._table.raw("batch_write_item", RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
            await _backoff(attempt)
        raise StoreError("The entity store could not delete the record's relations: too many unprocessed writes")


# -- reading a path --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Path:
    """One way through a partition: the table or an index, in one direction, between inclusive sort-key
    bounds or under a prefix."""

    index: str | None = None
    forward: bool = True
    low: str | None = None
    high: str | None = None
    prefix: str | None = None

    @property
    def empty(self) -> bool:
        """True when the bounds cross: nothing to read (DynamoDB refuses such a BETWEEN)."""
        return self.low is not None and self.high is not None and self.low > self.high

    def after(self, mark: str) -> _Path:
        """This path from `mark` (the cursor's sort key) on, `mark` itself still included."""
        if self.forward:
            return replace(self, low=mark if self.low is None else max(self.low, mark))
        return replace(self, high=mark if self.high is None else min(self.high, mark))

    def arguments(self, pk: str) -> dict[str, Any]:
        """The Query arguments of this path in partition `pk`."""
        hash_key, range_key = _INDEX_KEYS[self.index]
        condition, bounds = self._sort_condition()
        names = {"#h": hash_key} | ({"#r": range_key} if condition else {})
        values = {":h": {"S": pk}} | {name: {"S": bound} for name, bound in bounds.items()}
        arguments: dict[str, Any] = {
            "KeyConditionExpression": "#h = :h" + condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": self.forward,
        }
        if self.index is None:
            arguments["ConsistentRead"] = True  # only the table offers it
        else:
            arguments["IndexName"] = self.index
        return arguments

    def _sort_condition(self) -> tuple[str, dict[str, str]]:
        """The key condition's sort-key part (empty when it has none) and the values it names."""
        if self.prefix is not None:
            return " AND begins_with(#r, :prefix)", {":prefix": self.prefix}
        if self.low is not None and self.high is not None:
            return " AND #r BETWEEN :low AND :high", {":low": self.low, ":high": self.high}
        if self.low is not None:
            return " AND #r >= :low", {":low": self.low}
        if self.high is not None:
            return " AND #r <= :high", {":high": self.high}
        return "", {}


class _Page:
    """A page being filled from items in the listing's order: those after the cursor that pass the
    filter, less the offset, up to the limit."""

    def __init__(self, query: ListQuery, mark: str | None, sort_key: str) -> None:
        self.rows: list[StoredRecord] = []
        self._test = None if query.where is None else compile_where(query.where)
        self._skip = max(query.offset, 0)
        # Like SQL's LIMIT (and the other adapters): a negative limit is none.
        self._limit = query.limit if query.limit >= 0 else None
        self._mark = mark
        self._sort_key = sort_key

    @property
    def full(self) -> bool:
        """True once the page holds its limit."""
        return self._limit is not None and len(self.rows) >= self._limit

    def batch(self) -> int | None:
        """The `Limit` of the next request: what the page still needs, more when a filter may drop items."""
        if self._limit is None:
            return None
        needed = self._skip + self._limit - len(self.rows) + (0 if self._mark is None else 1)
        if self._test is not None:
            needed = max(needed, _MIN_FILTERED_BATCH)
        return min(needed, _MAX_BATCH)

    def offer(self, item: Item) -> bool:
        """Take `item` if it belongs on the page; True once the page is full."""
        if self._mark is not None and item[self._sort_key]["S"] == self._mark:
            return self.full  # the cursor's own record: the page starts after it
        row = _stored(item)
        if self._test is not None and not self._test(row):
            return self.full
        if self._skip:
            self._skip -= 1
        else:
            self.rows.append(row)
        return self.full


def _answer(items: Iterable[Item], cursor: Item | None, type: str, query: ListQuery) -> list[StoredRecord]:
    """`query` answered in Python over `items` (a superset of its matches), as the memory adapter does."""
    rows = {row.id: row for row in map(_stored, items)}
    if cursor is not None:
        rows.setdefault(cursor["sk"]["S"], _stored(cursor))  # where the page starts, matching or not
    return evaluate_list(rows, type, query)


# -- planning a list -------------------------------------------------------------------------------------


def _plan(terms: tuple[Condition, ...], sort: tuple[tuple[str, Literal["asc", "desc"]], ...]) -> tuple[_Path, bool]:
    """The path to read, and whether it is already in the listing's order (else it is sorted in Python)."""
    bounds = {index: _bounds(terms, meta) for index, meta in _NARROWS.items()}
    order = _index_order(sort)
    if order is not None:
        index, forward = order
        return _Path(index, forward, *bounds[index]), True
    # Unordered: the narrowest path known, the table itself (read consistently) when none is narrowed.
    index = next((index for index, bound in bounds.items() if bound != (None, None)), None)
    return _Path(index, True, *bounds[index]), False


def _index_order(sort: tuple[tuple[str, Literal["asc", "desc"]], ...]) -> tuple[str | None, bool] | None:
    """The index (None: the table) holding the listing's order, and whether to read it forward."""
    keys = _order_keys(sort)
    directions = {direction for _, direction in keys}
    if len(directions) != 1:
        return None
    names = tuple(name for name, _ in keys)
    for index, order in _ORDERS.items():
        if names == order:
            return index, directions == {"asc"}
    return None


def _order_keys(sort: tuple[tuple[str, Literal["asc", "desc"]], ...]) -> list[tuple[str | None, str]]:
    """SQLite's sort keys for `sort` (as sqlite_store builds them), a data field as None; `$type` (the
    same all through a partition) and whatever follows `id` (unique in one) left out."""
    keys: list[tuple[str | None, str]] = []
    used: dict[str, str] = {}
    for name, direction in sort:
        meta = parse_field(name).meta
        if meta is None:
            keys.append((None, direction))
        elif meta not in used:
            used[meta] = direction
            keys.append((meta, direction))
    if "createdAt" not in used and "id" not in used:
        keys.append(("createdAt", "asc"))
    if "id" not in used:
        keys.append(("id", used.get("createdAt", "asc")))
    names = [name for name, _ in keys]
    keys = keys[: names.index("id") + 1]
    return [(name, direction) for name, direction in keys if name != "$type"]


def _conjuncts(where: Condition | None) -> tuple[Condition, ...]:
    """The terms every match must satisfy: the top-level `and` of the condition."""
    if where is None:
        return ()
    return where.items if isinstance(where, And) else (where,)


def _named_ids(terms: tuple[Condition, ...]) -> list[str] | None:
    """The ids a match must have, when a term names them (`id: x`, `id: {in: [...]}`); else None."""
    for term in terms:
        if _is_id_eq(term):
            assert isinstance(term, Eq)
            return [term.value] if isinstance(term.value, str) else []
        if isinstance(term, Or) and all(_is_id_eq(item) for item in term.items):
            # `in: []` (on any field) is an empty Or: it matches nothing, and so names no id.
            values = [item.value for item in term.items if isinstance(item, Eq) and isinstance(item.value, str)]
            return list(dict.fromkeys(values))
    return None


def _is_id_eq(term: Condition) -> bool:
    return isinstance(term, Eq) and term.field.meta == "id"


def _bounds(terms: tuple[Condition, ...], meta: str) -> tuple[str | None, str | None]:
    """Inclusive sort-key bounds of the index ordered by `meta` that every match lies within."""
    low: str | None = None
    high: str | None = None
    for term in terms:
        if not isinstance(term, Eq | Range | StartsWith) or term.field.meta != meta:
            continue
        term_low, term_high = _term_bounds(term, meta)
        if term_low is not None:
            low = term_low if low is None else max(low, term_low)
        if term_high is not None:
            high = term_high if high is None else min(high, term_high)
    return low, high


def _term_bounds(term: Eq | Range | StartsWith, meta: str) -> tuple[str | None, str | None]:
    if meta == "id":
        if isinstance(term, StartsWith):
            return term.prefix, term.prefix + _AFTER_ID
        if isinstance(term, Range) and term.kind == "string" and isinstance(term.value, str):
            return (term.value, None) if term.op in ("gt", "gte") else (None, term.value)
        return None, None  # equality is served by a BatchGetItem; other kinds match nothing anyway
    if isinstance(term, Eq) and term.instant is not None:
        return _ms_bound(term.instant, False), _ms_bound(term.instant, True)
    if isinstance(term, Range) and not isinstance(term.value, str):
        upper = term.op in ("lt", "lte")
        bound = _ms_bound(term.value, upper)
        return (None, bound) if upper else (bound, None)
    return None, None


def _ms_bound(ms: int | float, upper: bool) -> str:
    # Rounded outwards and clamped to the instants a record can have, so the bound only ever widens.
    whole = math.ceil(ms) if upper else math.floor(ms)
    key = _ms_key(min(max(whole, MIN_INSTANT_MS), MAX_INSTANT_MS))
    return key + _AFTER_TIME if upper else key


# -- items ------------------------------------------------------------------------------------------------


def _entity_pk(tenant: str, type: str) -> str:
    return f"ENT#{tenant}#{type}"


def _record_key(tenant: str, ref: Ref) -> Key:
    return _entity_pk(tenant, ref.type), ref.id


def _edge_pk(tenant: str, ref: Ref) -> str:
    return f"REL#{tenant}#{ref.type}#{ref.id}"


def _edge_in_pk(tenant: str, ref: Ref) -> str:
    return f"RIN#{tenant}#{ref.type}#{ref.id}"


def _rel_prefix(rel: str | None) -> str | None:
    return None if rel is None else f"{rel}#"


def _far_end(tenant: str, sort_key: str) -> Key:
    """The record key of an edge's target, from the edge's sort key `<rel>#<type>#<id>`."""
    _, type, id = sort_key.rsplit("#", 2)
    return _entity_pk(tenant, type), id


def _near_end(tenant: str, pk: str) -> Key:
    """The record key of an edge's source, from the edge's partition key `REL#<tenant>#<type>#<id>`."""
    _, type, id = pk.rsplit("#", 2)
    return _entity_pk(tenant, type), id


def _key(pk: str, sk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _ms_key(ms: int) -> str:
    offset = ms - MIN_INSTANT_MS
    if not 0 <= offset < 10**_MS_DIGITS:
        raise StoreError(f"The entity store cannot keep the time {ms} (epoch ms): outside the years 0001 to 9999")
    return f"{offset:0{_MS_DIGITS}d}"


def _record_item(tenant: str, row: StoredRecord, born: str) -> Item:
    pk = _entity_pk(tenant, row.type)
    created = _ms_key(row.created)
    return {
        **_key(pk, row.id),
        "gsi1pk": {"S": pk},
        "gsi1sk": {"S": f"{created}#{row.id}"},
        "gsi2pk": {"S": pk},
        "gsi2sk": {"S": f"{_ms_key(row.updated)}#{created}#{row.id}"},
        "data": {"S": _dumps(row.data)},
        "created": {"N": str(row.created)},
        "updated": {"N": str(row.updated)},
        "version": {"N": str(row.version)},
        "born": {"S": born},
    }


def _edge_item(tenant: str, source: Ref, rel: str, target: Ref, now: int, from_born: str, to_born: str) -> Item:
    return {
        **_key(_edge_pk(tenant, source), f"{rel}#{target.type}#{target.id}"),
        "gsi2pk": {"S": _edge_in_pk(tenant, target)},
        "gsi2sk": {"S": f"{rel}#{source.type}#{source.id}"},
        "created": {"N": str(now)},
        "ord": {"S": ulid()},  # monotonic in this process: edges list in insertion order, as SQLite's rowid
        "from_born": {"S": from_born},
        "to_born": {"S": to_born},
    }


def _same_ends(edge: Item, other: Item) -> bool:
    return bool(edge["from_born"] == other["from_born"] and edge["to_born"] == other["to_born"])


def _stored(item: Item) -> StoredRecord:
    return StoredRecord(
        item["pk"]["S"].rsplit("#", 1)[1],
        item["sk"]["S"],
        json.loads(item["data"]["S"]),
        int(item["created"]["N"]),
        int(item["updated"]["N"]),
        int(item["version"]["N"]),
    )


def _dumps(value: object) -> str:
    # The form SqliteEntityStore stores: numbers, big integers and nesting come back exactly as written.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# -- concurrency ------------------------------------------------------------------------------------------


async def _backoff(attempt: int) -> None:
    # Full jitter, so writers that lost the same race do not meet again at once.
    await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))


class _LocalTurns:
    """One writer at a time per record in this process, so its writers queue instead of losing conditional
    writes to each other (other processes still race, and retry). Tasks of one event loop wait on that
    loop's asyncio lock; the loops of different threads then share a thread lock, polled, never blocking
    a thread that an event loop needs."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._records: dict[Key, _Turn] = {}

    @asynccontextmanager
    async def turn(self, pk: str, sk: str) -> AsyncIterator[None]:
        """Wait for this record's turn, then hold it for the block."""
        loop = id(asyncio.get_running_loop())
        with self._guard:
            turn = self._records.setdefault((pk, sk), _Turn())
            local, users = turn.loops.get(loop, (asyncio.Lock(), 0))
            turn.loops[loop] = (local, users + 1)
        try:
            async with local:
                await _acquire(turn.shared)
                try:
                    yield
                finally:
                    turn.shared.release()
        finally:
            self._leave(turn, (pk, sk), loop)

    def _leave(self, turn: _Turn, key: Key, loop: int) -> None:
        # Forget locks nobody waits for: the table stays small, and a later loop reusing this loop's id
        # never meets a lock bound to the old one.
        with self._guard:
            local, users = turn.loops[loop]
            if users > 1:
                turn.loops[loop] = (local, users - 1)
                return
            del turn.loops[loop]
            if not turn.loops:
                del self._records[key]


@dataclass
class _Turn:
    """The locks of one record: a thread lock shared by all loops, and each loop's own queue."""

    shared: threading.Lock = field(default_factory=threading.Lock)
    loops: dict[int, tuple[asyncio.Lock, int]] = field(default_factory=dict)  # loop id -> (lock, users)


async def _acquire(lock: threading.Lock) -> None:
    attempt = 0
    while not lock.acquire(blocking=False):
        await _backoff(attempt)
        attempt = min(attempt + 1, _POLL_STEPS)
