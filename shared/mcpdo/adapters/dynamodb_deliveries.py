"""DeliveryStore on the shared DynamoDB table: events, and one item per delivery, claimed by id.

On AWS nothing polls the store: a queue message names one delivery and its consumer claims it by id, so
each operation on a delivery is one read or write of its item by key (reads strongly consistent), and every
change of state is a conditional write on the state it expects, as the SQLite adapter's `WHERE status = ...`.

Key layout (times are epoch ms; in sort keys zero-padded to 15 digits, so that they sort as numbers):

- `pk = "EVT#<event id>"`, `sk = "EVT"`: the event (its data as JSON text, `event_json`), when it was stored,
  and `deliveries`: a map from each of its delivery ids to the handler (JSON `[tenant, module id, version,
  index]`), with `dead_error` when they were stored as dead letters. `deliveries(event_id)` reads it, then the
  listed delivery items with strongly consistent BatchGetItem calls.
- `pk = "DLV#<delivery id>"`, `sk = "DLV"`: the state of one delivery. Its id is derived from the event id
  and the handler id (`delivery_id`), so an (event, handler) pair has one delivery whoever writes it.
- While dead, a delivery is in the `gsi1` partition `"DLVDEAD#<tenant>"` and the `gsi2` partition
  `"DLVDEAD"`, both sorted by `"<created at>#<id>"` (SQLite's `ORDER BY created_at, id`), which
  `dead_letters` reads; a replay takes it out of both.
- While done, it is in the `gsi1` partition `"DLVDONE"` sorted by `"<completed at>#<id>"`, with a `ttl`
  (epoch seconds) `keep_done_days` later; so is an event stored without deliveries, from the start. `purge`
  reads that partition up to its cut.

`add` cannot be one transaction (an event and its 100 deliveries exceed one): the event item comes first, on
the condition that it is new, listing every delivery it will have; then the delivery items, each on the
condition that it is new, concurrently. A crash in between loses nothing: adding the event again (routing it
again does) finds it stored, creates the listed deliveries still missing and returns False; until then
`deliveries` shows the ones that exist. The event's JSON and its list share one item: an event that does not
fit 400 KB is refused with LimitExceeded.

`claim` tries the usual case blind: one UpdateItem on the condition that the delivery is pending and due. When
that fails it reads the item and decides as every adapter does (`claim_verdict`): not yet due (the Claim says
when), an expired lease to take over, an interrupted last attempt to bury, or nothing to do. Taking over and
burying are UpdateItems on the condition that the state is still the one read, because their error text
names the interrupted attempt, which an update expression cannot compute.

`purge` deletes one event's done deliveries in a transaction with the update of the event's list (or the
delete of the event, when they were all it had left), 99 deliveries to a transaction, so a list never names a
purged delivery (adding the event again cannot bring one back) and no event outlives its deliveries. TTL is
only the backstop for when purge does not run: it removes done deliveries but not their events, and `add`
fills in missing deliveries only for events younger than `keep_done_days`, since what is missing from an
older one may be TTL's work rather than a crash's.

Throughput: each completion writes one entry into the single `DLVDONE` index partition, which takes roughly
1,000 writes a second before it throttles (and throttles the table's writes with it); dead letters likewise
share `DLVDEAD`. A busier deployment would spread them over several partitions.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from mcpdo.adapters.aws_calls import attempts
from mcpdo.adapters.dynamodb_table import ConditionFailed, DynamoTable, Item, text_value
from mcpdo.errors import StoreError
from mcpdo.events.claims import claim_verdict, event_json, interrupted_error, replay_refused
from mcpdo.ports import Claim, Delivery, DeliveryStatus, Event, HandlerRef
from mcpdo.timeparse import format_iso, from_epoch_ms, now_ms, to_epoch_ms

MAX_BATCH_GET = 100  # keys in one BatchGetItem
MAX_WRITES = 100  # items in one TransactWriteItems
_EVENT = "EVT"
_DELIVERY = "DLV"
_DEAD = "DLVDEAD"
_DONE = "DLVDONE"
_NEW = "attribute_not_exists(pk)"
_PURGE_PAGE = 100  # done deliveries purge reads (and deletes) at a time
_RACES = 5  # writers racing one claim, add or replay; a handful is already unusual
_DAY_MS = 86_400_000

# Conditions and updates; every attribute is spelled `#name` (some, like `status` and `ttl`, are reserved).
_PENDING_DUE = "#status = :pending AND #next_attempt_at <= :now"
_RUNNING_EXPIRED = "#status = :running AND #lease_until <= :now AND #attempts = :attempts"
_HELD = "#status = :running AND #claim = :claim"
_LEASE = "#status = :running, #attempts = #attempts + :one, #lease_until = :lease, #claim = :claim, #updated_at = :now"
_DEAD_INDEXES = "#gsi1pk = :dead_tenant, #gsi1sk = #created_key, #gsi2pk = :dead, #gsi2sk = #created_key"
_RELEASE = "#lease_until, #claim"


def delivery_id(event_id: str, handler_id: str) -> str:
    """The id of the delivery of `event_id` to `handler_id`: the same for every writer."""
    digest = hashlib.sha256(f"{event_id}\n{handler_id}".encode()).hexdigest()[:32]
    return f"del_{digest}"


class DynamoDeliveryStore:
    """DeliveryStore on the state table; the table (and its client) is shared with the other AWS adapters."""

    def __init__(self, table: DynamoTable, *, clock: Callable[[], int] = now_ms, keep_done_days: int = 30) -> None:
        if keep_done_days < 1:
            raise ValueError("keep_done_days must be at least 1")
        self._table = table
        self._clock = clock
        self._keep_done_ms = keep_done_days * _DAY_MS

    async def add(self, event: Event, handlers: Sequence[HandlerRef], *, dead_error: str | None = None) -> bool:
        """Store `event`, then one delivery per handler (dead letters with `dead_error`), once per event id;
        for an event already stored, create those of its deliveries still missing."""
        now = self._clock()
        item = _event_item(event, _listing(event.id, handlers), dead_error, now, self._ttl(now))
        for _ in range(_RACES):
            try:
                await self._table.call("put_item", Item=item, ConditionExpression=_NEW)
            except ConditionFailed:
                stored = await self._get(_event_key(event.id))
                if stored is None:
                    continue  # purged since the put was refused: store it anew
                await self._fill(stored, now)
                return False
            await self._create(item, set())
            return True
        raise StoreError(f"The delivery store operation add failed: event {event.id} kept changing")

    async def deliveries(self, event_id: str) -> builtins.list[Delivery]:
        """Every delivery of one event: those its event item lists that exist (a crash mid-add may have left
        some out until the event is added again)."""
        stored = await self._get(_event_key(event_id))
        if stored is None:
            return []
        event = _event(stored)
        items = await self._batch_get([_delivery_key(id) for id in _listed(stored)])
        return [_delivery(item, event) for item in sorted(items, key=_age)]

    async def claim(self, delivery_id: str, lease_seconds: float, max_attempts: int) -> Claim:
        """Lease one delivery by id if it is due (see `claim_verdict`); otherwise say when it is, or bury an
        interrupted one with no attempt left."""
        now = self._clock()
        lease = {":lease": _n(now + int(lease_seconds * 1000)), ":claim": text_value(secrets.token_hex(8))}
        seen: Item | None = None  # blind first: a queue message usually names a pending, due delivery
        for _ in range(_RACES):
            try:
                taken = await self._take(delivery_id, seen, now, lease)
            except ConditionFailed:
                seen = await self._get(_delivery_key(delivery_id))
                verdict, due = ("skip", None) if seen is None else claim_verdict(*_claim_state(seen), now, max_attempts)
                if verdict == "take":
                    continue  # its state changed since the last try: take it as it is now
                if verdict == "wait" and due is not None:
                    return Claim(due_at=from_epoch_ms(due))
                if verdict == "bury" and seen is not None:
                    await self._bury_interrupted(seen, now)
                return Claim()
            return Claim(delivery=_delivery(taken, await self._event(taken["event_id"]["S"])))
        raise StoreError(f"The delivery store operation claim failed: delivery {delivery_id} kept changing")

    async def complete(self, delivery: Delivery) -> None:
        """Mark the delivery done (whoever holds it now): it will never be handed out again."""
        now = self._clock()
        await self._update_if(
            delivery.id,
            "SET #status = :done, #updated_at = :now, #gsi1pk = :done_partition, #gsi1sk = :done_key, #ttl = :ttl "
            f"REMOVE {_RELEASE}, #gsi2pk, #gsi2sk",
            "attribute_exists(pk)",
            {
                ":done": text_value("done"),
                ":now": _n(now),
                ":done_partition": text_value(_DONE),
                ":done_key": text_value(f"{now:015d}#{delivery.id}"),
                ":ttl": _n(self._ttl(now)),
            },
        )

    async def retry(self, delivery: Delivery, error: str, at: datetime) -> None:
        """Record the failure of the claimed attempt; the delivery is due again at `at`."""
        await self._finish_claim(
            delivery,
            "SET #status = :pending, #last_error = :error, #next_attempt_at = :at, #updated_at = :now "
            f"REMOVE {_RELEASE}",
            {":pending": text_value("pending"), ":error": text_value(error), ":at": _n(to_epoch_ms(at))},
        )

    async def bury(self, delivery: Delivery, error: str) -> None:
        """Record the failure of the claimed attempt and make the delivery a dead letter."""
        await self._finish_claim(
            delivery,
            f"SET #status = :dead_status, #last_error = :error, #updated_at = :now, {_DEAD_INDEXES} REMOVE {_RELEASE}",
            {":error": text_value(error), **_dead_values(delivery.handler.tenant)},
        )

    async def dead_letters(self, tenant: str | None = None) -> builtins.list[Delivery]:
        """Dead-lettered deliveries, oldest first; every tenant's when `tenant` is None (from the indexes,
        which lag writes slightly)."""
        index, partition = ("gsi2", _DEAD) if tenant is None else ("gsi1", f"{_DEAD}#{tenant}")
        items = await self._table.query_all(
            IndexName=index,
            KeyConditionExpression=f"{index}pk = :partition",
            ExpressionAttributeValues={":partition": text_value(partition)},
        )
        event_ids = list(dict.fromkeys(item["event_id"]["S"] for item in items))
        events = {event.id: event for event in map(_event, await self._batch_get(map(_event_key, event_ids)))}
        return [_delivery(item, events[item["event_id"]["S"]]) for item in items if item["event_id"]["S"] in events]

    async def dead_letter(self, delivery_id: str) -> Delivery | None:
        """One dead letter by id, or None."""
        item = await self._get(_delivery_key(delivery_id))
        if item is None or item["status"]["S"] != "dead":
            return None
        return _delivery(item, await self._event(item["event_id"]["S"]))

    async def replay(self, delivery_id: str, version: int | None = None) -> None:
        """Queue a dead letter again with its attempts reset, to module `version` when given."""
        now = self._clock()
        values = {
            ":dead_status": text_value("dead"),
            ":pending": text_value("pending"),
            ":zero": _n(0),
            ":now": _n(now),
        }
        new_version = ""
        if version is not None:
            new_version, values[":version"] = ", #version = :version", _n(version)
        for _ in range(_RACES):
            try:
                await self._update(
                    delivery_id,
                    "SET #status = :pending, #attempts = :zero, #next_attempt_at = :now, #updated_at = :now"
                    f"{new_version} REMOVE #last_error, {_RELEASE}, #gsi1pk, #gsi1sk, #gsi2pk, #gsi2sk",
                    "#status = :dead_status",
                    values,
                )
                return
            except ConditionFailed:
                item = await self._get(_delivery_key(delivery_id))
                if item is None or item["status"]["S"] != "dead":
                    raise replay_refused(delivery_id, None if item is None else item["status"]["S"]) from None
        raise StoreError(f"The delivery store operation replay failed: delivery {delivery_id} kept changing")

    async def purge(self, older_than: datetime) -> int:
        """Forget completed deliveries older than `older_than`, and events left with no delivery."""
        cut = to_epoch_ms(older_than)
        arguments: dict[str, Any] = {
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :done AND gsi1sk < :cut",
            "ExpressionAttributeValues": {":done": text_value(_DONE), ":cut": text_value(f"{cut:015d}")},
            "Limit": _PURGE_PAGE,
        }
        removed = 0
        while True:  # page by page: what a page names is deleted before the next is read
            page = await self._table.call("query", **arguments)
            removed += await self._purge_page(page.get("Items", []), cut)
            if "LastEvaluatedKey" not in page:
                return removed
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def close(self) -> None:
        """Release the shared table's client (closing it again is harmless)."""
        await self._table.close()

    # -- adding --------------------------------------------------------------------------------------------

    async def _fill(self, stored: Item, now: int) -> None:
        """Create the deliveries a stored event lists that are missing (a crash mid-add left them out)."""
        if now - int(stored["published_at"]["N"]) >= self._keep_done_ms:
            return  # TTL may have removed done ones by now: creating them again would run them again
        keys = [_delivery_key(id) for id in _listed(stored)]
        found = await self._batch_get(keys, ProjectionExpression="#id", **_names("#id"))
        await self._create(stored, {item["id"]["S"] for item in found})

    async def _create(self, event_item: Item, existing: set[str]) -> None:
        """Put the delivery items `event_item` lists, but those in `existing`, each only if it is new."""
        created_at = int(event_item["published_at"]["N"])
        dead = event_item.get("dead_error")
        dead_error = None if dead is None else str(dead["S"])
        await asyncio.gather(
            *(
                self._put_new(_delivery_item(id, event_item["id"]["S"], handler, created_at, dead_error))
                for id, handler in _listed(event_item).items()
                if id not in existing
            )
        )

    async def _put_new(self, item: Item) -> None:
        # A false condition: another add of the same event wrote it, and it is the same delivery.
        with contextlib.suppress(ConditionFailed):
            await self._table.call("put_item", Item=item, ConditionExpression=_NEW)

    # -- claiming --------------------------------------------------------------------------------------------

    async def _take(self, delivery_id: str, seen: Item | None, now: int, lease: Item) -> Item:
        """Lease the delivery if it is still as `seen` (None: pending and due); its item afterwards."""
        values = {**lease, ":running": text_value("running"), ":one": _n(1), ":now": _n(now)}
        if seen is None or seen["status"]["S"] == "pending":
            values[":pending"] = text_value("pending")
            return await self._update(delivery_id, f"SET {_LEASE}", _PENDING_DUE, values, ReturnValues="ALL_NEW")
        attempts = int(seen["attempts"]["N"])
        values.update({":attempts": _n(attempts), ":interrupted": text_value(interrupted_error(attempts))})
        return await self._update(
            delivery_id, f"SET {_LEASE}, #last_error = :interrupted", _RUNNING_EXPIRED, values, ReturnValues="ALL_NEW"
        )

    async def _bury_interrupted(self, seen: Item, now: int) -> None:
        """Dead-letter a delivery whose last attempt was interrupted, if it is still as `seen`."""
        attempts = int(seen["attempts"]["N"])
        await self._update_if(
            seen["id"]["S"],
            f"SET #status = :dead_status, #last_error = :error, #updated_at = :now, {_DEAD_INDEXES} REMOVE {_RELEASE}",
            _RUNNING_EXPIRED,
            {
                ":running": text_value("running"),
                ":attempts": _n(attempts),
                ":error": text_value(interrupted_error(attempts, last=True)),
                ":now": _n(now),
                **_dead_values(seen["tenant"]["S"]),
            },
        )

    async def _finish_claim(self, delivery: Delivery, expression: str, values: Item) -> None:
        # Only the claim that holds the delivery may settle it: after its lease expired another claim took over.
        if delivery.claim is None:
            return
        held = {":running": text_value("running"), ":claim": text_value(delivery.claim), ":now": _n(self._clock())}
        await self._update_if(delivery.id, expression, _HELD, {**values, **held})

    # -- purging -------------------------------------------------------------------------------------------

    async def _purge_page(self, items: builtins.list[Item], cut: int) -> int:
        """Purge what one page of the done partition names; how many deliveries went."""
        by_event: dict[str, builtins.list[str]] = {}
        empty_events: builtins.list[Item] = []
        for item in items:
            if item["pk"]["S"].startswith(f"{_EVENT}#"):
                empty_events.append({"pk": item["pk"], "sk": item["sk"]})
            else:
                by_event.setdefault(item["event_id"]["S"], []).append(item["id"]["S"])
        await asyncio.gather(*(self._table.call("delete_item", Key=key) for key in empty_events))
        counts = await asyncio.gather(*(self._purge_event(id, ids, cut) for id, ids in by_event.items()))
        return sum(counts)

    async def _purge_event(self, event_id: str, ids: builtins.list[str], cut: int) -> int:
        """Delete done deliveries of one event with their entries in its list, in transactions."""
        stored = await self._get(_event_key(event_id), ProjectionExpression="pk, #deliveries", **_names("#deliveries"))
        remaining = set() if stored is None else set(_listed(stored))
        removed = 0
        for start in range(0, len(ids), MAX_WRITES - 1):
            chunk = ids[start : start + MAX_WRITES - 1]
            remaining -= set(chunk)
            writes = [self._delete_done(id, cut) for id in chunk]
            if stored is not None:
                writes.append(self._unlist(event_id, chunk, remaining))
            try:
                await self._table.raw("transact_write_items", TransactItems=writes)
            except ConditionFailed:
                return removed  # another purge took these first, or one was completed again since
            removed += len(chunk)
        return removed

    def _delete_done(self, delivery_id: str, cut: int) -> Item:
        condition = "#status = :done AND #updated_at < :cut"
        return {
            "Delete": {
                "TableName": self._table.name,
                "Key": _delivery_key(delivery_id),
                "ConditionExpression": condition,
                **_names(condition),
                "ExpressionAttributeValues": {":done": text_value("done"), ":cut": _n(cut)},
            }
        }

    def _unlist(self, event_id: str, ids: builtins.list[str], remaining: set[str]) -> Item:
        """The write taking `ids` off the event's list: the delete of the event when nothing else remains."""
        key = _event_key(event_id)
        if not remaining:
            return {"Delete": {"TableName": self._table.name, "Key": key}}
        names = {"#deliveries": "deliveries", **{f"#d{i}": id for i, id in enumerate(ids)}}
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": key,
                "UpdateExpression": "REMOVE " + ", ".join(f"#deliveries.#d{i}" for i in range(len(ids))),
                "ConditionExpression": "attribute_exists(pk)",  # an update would create a deleted event again
                "ExpressionAttributeNames": names,
            }
        }

    # -- reading and writing items -----------------------------------------------------------------------------

    async def _get(self, key: Item, **extra: Any) -> Item | None:
        found = await self._table.call("get_item", Key=key, ConsistentRead=True, **extra)
        item: Item | None = found.get("Item")
        return item

    async def _event(self, event_id: str) -> Event:
        item = await self._get(_event_key(event_id))
        if item is None:
            # Never by design: an event is written before its deliveries and purged with its last one.
            raise StoreError(f"The delivery store operation read failed: event {event_id} of a delivery is missing")
        return _event(item)

    async def _batch_get(self, keys: Iterable[Item], **extra: Any) -> builtins.list[Item]:
        """The items of `keys` that exist, strongly consistent, retrying what DynamoDB leaves unprocessed."""
        keys = list(keys)
        found: builtins.list[Item] = []
        for start in range(0, len(keys), MAX_BATCH_GET):
            request = {self._table.name: {"Keys": keys[start : start + MAX_BATCH_GET], "ConsistentRead": True, **extra}}
            # Keys left unprocessed (throttled, or past 16 MB) are asked for again after a back-off.
            async for _ in attempts():
                page = await self._table.raw("batch_get_item", RequestItems=request)
                found.extend(page.get("Responses", {}).get(self._table.name, []))
                request = page.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise StoreError("The delivery store operation batch_get_item failed: keys left unprocessed")
        return found

    async def _update(self, delivery_id: str, expression: str, condition: str, values: Item, **extra: Any) -> Item:
        """One conditional UpdateItem of a delivery item; its attributes when `extra` asks for them."""
        found = await self._table.call(
            "update_item",
            Key=_delivery_key(delivery_id),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            **_names(expression, condition),
            **extra,
        )
        attributes: Item = found.get("Attributes", {})
        return attributes

    async def _update_if(self, delivery_id: str, expression: str, condition: str, values: Item) -> None:
        """`_update`, where a false condition means there is nothing to do (as an UPDATE matching no row)."""
        with contextlib.suppress(ConditionFailed):
            await self._update(delivery_id, expression, condition, values)

    def _ttl(self, now: int) -> int:
        """When TTL may remove a done item completed at `now` (epoch seconds)."""
        return (now + self._keep_done_ms) // 1000


