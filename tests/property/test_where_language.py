"""Properties of the `where` language (mcpdo.query) over both embedded stores, from generated queries:

(a) validating any `where` (and any `db.list` options) either succeeds or raises InputError with a clean
    message, never another exception, for everything a script can send (JSON) and for Python values too;
(b) for valid queries, SqliteEntityStore and MemoryEntityStore give the same records in the same order;
(c) another tenant's records (same type, overlapping values and ids) never change a tenant's answers nor
    appear in them, whatever the query;
(d) no query changes what is stored.

One SQLite file per test function; examples are kept apart by a fresh type name each (or by the stores
being checked unchanged after every example). tests/unit/test_memory_store.py compares the adapters on
valid queries only; here the queries are also hostile and go through the host's `db.list` (DbApi).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from mcpdo.adapters.memory_store import MemoryEntityStore
from mcpdo.adapters.sqlite_store import SqliteEntityStore
from mcpdo.errors import InputError
from mcpdo.identity import Identity
from mcpdo.ports import ListQuery, Record
from mcpdo.query import OPERATORS, parse_list_options, parse_where
from mcpdo.records import RecordStore
from mcpdo.sdk.db import DbApi
from mcpdo.timeparse import format_iso, instant_ms, parse_iso_ms

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = datetime(2026, 1, 2, tzinfo=UTC)
ALL = ListQuery(limit=1000)
TENANT_A, TENANT_B = "a", "b"
ALICE = Identity.for_roles(id="key_a", tenant=TENANT_A, auth_type="apiKey", roles=("member",))
BOB = Identity.for_roles(id="key_b", tenant=TENANT_B, auth_type="apiKey", roles=("member",))
ANONYMOUS = Identity.anonymous("public")

# The operators of SPEC.md section 4 (`db`), each also accepted with a `$`.
SPEC_OPERATORS = (
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
RANGE_OPS = ("gt", "gte", "lt", "lte")

# Local settings (no profile, no example database written into the repository).
PARITY = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
HOSTILE = settings(PARITY, max_examples=250, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fixed_clock() -> int:
    """Every store's now: records' times depend only on their data, whichever store and example."""
    return BASE_MS


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each `weight` times as likely (st.one_of drops repeated strategies)."""
    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(lambda s: s)


# -- values stored and compared ------------------------------------------------------------------------

# Kept out, because mcpdo.evaluate documents that SQLite gets them wrong and the memory store does not copy
# it: NUL in stored strings (SQLite cuts them), '\\' in queried field names, array indexes >= 2**32, and
# createdAt text (startsWith/contains) of pre-1970 instants with milliseconds.
TEXT = st.text(alphabet="aAbz0 -:.T'%_\"\\\n\u00e9\U0001f600", max_size=5)
SQLISH = st.sampled_from(
    ["' OR 1=1 --", "'; DROP TABLE entities; --", '") OR ("1"="1', "%", "_", "$.a", "null", "true", "[1]", "{}", "1"]
)
DATES = st.sampled_from(
    [
        "2026-01-01",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.001Z",
        "2026-01-01T02:00:00+02:00",
        "2025-12-31T23:59:59.999Z",
        "1970-01-01T00:00:00.001Z",
        "0001-01-01",
    ]
)
RELATIVE = st.sampled_from(["24 hours ago", "7 days ago", "in 1 hour", "now", "yesterday", "-2 weeks", "1 year ago"])
NUMBERS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([BASE_MS, BASE_MS + 1, BASE_MS - 86_400_000, 2**53, 2**53 + 1, 2**63 - 1, -(2**63)]),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**20]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, 1e20, float(BASE_MS)]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, SQLISH, DATES)
DATA_KEYS = st.sampled_from(["x", "y", "0", "__proto__", "it's"])
SHAPES = st.sampled_from([[1], [1.0], [True], ["1"], [], {}, {"x": 1}, {"x": 1.0, "y": [2]}, {"y": [2.0], "x": 1}])
VALUES = st.recursive(
    st.one_of(SCALARS, SHAPES),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(DATA_KEYS, inner, max_size=3),
    max_leaves=6,
)
ODD_FIELDS = ["__proto__", "constructor", "it's", "a b", "\u00e9", "[0]", "*", "1", "$id"]
CREATED = st.sampled_from(
    [-62_135_596_800_000, -86_400_000, 0, 1_000, BASE_MS - 86_400_000, BASE_MS + 500, "2025-12-31T12:00:00Z"]
)
RECORD = st.fixed_dictionaries(
    {"b": SCALARS},
    optional={
        "a": VALUES,
        "n": NUMBERS,
        "c": st.dictionaries(DATA_KEYS, VALUES, max_size=3),
        "l": st.lists(VALUES, max_size=3),
        "createdAt": CREATED,
        **{name: VALUES for name in ODD_FIELDS},
    },
)
IDS = st.sampled_from(["a", "B", "b-1", "b_1", "b.1", "z~", "0", "10", "9", "Order", "ord_1", "x"])
RECORDS = st.lists(st.tuples(IDS, RECORD), min_size=1, max_size=8, unique_by=lambda item: item[0])

