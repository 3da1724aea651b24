"""EntityStore on SQLite: one JSON data column plus metadata columns; filtering, sorting and paging in SQL.

One connection per store, guarded by a lock, so the store is safe to call from the event loop and from
threads alike. Writes run in `BEGIN IMMEDIATE` transactions, so read-modify-write updates (`$inc`,
`ifVersion`) never interleave, even across processes sharing the file.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
from collections.abc import Callable
from typing import Any, Literal

from mcpdo.adapters.sqlite_db import SqliteDatabase
from mcpdo.errors import InputError
from mcpdo.evaluate import canonical_text, record_json
from mcpdo.ports import Direction, ListQuery, Ref
from mcpdo.query import (
    And,
    Condition,
    Contains,
    Eq,
    Exists,
    Field,
    Not,
    Or,
    Range,
    StartsWith,
    parse_field,
)
from mcpdo.records import RecordStore, StoredRecord
from mcpdo.timeparse import now_ms, parse_iso_ms

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    tenant  TEXT    NOT NULL,
    type    TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    data    TEXT    NOT NULL,  -- JSON object of the record's own fields (no metadata)
    created INTEGER NOT NULL,  -- epoch ms
    updated INTEGER NOT NULL,  -- epoch ms
    version INTEGER NOT NULL,
    PRIMARY KEY (tenant, type, id)
);
CREATE INDEX IF NOT EXISTS entities_by_created ON entities (tenant, type, created, id);
CREATE INDEX IF NOT EXISTS entities_by_updated ON entities (tenant, type, updated, id);
CREATE TABLE IF NOT EXISTS relations (
    tenant    TEXT    NOT NULL,
    from_type TEXT    NOT NULL,
    from_id   TEXT    NOT NULL,
    rel       TEXT    NOT NULL,
    to_type   TEXT    NOT NULL,
    to_id     TEXT    NOT NULL,
    created   INTEGER NOT NULL,  -- epoch ms; rowid keeps the creation order within a millisecond
    PRIMARY KEY (tenant, from_type, from_id, rel, to_type, to_id)
);
CREATE INDEX IF NOT EXISTS relations_by_target ON relations (tenant, to_type, to_id, rel);
"""