# -- items -----------------------------------------------------------------------------------------------


def _n(number: int) -> dict[str, str]:
    return {"N": str(number)}


def _names(*expressions: str) -> dict[str, dict[str, str]]:
    """`ExpressionAttributeNames` for every `#name` the expressions use."""
    return {"ExpressionAttributeNames": {f"#{n}": n for text in expressions for n in re.findall(r"#(\w+)", text)}}


def _event_key(event_id: str) -> Item:
    return {"pk": text_value(f"{_EVENT}#{event_id}"), "sk": text_value(_EVENT)}


def _delivery_key(delivery_id: str) -> Item:
    return {"pk": text_value(f"{_DELIVERY}#{delivery_id}"), "sk": text_value(_DELIVERY)}


def _dead_values(tenant: str) -> Item:
    return {
        ":dead_status": text_value("dead"),
        ":dead_tenant": text_value(f"{_DEAD}#{tenant}"),
        ":dead": text_value(_DEAD),
    }


def _listing(event_id: str, handlers: Sequence[HandlerRef]) -> dict[str, HandlerRef]:
    """Delivery id -> handler; the first of a repeated handler id stays (SQLite's INSERT OR IGNORE)."""
    listing: dict[str, HandlerRef] = {}
    for handler in handlers:
        listing.setdefault(delivery_id(event_id, handler.handler_id), handler)
    return listing