# -- valid queries ------------------------------------------------------------------------------------------

DATA_FIELDS = ["a", "b", "b", "n", "c", "l", "c.x", "c.0", "l.0", "l.1", "l.0.x", "a.0", "a.x", "c.it's", "missing"]
META = ["id", "$type", "createdAt", "updatedAt", "version"]
FIELDS = st.sampled_from(DATA_FIELDS + ODD_FIELDS + META)
INSTANTS = st.one_of(DATES, RELATIVE, st.sampled_from([BASE_MS, BASE_MS + 1, 0, -86_400_000, 1.5e12]))
# Operands may hold NUL and SQL-looking text: only stored strings are kept free of NUL.
OPERAND_TEXT = st.one_of(TEXT, SQLISH, st.text(alphabet="ab\x00%_'", max_size=3))
PREFIXES = st.one_of(OPERAND_TEXT, st.sampled_from(["2026-01-01T00:00:00.00", "1969", "0001", "1", "b", "Or"]))


Pool = dict[str, tuple[Any, ...]]
"""Values the records hold, by the field name that reaches them (and under "*" all of them)."""


def _at(data: Any, name: str) -> list[Any]:
    value = data
    for index, part in enumerate(name.split(".")):
        if index and isinstance(value, list) and part.isdigit():
            if int(part) >= len(value):
                return []
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return []
    return [value]


def stored_values(records: list[tuple[str, dict[str, Any]]]) -> Pool:
    """The values the records hold, with parts of their strings, by field: operands drawn from them hit
    stored values exactly, where `gt` and `gte`, `in` and `nin`, a prefix and a near miss differ."""
    pool: dict[str, list[Any]] = {"*": [], "id": [], "createdAt": [], "updatedAt": [], "version": [1, 1.0]}
    for id, data in records:
        pool["id"].append(id)
        created = instant_ms(data.get("createdAt", BASE_MS), NOW)
        assert created is not None
        for name, ms in (("createdAt", created), ("updatedAt", max(created, BASE_MS))):
            pool[name] += [ms, format_iso(ms)]
        for name in DATA_FIELDS + ODD_FIELDS:
            for value in _at(data, name):
                found = [value]
                if isinstance(value, str) and len(value) > 1:
                    found += [value[:1], value[1:], value[:-1]]
                pool.setdefault(name, []).extend(found)
                pool["*"].extend(found)
    return {name: tuple(values) for name, values in pool.items()}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _time(value: Any) -> bool:
    return (_number(value) and float(value).is_integer() and abs(value) <= 8.64e15) or (
        isinstance(value, str) and parse_iso_ms(value) is not None
    )


def _fits(name: str, op: str, value: Any) -> bool:
    """Whether `value` is a valid operand of `op` on field `name` (the rules of mcpdo.query)."""
    times, meta = name in ("createdAt", "updatedAt"), name in META
    if op in ("plain", "eq", "ne"):
        if times:
            return _time(value)
        if name == "version":
            return _number(value)
        return not (meta and isinstance(value, dict))
    if op in RANGE_OPS:
        if times:
            return _number(value) or (isinstance(value, str) and instant_ms(value, NOW) is not None)
        return _number(value) if name == "version" else _number(value) or isinstance(value, str)
    if op == "startsWith":
        return isinstance(value, str)
    if op in ("before", "after"):
        return instant_ms(value, NOW) is not None
    return op == "contains"


