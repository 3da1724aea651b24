"""What every entity store does the same way, whatever holds the data: validation of type names, references
and record data, ids, `createdAt`/`updatedAt`, versions and `ifVersion`, `$inc`/`$unset`, and the record's
shape. `RecordStore` carries that logic; a backend implements only the storage hooks (`_query`, `_fetch`,
`_insert`, `_replace`, `_remove`, `_link`, `_linked`), so a new backend is storage and nothing else.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mcpdo.errors import Conflict, InputError, NotFound
from mcpdo.ids import check_id, new_id
from mcpdo.inputs import (
    MAX_INSTANT_MS,
    MAX_RELATION_LENGTH,
    MAX_SAFE_INTEGER,
    MIN_INSTANT_MS,
    TYPE_NAME,
    TYPE_NAME_RULE,
    check_data,
    check_name,
    inc_amount,
    integer_option,
    show,
)
from mcpdo.ports import Direction, ListQuery, Record, Ref
from mcpdo.timeparse import format_iso, instant_ms, now_ms

# Keys a record carries besides its own data; given in data they are kept (id, createdAt) or ignored.
META_KEYS = ("id", "$type", "createdAt", "updatedAt", "version")


@dataclass(frozen=True)
class StoredRecord:
    """A record as a backend keeps it: its own fields apart from the metadata (times in epoch ms)."""

    type: str
    id: str
    data: dict[str, Any]
    created: int
    updated: int
    version: int

    def to_record(self) -> Record:
        """The record as callers see it: `id`, `$type`, the data, then the times and the version."""
        record: Record = {"id": self.id, "$type": self.type}
        record.update(self.data)
        record["createdAt"] = format_iso(self.created)
        record["updatedAt"] = format_iso(self.updated)
        record["version"] = self.version
        return record


class RecordStore(ABC):
    """The EntityStore port's logic over storage hooks."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock

    async def list(self, tenant: str, type: str, query: ListQuery) -> builtins.list[Record]:
        """The records of `type` matching `query`, filtered, sorted and paged by the backend."""
        check_type(type)
        return [row.to_record() for row in await self._query(tenant, type, query)]

    async def get(self, tenant: str, type: str, id: str) -> Record | None:
        """The record, or None."""
        check_type(type)
        row = await self._fetch(tenant, type, id)
        return None if row is None else row.to_record()

    async def create(self, tenant: str, type: str, data: Record) -> Record:
        """Store a new record; an `id` or `createdAt` in `data` is kept."""
        check_type(type)
        fields = record_data(data, "db.create", f"db.create('{type}') data")
        record_id = new_id(type) if fields.get("id") is None else check_id(fields["id"], "id")
        now = self._clock()
        created = now if fields.get("createdAt") is None else _instant(fields["createdAt"])
        body = {key: value for key, value in fields.items() if key not in META_KEYS}
        row = StoredRecord(type, record_id, body, created, max(now, created), 1)
        if not await self._insert(tenant, row):
            raise Conflict(f"{type} {record_id} already exists")
        return row.to_record()

    async def update(self, tenant: str, type: str, id: str, data: Record, if_version: int | None = None) -> Record:
        """Shallow-merge `data` (with `$inc` / `$unset`) into the record, atomically."""
        check_type(type)
        fields = record_data(data, "db.update", f"db.update('{type}', {show(id)}) data")
        for key, current in (("id", id), ("$type", type)):
            if key in fields and fields[key] != current:
                raise InputError(f"Cannot change {key} of {type} {id} (got {show(fields[key])})")
        if if_version is not None:
            if_version = integer_option("ifVersion", if_version, 0, 1, MAX_SAFE_INTEGER)
        changes = {key: value for key, value in fields.items() if key not in META_KEYS}
        for key, value in changes.items():
            if update_operator(value) == "$inc":
                inc_amount(key, value["$inc"])

        def change(current: StoredRecord) -> StoredRecord:
            if if_version is not None and if_version != current.version:
                raise Conflict(
                    f"Version conflict on {type} {id}: expected version {if_version}, found {current.version}"
                )
            merged = merge(current.data, changes, f"{type} {id}")
            updated = max(self._clock(), current.created)
            return replace(current, data=merged, updated=updated, version=current.version + 1)

        row = await self._replace(tenant, type, id, change)
        if row is None:
            raise NotFound(f"{type} {id} not found")
        return row.to_record()

    async def delete(self, tenant: str, type: str, id: str) -> bool:
        """Remove the record and its edges; True if it existed."""
        check_type(type)
        return await self._remove(tenant, type, id)

    async def relate(self, tenant: str, source: Ref, rel: str, target: Ref) -> Record:
        """Store the edge `source -rel-> target` (idempotent); both records must exist."""
        check_ref(source)
        check_ref(target)
        if not isinstance(rel, str) or not rel or len(rel) > MAX_RELATION_LENGTH:
            raise InputError(
                f"The relation name must be a non-empty string (at most {MAX_RELATION_LENGTH}), got {show(rel)}"
            )
        check_name("The relation name", rel)
        linked = await self._link(tenant, source, rel, target, self._clock())
        if isinstance(linked, Ref):
            raise NotFound(f"{linked.type} {linked.id} not found")
        return {
            "from": {"type": source.type, "id": source.id},
            "rel": rel,
            "to": {"type": target.type, "id": target.id},
            "createdAt": format_iso(linked),
        }

    async def related(self, tenant: str, ref: Ref, rel: str | None, direction: Direction) -> builtins.list[Record]:
        """The records at the other end of `ref`'s edges, in edge creation order, each once."""
        check_ref(ref)
        if direction not in ("out", "in", "both"):
            raise InputError(f"direction must be 'out', 'in' or 'both', got {show(direction)}")
        seen: set[tuple[str, str]] = set()
        records = []
        for row in await self._linked(tenant, ref, rel, direction):
            if (row.type, row.id) not in seen:
                seen.add((row.type, row.id))
                records.append(row.to_record())
        return records

    @abstractmethod
    async def close(self) -> None:
        """Release what the backend holds."""

    # -- storage hooks -------------------------------------------------------------------------------

    @abstractmethod
    async def _query(self, tenant: str, type: str, query: ListQuery) -> builtins.list[StoredRecord]:
        """The rows of `type` matching `query`: filtered, sorted, paged (offset or cursor), at most its limit."""

    @abstractmethod
    async def _fetch(self, tenant: str, type: str, id: str) -> StoredRecord | None:
        """One row, or None."""

    @abstractmethod
    async def _insert(self, tenant: str, row: StoredRecord) -> bool:
        """Store a new row; False (and nothing stored) when the tenant already has that type and id."""

    @abstractmethod
    async def _replace(
        self, tenant: str, type: str, id: str, change: Callable[[StoredRecord], StoredRecord]
    ) -> StoredRecord | None:
        """Replace the row by `change(row)` atomically (no other write between reading and writing it; an
        error from `change` leaves the row as it was); None when there is no such row."""

    @abstractmethod
    async def _remove(self, tenant: str, type: str, id: str) -> bool:
        """Remove the row and every edge from or to it; True if it existed."""

    @abstractmethod
    async def _link(self, tenant: str, source: Ref, rel: str, target: Ref, now: int) -> Ref | int:
        """Store the edge (once); its creation time in epoch ms, or the reference whose record is missing."""

    @abstractmethod
    async def _linked(
        self, tenant: str, ref: Ref, rel: str | None, direction: Direction
    ) -> builtins.list[StoredRecord]:
        """The rows at the other end of `ref`'s edges (`rel` None: any), in edge creation order."""