def _listed(event_item: Item) -> dict[str, HandlerRef]:
    listed: dict[str, HandlerRef] = {}
    for id, value in event_item["deliveries"]["M"].items():
        tenant, module_id, version, index = json.loads(value["S"])
        listed[id] = HandlerRef(tenant, module_id, version, index)
    return listed


def _event_item(event: Event, listing: dict[str, HandlerRef], dead_error: str | None, now: int, ttl: int) -> Item:
    handlers = {
        id: text_value(json.dumps([h.tenant, h.module_id, h.version, h.index], ensure_ascii=False))
        for id, h in listing.items()
    }
    item: Item = {
        **_event_key(event.id),
        "id": text_value(event.id),
        "tenant": text_value(event.tenant),
        "type": text_value(event.type),
        "data": text_value(event_json(event)),
        "source": text_value(event.source),
        "time": text_value(event.time),
        "correlation_id": text_value(event.correlation_id),
        "depth": _n(event.depth),
        "published_at": _n(now),
        "deliveries": {"M": handlers},
    }
    if dead_error is not None:
        item["dead_error"] = text_value(dead_error)
    if not listing:  # done from the start: purge forgets it, like a delivery completed now
        item.update(gsi1pk=text_value(_DONE), gsi1sk=text_value(f"{now:015d}#{event.id}"), ttl=_n(ttl))
    return item