def pooled(name: str, op: str, base: st.SearchStrategy[Any], pool: Pool) -> st.SearchStrategy[Any]:
    """`base`, or (twice as likely) a value stored at `name`, or one stored anywhere."""
    own = [value for value in pool.get(name, ()) if _fits(name, op, value)]
    anywhere = [value for value in pool.get("*", ()) if _fits(name, op, value)]
    return weighted(
        (1, base),
        (2 if own else 0, st.sampled_from(own or [None])),
        (1 if anywhere else 0, st.sampled_from(anywhere or [None])),
    )


def equal_operands(name: str, pool: Pool | None = None) -> st.SearchStrategy[Any]:
    if name in ("createdAt", "updatedAt"):
        base = st.one_of(DATES, st.sampled_from([BASE_MS, BASE_MS + 500, 0, 1_000, float(BASE_MS)]))
    elif name == "version":
        base = st.one_of(st.integers(0, 3), st.sampled_from([1.0, 2.5, 2**64]))
    elif name in ("id", "$type"):
        base = st.one_of(IDS, SCALARS, st.sampled_from(["Order0", "' OR 1=1 --"]))
    else:
        # A plain object without operators is a nested path (`{ c: { x: 1 } }`), valid on data fields.
        base = st.one_of(VALUES, OPERAND_TEXT)
    return pooled(name, "eq", base, pool or {})


def operands(name: str, op: str, pool: Pool | None = None) -> st.SearchStrategy[Any]:
    if op == "exists":
        return st.booleans()
    if op in ("in", "nin"):
        return st.lists(equal_operands(name, pool), max_size=4)
    if op in ("plain", "eq", "ne"):
        return equal_operands(name, pool)
    if op == "startsWith":
        base = PREFIXES
    elif op == "contains":
        base = st.one_of(PREFIXES, VALUES)
    elif op in ("before", "after"):
        base = INSTANTS
    elif name == "version":
        base = NUMBERS
    elif name in ("createdAt", "updatedAt"):
        base = st.one_of(INSTANTS, NUMBERS)
    else:
        base = st.one_of(NUMBERS, OPERAND_TEXT, INSTANTS, IDS)
    return pooled(name, op, base, pool or {})


@st.composite
def leaves(draw: st.DrawFn, pool: Pool | None = None, fields: st.SearchStrategy[str] | None = None) -> dict[str, Any]:
    # Mostly fields the records have, when they are known.
    present = sorted(name for name in (pool or {}) if name != "*")
    if fields is None:
        fields = weighted((1, FIELDS), (2, st.sampled_from(present))) if present else FIELDS
    name = draw(fields)
    ops = draw(st.lists(st.sampled_from(("plain", *SPEC_OPERATORS)), min_size=1, max_size=2, unique=True))
    if "plain" in ops:
        return {name: draw(operands(name, "plain", pool))}
    body = {(op if draw(st.booleans()) else "$" + op): draw(operands(name, op, pool)) for op in ops}
    return {name: body}


@st.composite
def nested_leaves(draw: st.DrawFn, pool: Pool | None = None) -> dict[str, Any]:
    """The nested-object form of a path: `{ c: { x: { gt: 1 } } }` is `{ 'c.x': { gt: 1 } }`."""
    outer, inner = draw(st.sampled_from([("c", "x"), ("c", "0"), ("a", "x"), ("l", "0"), ("c", "it's")]))
    (value,) = draw(leaves(pool, st.sampled_from(["a", "b", "n"]))).values()
    return {outer: {inner: value}}


def merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out.update(part)
    return out


def valid_wheres(pool: Pool | None = None) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        st.one_of(leaves(pool), leaves(pool), nested_leaves(pool)),
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"$and": parts}),
            st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"$or": parts}),
            inner.map(lambda part: {"$not": part}),
            st.lists(inner, min_size=2, max_size=3).map(merged),
        ),
        max_leaves=8,
    )


