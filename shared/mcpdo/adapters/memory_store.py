"""EntityStore in memory: records in tenant-partitioned dicts; filtering, sorting and paging in Python.

It answers every query as SqliteEntityStore does, so it can stand in for it wherever nothing need outlive
the process. Filtering, sorting and paging are the core's evaluator (`mcpdo.evaluate`), which mirrors SQLite.

The hooks never await, so each one runs to completion on its event loop; a lock makes them atomic across
threads too (each thread may run its own loop). Stored data is private: it is copied in and out through
JSON, which is also exactly what a SQLite round trip does to it.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from mcpdo.errors import StoreError
from mcpdo.evaluate import record_json, select_records
from mcpdo.ports import Direction, ListQuery, Ref
from mcpdo.records import RecordStore, StoredRecord
from mcpdo.timeparse import now_ms

# An edge: from type, from id, relation, to type, to id.
Edge = tuple[str, str, str, str, str]


class MemoryEntityStore(RecordStore):
    """Records of any type, partitioned by tenant, in memory: storage only, the record logic is RecordStore's."""

    def __init__(self, *, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(clock)
        self._lock = threading.Lock()
        self._closed = False
        self._records: dict[str, dict[str, dict[str, StoredRecord]]] = {}  # tenant -> type -> id -> row
        self._edges: dict[str, dict[Edge, int]] = {}  # tenant -> edge -> created ms, in creation order

    async def close(self) -> None:
        """Forget everything; the store refuses to be used afterwards, as a closed SQLite one does."""
        with self._lock:
            self._closed = True
            self._records.clear()
            self._edges.clear()

    # -- storage hooks ---------------------------------------------------------------------------------

    async def _query(self, tenant: str, type: str, query: ListQuery) -> builtins.list[StoredRecord]:
        with self._open():
            return [_copy(row) for row in select_records(self._rows(tenant, type), type, query)]

    async def _fetch(self, tenant: str, type: str, id: str) -> StoredRecord | None:
        with self._open():
            row = self._rows(tenant, type).get(id)
            return None if row is None else _copy(row)

    async def _insert(self, tenant: str, row: StoredRecord) -> bool:
        stored = _copy(row)
        with self._open():
            rows = self._records.setdefault(tenant, {}).setdefault(row.type, {})
            if row.id in rows:
                return False
            rows[row.id] = stored
            return True

    async def _replace(
        self, tenant: str, type: str, id: str, change: Callable[[StoredRecord], StoredRecord]
    ) -> StoredRecord | None:
        with self._open():
            rows = self._rows(tenant, type)
            current = rows.get(id)
            if current is None:
                return None
            # `change` sees a copy and may raise: the stored row stays as it was until the new one is whole.
            changed = change(_copy(current))
            rows[id] = _copy(changed)
            return changed

    async def _remove(self, tenant: str, type: str, id: str) -> bool:
        with self._open():
            existed = self._rows(tenant, type).pop(id, None) is not None
            edges = self._edges.get(tenant, {})
            for edge in [edge for edge in edges if edge[:2] == (type, id) or edge[3:] == (type, id)]:
                del edges[edge]
            return existed

    async def _link(self, tenant: str, source: Ref, rel: str, target: Ref, now: int) -> Ref | int:
        with self._open():
            for ref in (source, target):
                if ref.id not in self._rows(tenant, ref.type):
                    return ref
            edges = self._edges.setdefault(tenant, {})
            return edges.setdefault((source.type, source.id, rel, target.type, target.id), now)

    async def _linked(
        self, tenant: str, ref: Ref, rel: str | None, direction: Direction
    ) -> builtins.list[StoredRecord]:
        here = (ref.type, ref.id)
        with self._open():
            found = []
            for edge in self._edges.get(tenant, {}):
                if rel is not None and edge[2] != rel:
                    continue
                # A self-loop counts for both directions, as SQLite's UNION ALL of the two sides does.
                if direction != "in" and edge[:2] == here:
                    found.append(self._rows(tenant, edge[3]).get(edge[4]))
                if direction != "out" and edge[3:] == here:
                    found.append(self._rows(tenant, edge[0]).get(edge[1]))
            return [_copy(row) for row in found if row is not None]

    # -- state -------------------------------------------------------------------------------------------

    @contextmanager
    def _open(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise StoreError("The entity store is closed")
            yield

    def _rows(self, tenant: str, type: str) -> dict[str, StoredRecord]:
        # Reads must not create partitions: an empty dict stands in for a tenant or type never written.
        return self._records.get(tenant, {}).get(type, {})


def _copy(row: StoredRecord) -> StoredRecord:
    return replace(row, data=json.loads(record_json(row.data)))