_META_COLUMNS = {"id": "id", "$type": "type", "createdAt": "created", "updatedAt": "updated", "version": "version"}
_INT64 = (-(2**63), 2**63 - 1)
_NUMERIC = "('integer', 'real')"
_COMPARATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class SqliteEntityStore(RecordStore):
    """Records of any type, partitioned by tenant, in one SQLite file (or `':memory:'`): storage only, the
    record logic is RecordStore's."""

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        connection: sqlite3.Connection | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(clock)
        self._db = SqliteDatabase(
            path,
            what="entity store",
            schema=SCHEMA,
            connection=connection,
            functions=[("mcpdo_iso_ms", 1, _sql_iso_ms), ("mcpdo_canon", 1, _sql_canon)],
        )

    async def close(self) -> None:
        """Release the connection."""
        self._db.close()

    # -- storage hooks ---------------------------------------------------------------------------------

    async def _query(self, tenant: str, type: str, query: ListQuery) -> builtins.list[StoredRecord]:
        sql = _Compiler()
        clauses = ["tenant = :tenant", "type = :type"]
        sql.params.update(tenant=tenant, type=type)
        if query.where is not None:
            clauses.append(sql.condition(query.where))
        keys = _sort_keys(sql, query.sort)
        with self._db.transaction(immediate=False) as conn:
            if query.cursor is not None:
                clauses.append(_after_cursor(sql, conn, keys, type, query.cursor))
            order = ", ".join(f"{expr} {direction.upper()}" for expr, direction in keys)
            sql.params.update(limit=query.limit, offset=query.offset)
            rows = conn.execute(
                f"SELECT type, id, data, created, updated, version FROM entities "
                f"WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT :limit OFFSET :offset",
                sql.params,
            ).fetchall()
        return [_stored(row) for row in rows]

    async def _fetch(self, tenant: str, type: str, id: str) -> StoredRecord | None:
        with self._db.transaction(immediate=False) as conn:
            row = _select(conn, tenant, type, id)
        return None if row is None else _stored(row)

    async def _insert(self, tenant: str, row: StoredRecord) -> bool:
        with self._db.transaction() as conn:
            try:
                conn.execute(
                    "INSERT INTO entities (tenant, type, id, data, created, updated, version) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (tenant, row.type, row.id, record_json(row.data), row.created, row.updated, row.version),
                )
            except sqlite3.IntegrityError:
                return False
        return True

    async def _replace(
        self, tenant: str, type: str, id: str, change: Callable[[StoredRecord], StoredRecord]
    ) -> StoredRecord | None:
        # One IMMEDIATE transaction: no other writer, in this process or another, between read and write.
        with self._db.transaction() as conn:
            found = _select(conn, tenant, type, id)
            if found is None:
                return None
            row = change(_stored(found))
            conn.execute(
                "UPDATE entities SET data = ?, updated = ?, version = ? WHERE tenant = ? AND type = ? AND id = ?",
                (record_json(row.data), row.updated, row.version, tenant, type, id),
            )
        return row

    async def _remove(self, tenant: str, type: str, id: str) -> bool:
        with self._db.transaction() as conn:
            deleted = conn.execute(
                "DELETE FROM entities WHERE tenant = ? AND type = ? AND id = ?", (tenant, type, id)
            ).rowcount
            conn.execute(
                "DELETE FROM relations WHERE tenant = ? AND "
                "((from_type = ? AND from_id = ?) OR (to_type = ? AND to_id = ?))",
                (tenant, type, id, type, id),
            )
        return bool(deleted > 0)

    async def _link(self, tenant: str, source: Ref, rel: str, target: Ref, now: int) -> Ref | int:
        with self._db.transaction() as conn:
            for ref in (source, target):
                if _select(conn, tenant, ref.type, ref.id) is None:
                    return ref
            edge = (tenant, source.type, source.id, rel, target.type, target.id)
            conn.execute(
                "INSERT OR IGNORE INTO relations (tenant, from_type, from_id, rel, to_type, to_id, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*edge, now),
            )
            (created,) = conn.execute(
                "SELECT created FROM relations WHERE tenant = ? AND from_type = ? AND from_id = ? "
                "AND rel = ? AND to_type = ? AND to_id = ?",
                edge,
            ).fetchone()
        return int(created)

    async def _linked(
        self, tenant: str, ref: Ref, rel: str | None, direction: Direction
    ) -> builtins.list[StoredRecord]:
        params: dict[str, object] = {"tenant": tenant, "type": ref.type, "id": ref.id, "rel": rel}
        selects = []
        for side, here, there in (("out", "from", "to"), ("in", "to", "from")):
            if direction in (side, "both"):
                selects.append(
                    f"SELECT r.rowid AS ord, e.type, e.id, e.data, e.created, e.updated, e.version "
                    f"FROM relations r JOIN entities e ON e.tenant = r.tenant "
                    f"AND e.type = r.{there}_type AND e.id = r.{there}_id "
                    f"WHERE r.tenant = :tenant AND r.{here}_type = :type AND r.{here}_id = :id "
                    f"AND (:rel IS NULL OR r.rel = :rel)"
                )
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(
                f"SELECT type, id, data, created, updated, version FROM ({' UNION ALL '.join(selects)}) ORDER BY ord",
                params,
            ).fetchall()
        return [_stored(row) for row in rows]


_Row = tuple[str, str, str, int, int, int]


def _select(conn: sqlite3.Connection, tenant: str, type: str, id: str) -> _Row | None:
    row: _Row | None = conn.execute(
        "SELECT type, id, data, created, updated, version FROM entities WHERE tenant = ? AND type = ? AND id = ?",
        (tenant, type, id),
    ).fetchone()
    return row


def _stored(row: tuple[Any, ...]) -> StoredRecord:
    type_, id_, body, created, updated, version = row
    return StoredRecord(type_, id_, json.loads(body), created, updated, version)


def _sql_iso_ms(value: object) -> int | None:
    return parse_iso_ms(value) if isinstance(value, str) else None