VALID_WHERES = valid_wheres()
DIRECTIONS = st.sampled_from(["asc", "desc", "ASC", "Desc", 1, -1])
SORTS = st.one_of(
    st.lists(st.tuples(FIELDS, DIRECTIONS), max_size=3).map(lambda keys: [{name: way} for name, way in keys]),
    FIELDS.map(lambda name: "-" + name) | FIELDS,
)

# -- hostile queries (all JSON: what a script can hand to db.list) ---------------------------------------

KEY_SOUP = st.sampled_from(
    [
        *(f"${op}" for op in SPEC_OPERATORS),
        *SPEC_OPERATORS,
        *(op.upper() for op in SPEC_OPERATORS),
        "$GT",
        "$regex",
        "$where",
        "$expr",
        "$nor",
        "$elemMatch",
        "$size",
        "$starts_with",
        "startswith",
        "$and",
        "$or",
        "$not",
        "$type",
        "$id",
        "$context",
        "$inc",
        "$unset",
        "__proto__",
        "constructor",
        "prototype",
        "toString",
        "hasOwnProperty",
        "a.b",
        "a..b",
        ".a",
        "a.",
        ".",
        "$",
        "$$",
        "$.a",
        "$['a']",
        "a[0]",
        "l.0",
        "l.-1",
        "l.4294967296",
        "l.99999999999999999999",
        "' OR 1=1 --",
        '") OR 1=1 --',
        'a"b',
        "a\\b",
        "a'b",
        "%",
        "_",
        "*",
        "",
        " ",
        "a\x00b",
        "\x00",
        "a\nb",
        "\x7f",
        "\x85",
        "\ud800",
        "a\udfffb",
        "\U0001f600",
        "\u00e9",
        *META,
        "n",
        "b",
        "c",
        "l",
        "x" * 300,
        "a." * 40 + "a",
    ]
)
STRING_SOUP = st.one_of(
    SQLISH,
    DATES,
    RELATIVE,
    st.sampled_from(
        [
            "",
            "\x00",
            "a\x00b",
            "\ud800",
            "x\udfffy",
            "9" * 400 + " days ago",
            "1" * 300 + " years ago",
            "2026-13-45",
            "2026-02-30T25:61:00Z",
            "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661",
            "x" * 100_000,
            "*/ SELECT * FROM entities /*",
            "json_extract(data, '$')",
        ]
    ),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=8),
)
# Only numbers a JSON text from the runner can hold: finite, and integers below 1e21 (JavaScript writes
# larger ones with an exponent, which Python reads as a float).
JSON_NUMBERS = st.one_of(
    NUMBERS,
    st.integers(-(10**21) + 1, 10**21 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 8.64e15, 8.64e15 + 1]),
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), JSON_NUMBERS, STRING_SOUP)
KEYS = st.one_of(KEY_SOUP, st.text(max_size=4))


def hostile(scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=24,
    )


Plan = list[tuple[str, int]]


def wrapped(inner: Any, plan: Plan) -> Any:
    """`inner` nested `count` times in each wrapper of `plan`, in order. Iterative, so hundreds of levels
    cost no recursion here; and examples carry the plan, whose repr stays flat, not the nested value."""
    for wrapper, count in plan:
        for _ in range(count):
            if wrapper in ("$and", "$or"):
                inner = {wrapper: [inner, {"n": 1}]}
            elif wrapper == "$not":
                inner = {"$not": inner}
            elif wrapper == "in":
                inner = {"n": {"in": [inner]}}
            else:
                inner = {wrapper: inner}
    return inner