def check_type(type: object) -> None:
    """A record type name: `Order`, `LineItem`."""
    if not isinstance(type, str) or not TYPE_NAME.fullmatch(type):
        raise InputError(f"Type names {TYPE_NAME_RULE}, got {show(type)}")


def check_ref(ref: object) -> None:
    """A reference to a record: a type name and a non-empty id."""
    if not isinstance(ref, Ref):
        raise InputError(f"Expected a record reference {{type, id}}, got {show(ref)}")
    check_type(ref.type)
    if not isinstance(ref.id, str) or not ref.id:
        raise InputError(f"A record reference needs a non-empty id, got {show(ref.id)}")


def record_data(data: object, call: str, what: str) -> dict[str, Any]:
    """The one check of record data (mcpdo.inputs.check_data): afterwards it is JSON all through, safe to
    store and merge."""
    if not isinstance(data, Mapping):
        raise InputError(f"{what} must be an object, got {show(data)}")
    check_data(call, data)
    return dict(data)


def update_operator(value: object) -> str | None:
    """`'$inc'` / `'$unset'` when `value` is such an update operator object, else None (shallow)."""
    if isinstance(value, Mapping) and len(value) == 1:
        (key,) = value
        return key if key in ("$inc", "$unset") else None
    return None


def merge(current: dict[str, Any], changes: Mapping[str, Any], what: str) -> dict[str, Any]:
    """`current` with `changes` applied: plain values replace, `{ $inc: n }` adds, `{ $unset: true }` removes."""
    merged = dict(current)
    for key, value in changes.items():
        operator = update_operator(value)
        if operator == "$inc":
            step = inc_amount(key, value["$inc"])
            existing = merged.get(key)
            if existing is None:
                existing = 0
            if isinstance(existing, bool) or not isinstance(existing, int | float):
                raise InputError(f"Cannot $inc field '{key}' of {what}: its value {show(existing)} is not a number")
            merged[key] = existing + step
        elif operator == "$unset":
            if value["$unset"] is True:
                merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _instant(value: object) -> int:
    given = instant_ms(value)
    if given is None or not MIN_INSTANT_MS <= given <= MAX_INSTANT_MS:
        raise InputError(
            f"createdAt must be a date of the years 0001 to 9999, as an ISO-8601 string or epoch ms "
            f"(from {MIN_INSTANT_MS} to {MAX_INSTANT_MS}), got {show(value)}"
        )
    return given