def _sql_canon(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        return canonical_text(json.loads(text))
    except ValueError:
        return None


def _json_path(field: Field) -> str:
    # Labels are always quoted (query.py refuses '"' in names), so odd keys cannot escape the path.
    return "$" + "".join(f"[{seg}]" if isinstance(seg, int) else f'."{seg}"' for seg in field.path)


def _bindable(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return float(value)
    return value


class _Compiler:
    """Turns a condition tree into a SQL expression with named parameters (values are never inlined)."""

    def __init__(self) -> None:
        self.params: dict[str, object] = {}
        self._names: dict[tuple[type, object], str] = {}

    def bind(self, value: object) -> str:
        value = _bindable(value)
        key = (type(value), value)
        if key not in self._names:
            self._names[key] = name = f"p{len(self._names)}"
            self.params[name] = value
        return ":" + self._names[key]

    def json_parts(self, field: Field) -> tuple[str, str]:
        path = self.bind(_json_path(field))
        return f"json_type(data, {path})", f"json_extract(data, {path})"

    def condition(self, cond: Condition) -> str:
        return self._emit(_normal(cond))[0]

    def _emit(self, cond: Condition) -> tuple[str, int]:
        """The SQL of a normalized condition and the parser stack it needs (relative: leaves are 0)."""
        if isinstance(cond, And | Or):
            if not cond.items:
                return ("1" if isinstance(cond, And) else "0"), 0
            parts = sorted((self._emit(item) for item in cond.items), key=lambda part: -part[1])
            op = "AND" if isinstance(cond, And) else "OR"
            while len(parts) > _CHAIN:
                # The neediest operand stays in the outer chain; the others are grouped.
                rest = parts[1:]
                groups = [_chain(op, rest[start : start + _CHAIN]) for start in range(0, len(rest), _CHAIN)]
                parts = sorted([parts[0], *groups], key=lambda part: -part[1])
            return _chain(op, parts)
        if isinstance(cond, Not):
            inner, need = self._emit(cond.item)
            return f"NOT COALESCE({inner}, 0)", need + 2
        return self._leaf(cond), 0

    def _leaf(self, cond: Condition) -> str:
        assert not isinstance(cond, And | Or | Not)
        meta = cond.field.meta
        if meta is not None:
            return self._meta(meta, cond)
        kind, value = self.json_parts(cond.field)
        if isinstance(cond, Eq):
            return self._eq(kind, value, cond)
        if isinstance(cond, Range):
            op = _COMPARATORS[cond.op]
            if cond.kind == "string":
                return f"({kind} = 'text' AND {value} {op} {self.bind(cond.value)})"
            return f"({self._as_number(kind, value)} {op} {self.bind(cond.value)})"
        if isinstance(cond, Exists):
            return f"(COALESCE({kind}, 'null') {'!=' if cond.present else '='} 'null')"
        if isinstance(cond, StartsWith):
            return f"({kind} = 'text' AND substr({value}, 1, {self.bind(len(cond.prefix))}) = {self.bind(cond.prefix)})"
        return self._contains(kind, value, cond)

    def _as_number(self, kind: str, value: str) -> str:
        # Stored numbers are themselves (epoch ms when they are dates); stored ISO strings become epoch ms.
        return (
            f"CASE {kind} WHEN 'integer' THEN {value} WHEN 'real' THEN {value} "
            f"WHEN 'text' THEN mcpdo_iso_ms({value}) END"
        )

    def _eq(self, kind: str, value: str, cond: Eq) -> str:
        operand = cond.value
        if operand is None:
            return f"(COALESCE({kind}, 'null') = 'null')"
        if isinstance(operand, bool):
            return f"({kind} = '{'true' if operand else 'false'}')"
        if isinstance(operand, list | dict):
            shape = "array" if isinstance(operand, list) else "object"
            return f"({kind} = '{shape}' AND mcpdo_canon({value}) = {self.bind(canonical_text(operand))})"
        if isinstance(operand, str):
            same = f"({kind} = 'text' AND {value} = {self.bind(operand)})"
        else:
            same = f"({kind} IN {_NUMERIC} AND {value} = {self.bind(operand)})"
        if cond.instant is None:
            return same
        return f"({same} OR {self._as_number(kind, value)} = {self.bind(cond.instant)})"

    def _contains(self, kind: str, value: str, cond: Contains) -> str:
        operand = cond.value
        path = self.bind(_json_path(cond.field))
        if operand is None:
            element = "e.type = 'null'"
        elif isinstance(operand, bool):
            element = f"e.type = '{'true' if operand else 'false'}'"
        elif isinstance(operand, str):
            element = f"e.type = 'text' AND e.value = {self.bind(operand)}"
        elif isinstance(operand, list | dict):
            shape = "array" if isinstance(operand, list) else "object"
            element = f"e.type = '{shape}' AND mcpdo_canon(e.value) = {self.bind(canonical_text(operand))}"
        else:
            element = f"e.type IN {_NUMERIC} AND e.value = {self.bind(operand)}"
        members = f"SELECT 1 FROM json_each(data, {path}) AS e WHERE {element}"
        in_array = f"({kind} = 'array' AND EXISTS ({members}))"
        if isinstance(operand, str):
            return f"(({kind} = 'text' AND instr({value}, {self.bind(operand)}) > 0) OR {in_array})"
        return in_array

    def _meta(self, meta: str, cond: Condition) -> str:
        column = _META_COLUMNS[meta]
        textual = meta in ("id", "$type")
        if isinstance(cond, Eq):
            if meta in ("createdAt", "updatedAt"):
                return f"({column} = {self.bind(cond.instant)})"
            matches = isinstance(cond.value, str) if textual else isinstance(cond.value, int | float)
            return f"({column} = {self.bind(cond.value)})" if matches else "0"
        if isinstance(cond, Range):
            if (cond.kind == "string") != textual:
                return "0"
            return f"({column} {_COMPARATORS[cond.op]} {self.bind(cond.value)})"
        if isinstance(cond, Exists):
            return "1" if cond.present else "0"
        text = _meta_text(meta)
        if isinstance(cond, StartsWith):
            return f"(substr({text}, 1, {self.bind(len(cond.prefix))}) = {self.bind(cond.prefix)})"
        if isinstance(cond, Contains) and isinstance(cond.value, str):
            return f"(instr({text}, {self.bind(cond.value)}) > 0)"
        return "0"


# SQLite parses nested parentheses on a fixed stack of about 100 entries and refuses expressions more than
# 1000 deep. So conditions compile in negation normal form with nested AND/OR of one kind flattened (a
# `where` of MAX_WHERE_DEPTH levels then nests at most that deep), the operand needing the most stack
# first (right after "(" it costs one entry, later ones cost three), and chains of at most _CHAIN
# operands (a chain of n is n deep).
_CHAIN = 16


def _normal(cond: Condition, negate: bool = False) -> Condition:
    """`cond` (negated when `negate`) with Not only around leaves and no And directly in an And (or Or
    in an Or). Recursive over the tree, whose depth query.py has bounded."""
    if isinstance(cond, Not):
        return _normal(cond.item, not negate)
    if isinstance(cond, And | Or):
        conjunction = isinstance(cond, And) != negate  # De Morgan: NOT (a AND b) = NOT a OR NOT b
        kind = And if conjunction else Or
        items: list[Condition] = []
        for item in cond.items:
            part = _normal(item, negate)
            items.extend(part.items if isinstance(part, kind) else (part,))
        return items[0] if len(items) == 1 else kind(tuple(items))
    return Not(cond) if negate else cond


def _chain(op: str, parts: builtins.list[tuple[str, int]]) -> tuple[str, int]:
    need = max(part_need + (1 if index == 0 else 3) for index, (_, part_need) in enumerate(parts))
    return "(" + f" {op} ".join(sql for sql, _ in parts) + ")", need


def _meta_text(meta: str) -> str:
    if meta in ("createdAt", "updatedAt"):
        column = _META_COLUMNS[meta]
        return (
            f"(strftime('%Y-%m-%dT%H:%M:%S', {column} / 1000, 'unixepoch') || '.' || "
            f"printf('%03d', {column} % 1000) || 'Z')"
        )
    return "CAST(version AS TEXT)" if meta == "version" else _META_COLUMNS[meta]


def _sort_keys(sql: _Compiler, sort: tuple[tuple[str, Literal["asc", "desc"]], ...]) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    used: dict[str, str] = {}
    for name, direction in sort:
        field = parse_field(name)
        meta = field.meta
        if meta is not None:
            if meta in used:
                continue
            used[meta] = direction
            keys.append((_META_COLUMNS[meta], direction))
        else:
            keys.append((sql.json_parts(field)[1], direction))
    # Ties fall back to creation order; a createdAt sort keeps its direction for same-millisecond ties.
    if "createdAt" not in used and "id" not in used:
        keys.append(("created", "asc"))
    if "id" not in used:
        keys.append(("id", used.get("createdAt", "asc")))
    return keys


def _after_cursor(sql: _Compiler, conn: sqlite3.Connection, keys: list[tuple[str, str]], type: str, cursor: str) -> str:
    row = conn.execute(
        f"SELECT {', '.join(expr for expr, _ in keys)} FROM entities "
        f"WHERE tenant = :tenant AND type = :type AND id = {sql.bind(cursor)}",
        sql.params,
    ).fetchone()
    if row is None:
        raise InputError(f"Unknown cursor '{cursor}': no {type} with that id")
    terms = []
    for index, (expr, direction) in enumerate(keys):
        mark = row[index]
        if mark is None:
            step = f"{expr} IS NOT NULL" if direction == "asc" else None
        else:
            bound = sql.bind(mark)
            step = f"{expr} > {bound}" if direction == "asc" else f"({expr} < {bound} OR {expr} IS NULL)"
        if step is not None:
            ties = [f"{keys[i][0]} IS {sql.bind(row[i])}" for i in range(index)]
            terms.append("(" + " AND ".join([*ties, step]) + ")")
    return "(" + " OR ".join(terms) + ")" if terms else "0"