WRAPPERS = st.one_of(st.sampled_from(["$and", "$or", "$not", "in", "c", "n", "$gt", "eq"]), KEY_SOUP)
PLANS = st.lists(st.tuples(WRAPPERS, st.integers(1, 20) | st.integers(1, 3000)), max_size=4)
WIDE = st.one_of(
    st.integers(0, 2100).map(lambda n: {"$or": [{"n": i} for i in range(n)]}),
    st.integers(0, 1100).map(lambda n: {"n": {"in": list(range(n))}}),
    st.integers(0, 2100).map(lambda n: {f"f{i}": i for i in range(n)}),
    st.integers(0, 40).map(lambda n: {".".join(["c"] * n): 1}),
)
HOSTILE_WHERES = st.one_of(VALID_WHERES, hostile(JSON_SCALARS, KEYS), WIDE)
HOSTILE_OPTIONS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "where": HOSTILE_WHERES,
            "sort": st.one_of(SORTS, hostile(JSON_SCALARS, KEYS)),
            "limit": JSON_SCALARS,
            "offset": JSON_SCALARS,
            "cursor": st.one_of(IDS, JSON_SCALARS),
        },
    ),
    st.dictionaries(KEYS, hostile(JSON_SCALARS, KEYS), max_size=3),
    hostile(JSON_SCALARS, KEYS),
)
KINDS = st.one_of(
    st.sampled_from(["Order", "Order", "Secret", "order", "Order.created", "' OR 1=1 --", "__proto__", "$Order"]),
    JSON_SCALARS,
)
# -- Python values no JSON text carries: the query API takes Python objects, and must refuse them cleanly ----


def cyclic_dict() -> dict[str, Any]:
    where: dict[str, Any] = {"n": 1}
    where["$and"] = [where]
    return where


def cyclic_list() -> dict[str, Any]:
    items: list[Any] = [{"n": 1}]
    items.append({"$or": items})
    return {"$or": items}


PYTHON_SCALARS = st.one_of(
    JSON_SCALARS,
    st.sampled_from([10**21, 10**400, -(10**400), 2**1024, float("nan"), float("inf"), -float("inf")]),
    st.integers(min_value=10**21) | st.integers(max_value=-(10**21)),
    st.sampled_from(
        [
            b"bytes",
            bytearray(b"x"),
            (1, 2),
            frozenset({1}),
            {1, 2},
            datetime(2026, 1, 1),
            datetime(2026, 1, 1, tzinfo=UTC),
            Decimal("1e999"),
            Decimal("NaN"),
            1j,
            object(),
            Ellipsis,
            MappingProxyType({"n": 1}),
            range(3),
        ]
    ),
    st.builds(cyclic_dict) | st.builds(cyclic_list),
)
PYTHON_KEYS = st.one_of(KEYS, st.sampled_from([1, 1.5, None, True, (1, 2), b"n", frozenset()]))
PYTHON_WHERES = st.one_of(hostile(PYTHON_SCALARS, PYTHON_KEYS), PYTHON_SCALARS)

# -- helpers ------------------------------------------------------------------------------------------------


def assert_clean(error: InputError) -> None:
    """An error a script's author can read: text, intact (no NUL, valid Unicode), no Python internals."""
    text = str(error)
    assert isinstance(text, str) and text.strip()
    assert "\x00" not in text
    text.encode("utf-8")  # strict: a lone surrogate would raise here
    assert "Traceback" not in text and "object at 0x" not in text


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", value) or ("InputError", message); any other exception propagates and fails the test."""
    try:
        return ("ok", call())
    except InputError as error:
        assert_clean(error)
        return ("InputError", str(error))


async def async_outcome(call: Any) -> tuple[str, Any]:
    try:
        return ("ok", await call)
    except InputError as error:
        assert_clean(error)
        return ("InputError", str(error))


async def seed(store: RecordStore, tenant: str, kind: str, records: list[tuple[str, dict[str, Any]]]) -> None:
    for id, data in records:
        await store.create(tenant, kind, {**data, "id": id})


def count_rows(path: Path) -> dict[str, int]:
    """Rows per tenant as the file holds them, read on a connection of its own."""
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT tenant, COUNT(*) FROM entities GROUP BY tenant").fetchall())


def ids(records: list[Record]) -> list[str]:
    return [record["id"] for record in records]


