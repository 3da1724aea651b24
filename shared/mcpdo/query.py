"""`db.list` options from a script, validated into a backend-neutral condition tree and a `ListQuery`.

The tree is what every EntityStore adapter compiles (to SQL, to DynamoDB expressions, ...). Decisions
that do not depend on the backend are made here, once:

- a plain value means equality (`null` matches a missing field too; arrays and objects compare as JSON);
  a plain object without operators means nested paths (`{customer: {email}}` = `'customer.email'`);
- operators `eq ne gt gte lt lte in nin exists contains startsWith before after`, also with a `$`;
- range operands are classified: numbers compare numerically against stored numbers and as epoch ms
  against stored ISO date strings; ISO or relative date strings (and any operand of `before`/`after`)
  compare as instants; other strings compare as strings. Relative times are resolved against `now` here,
  so adapters never see them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

from mcpdo.errors import InputError
from mcpdo.inputs import (
    DEFAULT_LIMIT,
    MAX_IN_VALUES,
    MAX_LIMIT,
    MAX_NUMBER,
    MAX_OFFSET,
    MAX_PATH_DEPTH,
    MAX_SORT_FIELDS,
    check_where,
    integer_option,
    quote,
    show,
    text_problem,
)
from mcpdo.ports import ListQuery
from mcpdo.timeparse import instant_ms, parse_iso_ms, utc_now

Segment: TypeAlias = str | int
RangeOp: TypeAlias = Literal["gt", "gte", "lt", "lte"]
RangeKind: TypeAlias = Literal["number", "instant", "string"]
SortDirection: TypeAlias = Literal["asc", "desc"]

# Fields that live beside the data rather than in it; adapters map them to their own columns/attributes.
META_FIELDS = ("id", "$type", "createdAt", "updatedAt", "version")
TIME_FIELDS = ("createdAt", "updatedAt")
OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "nin",
    "exists",
    "contains",
    "startsWith",
    "before",
    "after",
)
LIST_OPTIONS = ("where", "sort", "limit", "offset", "cursor")
# `$type`, `$id` and `$context` are ordinary keys of `$` objects and MDXLD data, not operators.
_DATA_DOLLAR_KEYS = frozenset({"$type", "$id", "$context"})
_LOGICAL = ("$and", "$or", "$not")
_OPERATOR_LOOKALIKES = {op.lower(): op for op in OPERATORS} | {"starts_with": "startsWith"}


@dataclass(frozen=True)
class Field:
    """A field path: `('customer', 'email')` for `'customer.email'`; ints index arrays."""

    path: tuple[Segment, ...]

    @property
    def name(self) -> str:
        """The dotted form, as the script wrote it."""
        return ".".join(str(segment) for segment in self.path)

    @property
    def meta(self) -> str | None:
        """The metadata field this names (`id`, `$type`, `createdAt`, `updatedAt`, `version`), if any."""
        if len(self.path) == 1 and self.path[0] in META_FIELDS:
            return str(self.path[0])
        return None


@dataclass(frozen=True)
class Eq:
    """Equality. `value` None matches missing or null; bool, number, string, array, object by kind.

    `instant` is set (epoch ms) when `value` is an ISO date string or a number: the field then also
    matches any stored value denoting the same instant (ISO string or epoch ms).
    """

    field: Field
    value: Any
    instant: int | None = None


@dataclass(frozen=True)
class Range:
    """`gt`/`gte`/`lt`/`lte`. `number`: numeric against stored numbers, as epoch ms against stored ISO
    strings; `instant`: `value` is epoch ms, compared with the stored value as an instant (same
    comparison as `number`); `string`: compares with stored strings only."""

    field: Field
    op: RangeOp
    value: int | float | str
    kind: RangeKind


@dataclass(frozen=True)
class Exists:
    """The field is present and not null (`present=True`), or missing or null (`present=False`)."""

    field: Field
    present: bool


@dataclass(frozen=True)
class Contains:
    """A string operand: substring of a stored string or element of a stored array; otherwise an
    element of a stored array (compared like `Eq`)."""

    field: Field
    value: Any


@dataclass(frozen=True)
class StartsWith:
    """The stored string starts with `prefix` (case-sensitive)."""

    field: Field
    prefix: str


@dataclass(frozen=True)
class And:
    """All of `items` hold; empty is true."""

    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    """At least one of `items` holds; empty is false."""

    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """`item` does not hold (a field it tests may be missing)."""

    item: Condition


Condition: TypeAlias = Eq | Range | Exists | Contains | StartsWith | And | Or | Not


def parse_list_options(options: object, now: datetime | None = None) -> ListQuery:
    """Validate `db.list`'s second argument (`{ where, sort, limit, offset, cursor }`) into a ListQuery."""
    if options is None:
        return ListQuery()
    if not isinstance(options, Mapping):
        raise InputError(f"db.list options must be an object, got {show(options)}")
    unknown = [key for key in options if key not in LIST_OPTIONS]
    if unknown:
        raise InputError(f"Unknown db.list option {show(unknown[0])}; valid options: {', '.join(LIST_OPTIONS)}")
    cursor = options.get("cursor")
    if cursor is not None and (
        not isinstance(cursor, str) or not cursor or text_problem(cursor, name=True) is not None
    ):
        raise InputError(f"cursor must be the id of the last record of the previous page, got {show(cursor)}")
    return ListQuery(
        where=parse_where(options.get("where"), now),
        sort=parse_sort(options.get("sort")),
        limit=integer_option("limit", options.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=integer_option("offset", options.get("offset"), 0, 0, MAX_OFFSET),
        cursor=cursor,
    )


def parse_where(where: object, now: datetime | None = None) -> Condition | None:
    """The condition tree for a `where` object; None when it constrains nothing.

    Its size, depth and text are checked first (iteratively), so the recursive parse below is bounded.
    """
    if where is None:
        return None
    check_where(where)
    moment = now if now is not None else utc_now()
    condition = _parse_object(where, (), moment, "where")
    return None if condition == And(()) else condition


def parse_sort(sort: object) -> tuple[tuple[str, SortDirection], ...]:
    """`{field: 'asc'|'desc', ...}` (or a list of such objects, or `'field'`/`'-field'`) in key order."""
    if sort is None:
        return ()
    if isinstance(sort, str):
        descending = sort.startswith("-")
        name = sort[1:] if descending else sort
        return ((parse_field(name).name, "desc" if descending else "asc"),)
    items: list[tuple[object, object]] = []
    if isinstance(sort, Mapping):
        items = list(sort.items())
    elif isinstance(sort, list) and all(isinstance(part, Mapping) for part in sort):
        items = [item for part in sort for item in part.items()]
    else:
        raise InputError(f"sort must be an object like {{ createdAt: 'desc' }}, got {show(sort)}")
    if len(items) > MAX_SORT_FIELDS:
        raise InputError(f"sort takes at most {MAX_SORT_FIELDS} fields, got {len(items)}")
    keys: list[tuple[str, SortDirection]] = []
    for key, direction in items:
        if not isinstance(key, str):
            raise InputError(f"sort field names must be strings, got {show(key)}")
        keys.append((parse_field(key).name, _direction(key, direction)))
    return tuple(keys)


def parse_field(name: object) -> Field:
    """A validated field path from its dotted name (`'customer.email'`, `'items.0.sku'`)."""
    if not isinstance(name, str) or not name:
        raise InputError(f"Field names must be non-empty strings, got {show(name)}")
    return Field(_split_path(name, ()))


def _split_path(name: str, prefix: tuple[Segment, ...]) -> tuple[Segment, ...]:
    problem = text_problem(name, name=True)
    if problem is not None:
        raise InputError(f"Field {quote(_dotted(prefix, name))} contains {problem}")
    if '"' in name:
        raise InputError(
            f"Field {quote(_dotted(prefix, name))} contains a double quote, which field names in queries cannot contain"
        )
    if name.count(".") + 1 + len(prefix) > MAX_PATH_DEPTH:
        raise InputError(f"Field {quote(_dotted(prefix, name))} is nested deeper than {MAX_PATH_DEPTH} levels")
    parts = name.split(".")
    if any(part == "" for part in parts):
        raise InputError(f"Field {quote(_dotted(prefix, name))} has an empty path segment")
    path: list[Segment] = list(prefix)
    for part in parts:
        # A numeric segment after the first indexes an array (`items.0.sku`).
        path.append(int(part) if path and part.isascii() and part.isdigit() else part)
    return tuple(path)


def _dotted(prefix: tuple[Segment, ...], name: str) -> str:
    return ".".join([*(str(p) for p in prefix), name])


def _parse_object(where: object, prefix: tuple[Segment, ...], now: datetime, what: str) -> Condition:
    if not isinstance(where, Mapping):
        raise InputError(f"{what} must be an object, got {show(where)}")
    items: list[Condition] = []
    for key, value in where.items():
        if not isinstance(key, str):
            raise InputError(f"{what} keys must be strings, got {show(key)}")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise InputError(f"{key} must be a non-empty array of conditions, got {show(value)}")
            parts = tuple(_parse_object(part, prefix, now, key) for part in value)
            items.append(And(parts) if key == "$and" else Or(parts))
        elif key == "$not":
            items.append(Not(_parse_object(value, prefix, now, key)))
        elif key.startswith("$") and key not in _DATA_DOLLAR_KEYS:
            raise InputError(
                f"Unknown operator {show(key)} in {what}; use a field name, $and, $or, $not, or one of: "
                f"{', '.join(OPERATORS)} inside a field's object"
            )
        else:
            items.append(_parse_field_value(Field(_split_path(key, prefix)), value, now))
    return items[0] if len(items) == 1 else And(tuple(items))


def _operator_name(key: str) -> str | None:
    bare = key[1:] if key.startswith("$") else key
    return bare if bare in OPERATORS else None


def _parse_field_value(field: Field, value: object, now: datetime) -> Condition:
    if not isinstance(value, Mapping) or not value:
        return _eq(field, value)
    keys = [str(key) for key in value]
    operators = [key for key in keys if _operator_name(key) is not None]
    if not operators:
        for key in keys:
            near = _OPERATOR_LOOKALIKES.get(key.lstrip("$").lower())
            if near is not None or (key.startswith("$") and key not in _DATA_DOLLAR_KEYS):
                hint = f" (did you mean '{near}'?)" if near else ""
                raise InputError(
                    f"Unknown operator {show(key)} on field '{field.name}'{hint}; valid operators: "
                    f"{', '.join(OPERATORS)}"
                )
        if field.meta is not None:
            raise InputError(
                f"Unknown operator {show(keys[0])} on field '{field.name}'; valid operators: {', '.join(OPERATORS)}"
            )
        return _parse_object(value, field.path, now, f"where.{field.name}")
    if len(operators) != len(keys):
        other = next(key for key in keys if key not in operators)
        raise InputError(
            f"Field '{field.name}' mixes operators with the field {show(other)}; use "
            f"{show(field.name + '.' + other)} for a nested field, or one of: {', '.join(OPERATORS)}"
        )
    parts = [_operator(field, str(_operator_name(key)), operand, now) for key, operand in value.items()]
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _operator(field: Field, op: str, operand: object, now: datetime) -> Condition:
    if op == "eq":
        return _eq(field, operand)
    if op == "ne":
        return Not(_eq(field, operand))
    if op in ("in", "nin"):
        if not isinstance(operand, list):
            raise InputError(f"'{op}' on field '{field.name}' needs an array, got {show(operand)}")
        if len(operand) > MAX_IN_VALUES:
            raise InputError(f"'{op}' on field '{field.name}' takes at most {MAX_IN_VALUES} values")
        alternatives = Or(tuple(_eq(field, item) for item in operand))
        return alternatives if op == "in" else Not(alternatives)
    if op == "exists":
        if not isinstance(operand, bool):
            raise InputError(f"'exists' on field '{field.name}' needs true or false, got {show(operand)}")
        return Exists(field, operand)
    if op == "contains":
        _check_json(field, operand)
        return Contains(field, operand)
    if op == "startsWith":
        if not isinstance(operand, str):
            raise InputError(f"'startsWith' on field '{field.name}' needs a string, got {show(operand)}")
        return StartsWith(field, operand)
    if op in ("before", "after"):
        ms = instant_ms(operand, now)
        if ms is None:
            raise InputError(
                f"'{op}' on field '{field.name}' needs a date, an epoch-ms number or a relative time "
                f"like '24 hours ago', got {show(operand)}"
            )
        return Range(field, "lt" if op == "before" else "gt", ms, "instant")
    return _range(field, _RANGE_OPS[op], operand, now)


_RANGE_OPS: dict[str, RangeOp] = {"gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte"}


def _range(field: Field, op: RangeOp, operand: object, now: datetime) -> Range:
    if isinstance(operand, int | float) and not isinstance(operand, bool):
        _check_number(field, operand)
        return Range(field, op, operand, "number")
    if isinstance(operand, str) and field.meta == "version":
        raise InputError(f"'{op}' on field 'version' needs a number, got {show(operand)}")
    if isinstance(operand, str):
        ms = instant_ms(operand, now)
        if ms is not None:
            return Range(field, op, ms, "instant")
        if field.meta in TIME_FIELDS:
            raise InputError(f"'{op}' on field '{field.name}' needs a date or a number, got {show(operand)}")
        return Range(field, op, operand, "string")
    raise InputError(f"'{op}' on field '{field.name}' needs a number, a date or a string, got {show(operand)}")


def _eq(field: Field, value: object) -> Eq:
    _check_json(field, value)
    instant: int | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        instant = int(value) if float(value).is_integer() else None
    elif isinstance(value, str):
        instant = parse_iso_ms(value)
    if field.meta in TIME_FIELDS and instant is None:
        raise InputError(f"Field '{field.name}' compares with a date or an epoch-ms number, got {show(value)}")
    if field.meta == "version" and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InputError(f"Field 'version' compares with a number, got {show(value)}")
    return Eq(field, value, instant)


def _check_json(field: Field, value: object) -> None:
    # Recursive, but only over values `check_where` has bounded to MAX_WHERE_DEPTH levels.
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int | float):
        _check_number(field, value)
    elif isinstance(value, list):
        for item in value:
            _check_json(field, item)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"Object keys in the value for field '{field.name}' must be strings")
            _check_json(field, item)
    else:
        raise InputError(f"The value for field '{field.name}' is not JSON: {show(value)}")


def _check_number(field: Field, value: int | float) -> None:
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_NUMBER:
        raise InputError(f"The value for field '{field.name}' must be a finite number, got {show(value)}")


def _direction(name: str, direction: object) -> SortDirection:
    if isinstance(direction, str) and direction.lower() in ("asc", "desc"):
        return "asc" if direction.lower() == "asc" else "desc"
    if direction in (1, -1) and not isinstance(direction, bool):
        return "asc" if direction == 1 else "desc"
    raise InputError(f"sort direction for '{name}' must be 'asc' or 'desc', got {show(direction)}")
