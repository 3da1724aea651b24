"""The core's query evaluator: a `query.py` condition tree, sort and paging applied to records in Python,
with exactly the answers SQLite gives (the SQLite store compiles the same tree to SQL). Backends that
cannot filter or sort a query themselves (memory, DynamoDB beyond its key conditions) run it here.

Where SQLite's semantics are not obvious they are mirrored on purpose: values are typed as `json_type` /
`json_extract` see them, sorts follow SQLite's order of types (NULL < numbers < text), integers beyond 64
bits become floats. What SQLite gets plainly wrong is not copied: it cuts strings at a NUL, never finds a
field whose name has a backslash, wraps array indexes at 2**32, and writes pre-1970 instants with
milliseconds oddly for `startsWith` / `contains` on createdAt.
"""

from __future__ import annotations

import builtins
import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from mcpdo.errors import InputError
from mcpdo.ports import ListQuery
from mcpdo.query import (
    TIME_FIELDS,
    And,
    Condition,
    Contains,
    Eq,
    Exists,
    Not,
    Or,
    Range,
    Segment,
    StartsWith,
    parse_field,
)
from mcpdo.records import StoredRecord
from mcpdo.timeparse import from_epoch_ms, parse_iso_ms

Predicate = Callable[[StoredRecord], bool]
Test = Callable[[object], bool]

# What a path that leads nowhere gives: json_extract's NULL, which most tests take as they take JSON null.
_MISSING = object()
_INT64 = (-(2**63), 2**63 - 1)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_TEXT_META = ("id", "$type")
_COLUMNS: dict[str, Callable[[StoredRecord], Any]] = {
    "id": operator.attrgetter("id"),
    "$type": operator.attrgetter("type"),
    "createdAt": operator.attrgetter("created"),
    "updatedAt": operator.attrgetter("updated"),
    "version": operator.attrgetter("version"),
}


# -- list: filter, sort, page ---------------------------------------------------------------------------


def select_records(rows: Mapping[str, StoredRecord], type: str, query: ListQuery) -> builtins.list[StoredRecord]:
    """The rows matching `query`, sorted, after its cursor, then its offset and limit (not copied)."""
    keys = _sort_keys(query.sort)
    mark = None
    if query.cursor is not None:
        cursor_row = rows.get(query.cursor)
        if cursor_row is None:
            raise InputError(f"Unknown cursor '{query.cursor}': no {type} with that id")
        mark = _row_key(keys, cursor_row)
    test = _always if query.where is None else compile_where(query.where)
    keyed = sorted(((_row_key(keys, row), row) for row in rows.values() if test(row)), key=operator.itemgetter(0))
    # The keys end with the id, so the order is total and a cursor marks one place in it.
    page = [row for key, row in keyed if mark is None or mark < key]
    # Like SQL's OFFSET and LIMIT: a negative offset is none, a negative limit no limit.
    start = max(query.offset, 0)
    return page[start:] if query.limit < 0 else page[start : start + query.limit]


SortKey = tuple[Callable[[StoredRecord], Any], bool]


def _sort_keys(sort: tuple[tuple[str, Literal["asc", "desc"]], ...]) -> builtins.list[SortKey]:
    # (value of a row, descending) for each sort field, then the creation-order tie-breakers SQLite adds.
    keys: builtins.list[SortKey] = []
    used: dict[str, str] = {}
    for name, direction in sort:
        field = parse_field(name)
        meta = field.meta
        if meta is None:
            keys.append((_data_order(field.path), direction == "desc"))
        elif meta not in used:
            used[meta] = direction
            keys.append((_COLUMNS[meta], direction == "desc"))
    # Ties fall back to creation order; a createdAt sort keeps its direction for same-millisecond ties.
    if "createdAt" not in used and "id" not in used:
        keys.append((_COLUMNS["createdAt"], False))
    if "id" not in used:
        keys.append((_COLUMNS["id"], used.get("createdAt") == "desc"))
    return keys


def _row_key(keys: builtins.list[SortKey], row: StoredRecord) -> tuple[Any, ...]:
    return tuple(_Descending(value(row)) if descending else value(row) for value, descending in keys)


@dataclass(frozen=True)
class _Descending:
    """A sort key ordered in reverse; equality is the key's own."""

    key: Any

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.key < self.key)


def _data_order(path: tuple[Segment, ...]) -> Callable[[StoredRecord], tuple[int, Any]]:
    return lambda row: _order_value(_lookup(row.data, path))


def _order_value(value: object) -> tuple[int, Any]:
    # SQLite orders NULL < numbers < text. json_extract gives booleans as the integers 0 and 1, and arrays
    # and objects as their JSON text, which then sorts among the strings.
    if value is _MISSING or value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (1, _sql_number(value))
    if isinstance(value, str):
        return (2, value)
    return (2, record_json(value))


# -- list: conditions -------------------------------------------------------------------------------------


def compile_where(cond: Condition) -> Predicate:
    """A test of rows for a condition tree from mcpdo.query, true where SQLite's compiled `where` is."""
    # Recursive over the tree, whose depth query.py has bounded.
    if isinstance(cond, And | Or):
        parts = [compile_where(item) for item in cond.items]
        if isinstance(cond, And):
            return lambda row: all(part(row) for part in parts)
        return lambda row: any(part(row) for part in parts)
    if isinstance(cond, Not):
        inner = compile_where(cond.item)
        return lambda row: not inner(row)
    meta = cond.field.meta
    if meta is not None:
        return _meta_predicate(meta, cond)
    path = cond.field.path
    test = _value_test(cond)
    return lambda row: test(_lookup(row.data, path))