def documented_divergence(args: Any) -> bool:
    """The call names a field (in its `where` or its `sort`) that mcpdo.evaluate documents SQLite getting
    wrong: a backslash in a name, or an array index of 2**32 or more."""
    stack = [args]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(key for key in value if isinstance(key, str))
            stack.extend(value.values())
        elif isinstance(value, str):
            parts = value.lstrip("-").split(".")
            # Inside a nested object even a first segment can index an array, so every segment counts.
            if "\\" in value or any(p.isascii() and p.isdigit() and int(p) >= 2**32 for p in parts):
                return True
    return False


# -- (a) validation -----------------------------------------------------------------------------------------


def test_the_operators_are_exactly_the_specs() -> None:
    assert set(OPERATORS) == set(SPEC_OPERATORS)
    for op in SPEC_OPERATORS:
        for key in (op, "$" + op):
            operand = {"exists": True, "in": [1], "nin": [1], "startsWith": "a"}.get(op, 1)
            assert parse_where({"n": {key: operand}}, NOW) is not None
    with pytest.raises(InputError, match="Unknown operator"):
        parse_where({"n": {"$regex": "a"}}, NOW)


@HOSTILE
@given(where=HOSTILE_WHERES, plan=PLANS)
@example(where={"n": {"exists": 10**20}}, plan=[])
@example(where={"l.99999999999999999999": 1}, plan=[])
@example(where={"n": 1}, plan=[("$not", 5000)])
@example(where={"n": 1}, plan=[("$or", 15), ("$not", 1), ("$and", 15)])
def test_any_json_where_validates_or_raises_input_error(where: Any, plan: Plan) -> None:
    outcome(lambda: parse_where(wrapped(where, plan), NOW))


@HOSTILE
@given(options=HOSTILE_OPTIONS)
@example(options={"limit": 1e21, "offset": -1})
@example(options={"cursor": "x" * 100_000})
@example(options={"sort": [{"a": "asc"}] * 40})
def test_any_json_list_options_validate_or_raise_input_error(options: Any) -> None:
    outcome(lambda: parse_list_options(options, NOW))


@settings(PARITY, max_examples=50)
@given(records=RECORDS, data=st.data(), sort=SORTS)
def test_generated_valid_queries_are_accepted(records: Any, data: st.DataObject, sort: Any) -> None:
    # The strategy for (b) and (c) must be what it claims: every generated query is valid.
    where = data.draw(valid_wheres(stored_values(records)), label="where")
    query = parse_list_options({"where": where, "sort": sort, "limit": 1000}, NOW)
    assert query.limit == 1000


# -- (b), (c), (d): valid queries on both stores, two tenants --------------------------------------------------