def _delivery_item(id: str, event_id: str, handler: HandlerRef, created_at: int, dead_error: str | None) -> Item:
    """A new delivery, pending and due at `created_at`, or with `dead_error` a dead letter (0 attempts)."""
    created_key = f"{created_at:015d}#{id}"
    item: Item = {
        **_delivery_key(id),
        "id": text_value(id),
        "event_id": text_value(event_id),
        "tenant": text_value(handler.tenant),
        "module_id": text_value(handler.module_id),
        "version": _n(handler.version),
        "idx": _n(handler.index),
        "status": text_value("pending" if dead_error is None else "dead"),
        "attempts": _n(0),
        "next_attempt_at": _n(created_at),
        "created_at": _n(created_at),
        "updated_at": _n(created_at),
        "created_key": text_value(created_key),
    }
    if dead_error is not None:
        item.update(
            last_error=text_value(dead_error),
            gsi1pk=text_value(f"{_DEAD}#{handler.tenant}"),
            gsi1sk=text_value(created_key),
            gsi2pk=text_value(_DEAD),
            gsi2sk=text_value(created_key),
        )
    return item


def _age(item: Item) -> tuple[int, str]:
    """Oldest first, by creation then id, as SQLite lists deliveries."""
    return int(item["created_at"]["N"]), str(item["id"]["S"])