def _lookup(data: object, path: tuple[Segment, ...]) -> object:
    value = data
    for segment in path:
        value = _step(value, segment)
        if value is _MISSING:
            break
    return value


def _step(value: object, segment: Segment) -> object:
    # As a JSON path: a name steps into an object only, an index into an array only.
    if isinstance(segment, int):
        return value[segment] if isinstance(value, list) and segment < len(value) else _MISSING
    return value.get(segment, _MISSING) if isinstance(value, dict) else _MISSING


def _value_test(cond: Eq | Range | Exists | Contains | StartsWith) -> Test:
    if isinstance(cond, Eq):
        return _eq_test(cond)
    if isinstance(cond, Range):
        return _range_test(cond)
    if isinstance(cond, Exists):
        present = cond.present
        return lambda value: (value is not _MISSING and value is not None) == present
    if isinstance(cond, StartsWith):
        prefix = cond.prefix
        return lambda value: isinstance(value, str) and value.startswith(prefix)
    return _contains_test(cond)


def _same(operand: object) -> Test:
    """Equality within one JSON kind: booleans are no numbers, and arrays and objects compare canonically."""
    if operand is None:
        return lambda value: value is None or value is _MISSING
    if isinstance(operand, bool):
        return lambda value: isinstance(value, bool) and value == operand
    if isinstance(operand, list | dict):
        shape = list if isinstance(operand, list) else dict
        text = canonical_text(operand)
        return lambda value: isinstance(value, shape) and canonical_text(value) == text
    if isinstance(operand, str):
        return lambda value: isinstance(value, str) and value == operand
    if isinstance(operand, int | float):
        number = _sql_number(operand)
        return lambda value: _is_number(value) and _sql_number(value) == number
    return lambda value: False  # no JSON value: query.py lets none through


def _eq_test(cond: Eq) -> Test:
    same = _same(cond.value)
    if cond.instant is None or not (isinstance(cond.value, str) or _is_number(cond.value)):
        return same
    instant = _sql_number(cond.instant)
    # A date matches the same instant stored in any form: an ISO string in another zone, epoch ms.
    return lambda value: same(value) or _as_number(value) == instant


def _range_test(cond: Range) -> Test:
    compare, bound = _COMPARE[cond.op], _bound(cond.value)
    if cond.kind == "string":
        return lambda value: isinstance(value, str) and compare(value, bound)

    def test(value: object) -> bool:
        number = _as_number(value)
        return number is not None and compare(number, bound)

    return test


def _contains_test(cond: Contains) -> Test:
    operand = cond.value
    # Array elements are never missing, so a null operand matches null elements only.
    element = _same(operand)

    def in_array(value: object) -> bool:
        return isinstance(value, list) and any(element(item) for item in value)

    if isinstance(operand, str):
        return lambda value: (isinstance(value, str) and operand in value) or in_array(value)
    return in_array


def _meta_predicate(meta: str, cond: Eq | Range | Exists | Contains | StartsWith) -> Predicate:
    # Metadata is always present; id and $type are text, the others numbers (the times epoch ms).
    column = _COLUMNS[meta]
    if isinstance(cond, Eq):
        return _meta_eq(meta, cond)
    if isinstance(cond, Range):
        if (cond.kind == "string") != (meta in _TEXT_META):
            return _never
        compare, bound = _COMPARE[cond.op], _bound(cond.value)
        return lambda row: compare(column(row), bound)
    if isinstance(cond, Exists):
        return _always if cond.present else _never
    if isinstance(cond, StartsWith):
        prefix = cond.prefix
        return lambda row: _meta_text(meta, row).startswith(prefix)
    if isinstance(cond.value, str):
        part = cond.value
        return lambda row: part in _meta_text(meta, row)
    return _never


def _meta_eq(meta: str, cond: Eq) -> Predicate:
    column, value = _COLUMNS[meta], cond.value
    if meta in TIME_FIELDS:
        target: object = cond.instant
    elif meta in _TEXT_META and isinstance(value, str):
        target = value
    elif meta not in _TEXT_META and isinstance(value, int | float):
        target = _sql_number(value)
    else:
        return _never
    return lambda row: bool(column(row) == target)


def _meta_text(meta: str, row: StoredRecord) -> str:
    value = _COLUMNS[meta](row)
    return _iso_text(value) if meta in TIME_FIELDS else str(value)


def _iso_text(ms: int) -> str:
    # As SQLite's strftime writes it: the year always has four digits.
    moment = from_epoch_ms(ms)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _always(row: StoredRecord) -> bool:
    return True


def _never(row: StoredRecord) -> bool:
    return False


# -- values as SQL sees them ----------------------------------------------------------------------------


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sql_number(value: int | float) -> int | float:
    """`value` with an integer beyond 64 bits as a float: json_extract and parameter binding both do that."""
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        return float(value)
    return value


def _bound(value: int | float | str) -> int | float | str:
    return value if isinstance(value, str) else _sql_number(value)


def _as_number(value: object) -> int | float | None:
    # Stored numbers are themselves (epoch ms when they are dates); stored ISO strings become epoch ms.
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _sql_number(value)
    return parse_iso_ms(value) if isinstance(value, str) else None


def record_json(value: object) -> str:
    """The JSON text a record's data is stored as (the text `json_extract` returns for a subtree)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def canonical_text(value: object) -> str:
    """The JSON text two equal values share: keys sorted, whole floats written as integers (`1.0` is `1`)."""
    return json.dumps(_canonical(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _canonical(value: object) -> object:
    # Recursive over stored data or a `where` operand, both bounded in depth by mcpdo.inputs.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    return value