def test_valid_queries_agree_across_stores_and_never_see_another_tenant(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("where-parity") / "entities.db"
    sqlite_store = SqliteEntityStore(path, clock=fixed_clock)
    kinds = (f"Order{n}" for n in itertools.count())

    async def scenario(records_a: Any, own_b: Any, wheres: list[Any], sort: Any) -> None:
        kind = next(kinds)  # examples share the file, never a type
        # Tenant b: the same values under other ids, and records of its own whose ids may be a's.
        records_b = [(f"{id}~b", data) for id, data in records_a] + [
            (id, data) for id, data in own_b if id not in {f"{i}~b" for i, _ in records_a}
        ]
        memory, only_a = MemoryEntityStore(clock=fixed_clock), MemoryEntityStore(clock=fixed_clock)
        for store in (sqlite_store, memory):
            await seed(store, TENANT_A, kind, records_a)
            await seed(store, TENANT_B, kind, records_b)
        await seed(only_a, TENANT_A, kind, records_a)
        stored = {tenant: await sqlite_store.list(tenant, kind, ALL) for tenant in (TENANT_A, TENANT_B)}
        assert stored[TENANT_A] == await memory.list(TENANT_A, kind, ALL) == await only_a.list(TENANT_A, kind, ALL)
        assert stored[TENANT_B] == await memory.list(TENANT_B, kind, ALL)
        rows = count_rows(path)

        for where in wheres:
            query = parse_list_options({"where": where, "sort": sort, "limit": 1000}, NOW)
            in_sqlite = await sqlite_store.list(TENANT_A, kind, query)
            in_memory = await memory.list(TENANT_A, kind, query)
            alone = await only_a.list(TENANT_A, kind, query)
            assert ids(in_sqlite) == ids(in_memory), where  # (b) same records, same order
            assert in_sqlite == in_memory
            assert in_sqlite == alone, where  # (c) b's records change nothing of a's answer
            assert all(record in stored[TENANT_A] for record in in_sqlite)
            for_b = await sqlite_store.list(TENANT_B, kind, query)
            assert for_b == await memory.list(TENANT_B, kind, query)
            assert all(record in stored[TENANT_B] for record in for_b)

        # (d) querying changed nothing, in either tenant or store.
        assert count_rows(path) == rows
        for tenant in (TENANT_A, TENANT_B):
            assert await sqlite_store.list(tenant, kind, ALL) == stored[tenant]
            assert await memory.list(tenant, kind, ALL) == stored[tenant]

    @PARITY
    @given(records_a=RECORDS, own_b=RECORDS, data=st.data(), sort=SORTS)
    def check(records_a: Any, own_b: Any, data: st.DataObject, sort: Any) -> None:
        pool = stored_values(records_a + own_b)
        wheres = data.draw(st.lists(valid_wheres(pool), min_size=1, max_size=4), label="wheres")
        run(scenario(records_a, own_b, wheres, sort))

    try:
        check()
    finally:
        run(sqlite_store.close())


# -- (a), (c), (d) for hostile queries through the host's db.list --------------------------------------------

SEEDED_A: list[tuple[str, dict[str, Any]]] = [
    ("ord_1", {"n": 1, "b": "abc", "c": {"x": "y", "0": 1}, "l": [1, "two", {"x": 3}], "at": "2026-01-01T00:00:00Z"}),
    ("ord_2", {"n": 2, "b": "' OR 1=1 --", "l": [], "at": BASE_MS - 1, "__proto__": {"n": 9}}),
    ("ord_3", {"n": None, "b": "%_", "c": {"x": None}, "createdAt": 0}),
    ("shared", {"n": 2**63, "b": "\U0001f600", "it's": True}),
]
# Tenant b: the same type, the same values, one id shared with a, and records only b has.
SEEDED_B: list[tuple[str, dict[str, Any]]] = [
    *((f"b_{id}", data) for id, data in SEEDED_A),
    ("shared", {"n": 1, "b": "abc", "secret": "b-only"}),
    ("ord_9", {"n": 3, "b": "secret of b", "l": [1, 2, 3]}),
]


SEEDED_POOL = stored_values(SEEDED_A + SEEDED_B)
# Mostly `db.list('Order', { where })`, half of them valid queries that hit the seeded values.
DB_LIST_ARGS = weighted(
    (1, st.tuples(KINDS, HOSTILE_OPTIONS).map(list)),
    (
        2,
        st.tuples(
            st.just("Order"),
            st.fixed_dictionaries({"where": valid_wheres(SEEDED_POOL) | HOSTILE_WHERES}, optional={"sort": SORTS}),
        ).map(list),
    ),
    (1, st.lists(st.one_of(KINDS, HOSTILE_OPTIONS), max_size=3)),
)
SOMETIMES_DEEP = weighted((2, st.just([])), (1, PLANS))


class Seeded:
    """Both stores holding SEEDED_A in tenant a and SEEDED_B in tenant b, for types Order and Secret."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sqlite = SqliteEntityStore(path, clock=fixed_clock)
        self.memory = MemoryEntityStore(clock=fixed_clock)
        self.stores: tuple[RecordStore, RecordStore] = (self.sqlite, self.memory)
        for store in self.stores:
            for kind in ("Order", "Secret"):
                run(seed(store, TENANT_A, kind, SEEDED_A))
                run(seed(store, TENANT_B, kind, SEEDED_B))
        self.contents = self.snapshot(self.sqlite)
        assert self.snapshot(self.memory) == self.contents
        self.rows = count_rows(path)

    def snapshot(self, store: RecordStore) -> dict[tuple[str, str], list[Record]]:
        async def read() -> dict[tuple[str, str], list[Record]]:
            return {
                (tenant, kind): await store.list(tenant, kind, ALL)
                for tenant in (TENANT_A, TENANT_B, "public")
                for kind in ("Order", "Secret")
            }

        return dict(run(read()))

    def assert_unchanged(self) -> None:
        assert count_rows(self.path) == self.rows
        for store in self.stores:
            assert self.snapshot(store) == self.contents

    def visible(self, tenant: str, args: list[Any]) -> set[str]:
        """What `tenant` may ever be shown for these db.list args: its own records of the type asked."""
        kind = args[0] if args and isinstance(args[0], str) else ""
        return {repr(record) for record in self.contents.get((tenant, kind), [])}


@pytest.fixture
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    stores = Seeded(tmp_path_factory.mktemp("where-hostile") / "entities.db")
    yield stores
    for store in stores.stores:
        run(store.close())


def db_list(store: RecordStore, identity: Identity, args: list[Any]) -> tuple[str, Any]:
    return run(async_outcome(DbApi(store, identity).list(list(args))))


def check_hostile_call(seeded: Seeded, args: list[Any]) -> None:
    for identity in (ALICE, BOB, ANONYMOUS):
        answers = [db_list(store, identity, args) for store in seeded.stores]
        if identity is ALICE:
            event("accepted" if answers[0][0] == "ok" else "refused")
            if answers[0][0] == "ok":
                event("some records" if answers[0][1] else "no records")
        for status, value in answers:
            if status == "ok":
                # (c) only the caller's own records, whatever the query.
                assert isinstance(value, list)
                allowed = seeded.visible(identity.tenant, args)
                assert all(repr(record) in allowed for record in value), (identity.tenant, value)
        if not documented_divergence(args):
            assert answers[0] == answers[1], args  # (a) and (b): the same refusal or the same records
    seeded.assert_unchanged()  # (d)


def test_hostile_db_list_calls_fail_cleanly_and_stay_in_the_callers_tenant(seeded: Seeded) -> None:
    @HOSTILE
    @given(args=DB_LIST_ARGS, plan=SOMETIMES_DEEP)
    @example(args=["Order", {"where": {"b": "' OR 1=1 --"}}], plan=[])
    @example(args=["Order", {"where": {"$or": [{"n": {"exists": True}}, {"n": {"exists": False}}]}}], plan=[])
    @example(args=["Order", {"where": {"id": "shared"}}], plan=[])
    @example(args=["Order", {"where": {"__proto__": {"n": 9}}}], plan=[])
    @example(args=["Order", {"where": {"tenant": "b"}}], plan=[])
    @example(args=["Order", {"cursor": "b_ord_1"}], plan=[])
    @example(args=["Order", {"where": {"n": 1}}], plan=[("$or", 15), ("$not", 1), ("$and", 15)])
    def check(args: list[Any], plan: Plan) -> None:
        if plan:  # the same call with its where (or a plain one) nested deep
            options = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
            args = ["Order", {**options, "where": wrapped(options.get("where", {"n": 1}), plan)}]
        check_hostile_call(seeded, args)

    check()


# -- Python-only values --------------------------------------------------------------------------------------


def test_python_values_no_json_carries_are_refused_with_input_error(seeded: Seeded) -> None:
    @HOSTILE
    @given(where=PYTHON_WHERES, plan=PLANS)
    # Minimal failing examples: an int beyond the float range (which no JSON from the runner holds, as
    # JavaScript numbers are doubles) raises OverflowError instead of InputError: in query._eq
    # (`float(value).is_integer()`), in inputs.show (`float(value)` for a message), and, for a range operand
    # the parse accepts, in sqlite_store._bindable at query time.
    @example(where={"n": 10**400}, plan=[])
    @example(where={"n": {"gt": 10**400}}, plan=[])
    @example(where=cyclic_dict(), plan=[])
    def check(where: Any, plan: Plan) -> None:
        where = wrapped(where, plan)
        outcome(lambda: parse_where(where, NOW))
        for store in seeded.stores:
            run(async_outcome(DbApi(store, ALICE).list(["Order", {"where": where}])))
        seeded.assert_unchanged()

    check()