def _claim_state(item: Item) -> tuple[str, int, int, int | None]:
    """Status, attempts, next attempt and lease end: what `claim_verdict` decides on."""
    lease = item.get("lease_until")
    return (
        item["status"]["S"],
        int(item["attempts"]["N"]),
        int(item["next_attempt_at"]["N"]),
        None if lease is None else int(lease["N"]),
    )


def _event(item: Item) -> Event:
    return Event(
        id=item["id"]["S"],
        type=item["type"]["S"],
        data=json.loads(item["data"]["S"]),
        source=item["source"]["S"],
        time=item["time"]["S"],
        tenant=item["tenant"]["S"],
        correlation_id=item["correlation_id"]["S"],
        depth=int(item["depth"]["N"]),
    )


def _delivery(item: Item, event: Event) -> Delivery:
    last_error, claim = item.get("last_error"), item.get("claim")
    return Delivery(
        id=item["id"]["S"],
        event=event,
        handler=HandlerRef(
            item["tenant"]["S"], item["module_id"]["S"], int(item["version"]["N"]), int(item["idx"]["N"])
        ),
        status=cast(DeliveryStatus, item["status"]["S"]),
        attempts=int(item["attempts"]["N"]),
        next_attempt_at=format_iso(int(item["next_attempt_at"]["N"])),
        last_error=None if last_error is None else last_error["S"],
        claim=None if claim is None else claim["S"],
    )
