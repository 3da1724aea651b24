"""Every bad `db` input gets an InputError naming what was wrong: numbers, nesting, size and text.

These call the host's own checks directly (the runner refuses some of these values earlier; the host must
hold on its own).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcpdo.adapters.sqlite_store import SqliteEntityStore
from mcpdo.errors import InputError
from mcpdo.identity import Identity
from mcpdo.ids import check_id
from mcpdo.inputs import (
    MAX_OFFSET,
    MAX_SAFE_INTEGER,
    MAX_VALUE_DEPTH,
    MAX_WHERE_DEPTH,
    MAX_WHERE_ITEMS,
    quote,
    show,
)
from mcpdo.ports import Ref
from mcpdo.query import parse_list_options, parse_sort, parse_where
from mcpdo.sdk.args import type_name
from mcpdo.sdk.db import DbApi

T = "acme"
DEPTH_ERROR = r"^where is nested too deeply \(more than 32 levels of objects and arrays\)$"


@pytest.fixture
async def store(anyio_backend: str) -> AsyncIterator[SqliteEntityStore]:
    entity_store = SqliteEntityStore()
    try:
        yield entity_store
    finally:
        await entity_store.close()


@pytest.fixture
def db(store: SqliteEntityStore) -> DbApi:
    return DbApi(store, Identity.for_roles(id="key_1", tenant=T, auth_type="apiKey", roles=("admin",)))


def message_of(error: pytest.ExceptionInfo[InputError]) -> str:
    """The message, after checking it is safe to show: encodable, and no raw control character."""
    text = error.value.message
    text.encode("utf-8")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), repr(text)
    assert "Traceback" not in text and "RecursionError" not in text
    return text


def nested(levels: int, leaf: Any, wrap: Any) -> Any:
    value = leaf
    for _ in range(levels):
        value = wrap(value)
    return value


def json_depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


# -- numbers -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_offset_of_1e20_is_refused_naming_the_option_its_value_and_the_range(store: SqliteEntityStore) -> None:
    for offset in (10**20, 1e20):
        with pytest.raises(InputError) as error:
            parse_list_options({"offset": offset})
        assert message_of(error) == "offset must be between 0 and 1000000000, got 100000000000000000000"
    await store.create(T, "Order", {"n": 1})
    assert await store.list(T, "Order", parse_list_options({"offset": MAX_OFFSET})) == []
    assert parse_list_options({"offset": 20.0}).offset == 20


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (True, "true"),
        ("5", "'5'"),
        (1.5, "1.5"),
        ([1], "an array"),
        ({"n": 1}, "an object"),
        (-1, "-1"),
        (1e300, "1e+300"),
    ],
)
def test_offset_and_limit_refuse_every_non_integer_or_out_of_range_value_showing_it(value: Any, shown: str) -> None:
    with pytest.raises(InputError) as error:
        parse_list_options({"offset": value})
    assert message_of(error) == f"offset must be between 0 and 1000000000, got {shown}"
    if shown != "-1":
        with pytest.raises(InputError, match=rf"^limit must be between 1 and 1000, got {re.escape(shown)}$"):
            parse_list_options({"limit": value})


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("version", "shown"),
    [
        (10**20, "100000000000000000000"),
        (0, "0"),
        (1.5, "1.5"),
        ("1", "'1'"),
        (True, "true"),
        (float("nan"), "NaN"),
        (MAX_SAFE_INTEGER + 1, "9007199254740992"),
    ],
)
async def test_if_version_must_be_a_whole_number_from_1_to_the_safe_integer_limit(
    db: DbApi, version: Any, shown: str
) -> None:
    record = await db.create(["Order", {"n": 1}])
    with pytest.raises(InputError) as error:
        await db.update(["Order", record["id"], {"n": 2}, {"ifVersion": version}])
    assert message_of(error) == f"ifVersion must be between 1 and 9007199254740991, got {shown}"
    assert (await db.update(["Order", record["id"], {"n": 2}, {"ifVersion": 1.0}]))["version"] == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (1e308, "1e+308"),
        (2**70, "1.1805916207174113e+21"),
        (-(2**53), "-9007199254740992"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (True, "true"),
        ("1", "'1'"),
        (None, "null"),
    ],
)
async def test_inc_amounts_must_be_finite_numbers_within_the_safe_integer_range(
    store: SqliteEntityStore, amount: Any, shown: str
) -> None:
    record = await store.create(T, "Product", {"stock": 1e308})
    with pytest.raises(InputError) as error:
        await store.update(T, "Product", record["id"], {"stock": {"$inc": amount}})
    if shown in ("NaN", "Infinity"):  # not JSON at all: the check of every record value names it first
        assert message_of(error) == f"db.update(): field 'stock.$inc' must be a finite number, got {shown}"
    else:
        assert message_of(error) == (
            f"$inc on field 'stock' needs a finite number between -9007199254740991 and 9007199254740991, got {shown}"
        )
    after = await store.update(T, "Product", record["id"], {"stock": {"$inc": MAX_SAFE_INTEGER}})
    assert after["stock"] == 1e308 and after["version"] == 2


@pytest.mark.anyio
async def test_a_created_at_outside_the_years_1_to_9999_is_refused_naming_the_range(store: SqliteEntityStore) -> None:
    with pytest.raises(InputError) as error:
        await store.create(T, "Order", {"createdAt": 8e15})
    assert "createdAt must be a date of the years 0001 to 9999" in message_of(error)
    assert "got 8000000000000000" in message_of(error)
    assert (await store.create(T, "Order", {"createdAt": "9999-12-31T23:59:59.999Z"}))["createdAt"] == (
        "9999-12-31T23:59:59.999Z"
    )


def test_a_relative_time_too_large_to_be_an_instant_is_refused_not_overflowed() -> None:
    with pytest.raises(InputError) as error:
        parse_where({"at": {"after": "9" * 400 + " days ago"}})
    assert message_of(error).startswith("'after' on field 'at' needs a date, an epoch-ms number or a relative")


def test_values_show_as_the_script_wrote_them_and_containers_are_never_expanded() -> None:
    assert show(1e20) == "100000000000000000000"
    assert show(1e21) == "1e+21"
    assert show(float("nan")) == "NaN"
    assert show(nested(5000, [], lambda inner: [inner])) == "an array"
    assert quote("a\x00b") == "'a\\x00b'"
    assert quote("\ud800") == "'\\ud800'"
    assert quote("x" * 500).endswith("...'") and len(quote("x" * 500)) == 80


# -- where: depth and size ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["$or", "$and", "$not", "field objects", "eq value arrays", "in arrays"])
def test_a_2000_deep_where_is_refused_naming_the_depth_limit_before_any_recursion(shape: str) -> None:
    wraps = {
        "$or": lambda inner: {"$or": [inner]},
        "$and": lambda inner: {"$and": [inner, {"b": 1}]},
        "$not": lambda inner: {"$not": inner},
        "field objects": lambda inner: {"a": inner},
        "eq value arrays": lambda inner: [inner],
        "in arrays": lambda inner: [inner],
    }
    leaf: Any = {"a": 1} if shape in ("$or", "$and", "$not", "field objects") else 1
    deep = nested(2000, leaf, wraps[shape])
    where = {"tags": deep} if shape == "eq value arrays" else {"tags": {"in": deep}} if shape == "in arrays" else deep
    with pytest.raises(InputError) as error:
        parse_where(where)
    assert re.match(DEPTH_ERROR, message_of(error))


def test_a_where_of_exactly_the_depth_limit_is_accepted_and_one_more_level_is_not() -> None:
    at_limit = nested(MAX_WHERE_DEPTH - 1, {"a": 1}, lambda inner: {"$not": inner})
    assert json_depth(at_limit) == MAX_WHERE_DEPTH
    assert parse_where(at_limit) is not None
    with pytest.raises(InputError, match=DEPTH_ERROR):
        parse_where({"$not": at_limit})


def test_a_where_with_more_keys_and_array_items_than_the_limit_is_refused_naming_the_limit() -> None:
    wide = {"$or": [{"n": index} for index in range(MAX_WHERE_ITEMS)]}
    with pytest.raises(InputError) as error:
        parse_where(wide)
    assert message_of(error) == "where is too large (more than 2000 keys and array items in all)"
    assert parse_where({"$or": [{"n": index} for index in range(MAX_WHERE_ITEMS // 2 - 1)]}) is not None


def test_a_sort_of_more_than_32_fields_is_refused() -> None:
    with pytest.raises(InputError, match=r"^sort takes at most 32 fields, got 33$"):
        parse_sort({f"f{index}": "asc" for index in range(33)})


def alternating(levels: int, width: int, leaf: dict[str, Any]) -> dict[str, Any]:
    """`{$not: {k..., $not: {k..., ...}}}`: AND and OR alternate at every level once negations are pushed
    to the leaves, the deepest nesting SQL gets from a `where` of this depth."""
    where: dict[str, Any] = dict(leaf)
    for level in range(levels):
        where = {"$not": {**{f"k{level}_{index}": {"ne": "2026-01-01"} for index in range(width)}, **where}}
    return where


def both_sides_deep(levels: int) -> dict[str, Any]:
    """Both operands of every level nested (Fibonacci sizes)."""
    if levels <= 0:
        return {"x": {"contains": "y"}}
    inner = both_sides_deep(levels - 1)
    return (
        {"$not": {**inner, "$or": [both_sides_deep(levels - 2), {"z": 1}]}}
        if "$not" in inner
        else {"$not": {**inner, "q": 1}}
    )


@pytest.mark.anyio
async def test_every_where_within_the_limits_compiles_and_runs_in_sqlite(store: SqliteEntityStore) -> None:
    await store.create(T, "Order", {"leaf": "x", "x": "y", "n": 3})
    wheres: list[dict[str, Any]] = [
        {"n": {"in": list(range(1000))}},
        {"$or": [{"n": index} for index in range(MAX_WHERE_ITEMS // 2 - 1)]},
        {"$and": [{"n": {"nin": [index, index + 1]}} for index in range(300)]},
        both_sides_deep(12),
    ]
    for width in (1, 2, 15, 30):
        leaf = {"leaf": {"contains": "x"}}
        levels = min(MAX_WHERE_DEPTH - 2, (MAX_WHERE_ITEMS - 2) // (2 * width + 1))
        wheres.append(alternating(levels, width, leaf))
    for where in wheres:
        assert json_depth(where) <= MAX_WHERE_DEPTH
        await store.list(T, "Order", parse_list_options({"where": where}))
    assert len(await store.list(T, "Order", parse_list_options({"where": {"n": {"in": list(range(1000))}}}))) == 1

    # To nest shallowly, the compiler pushes negations to the leaves (NOT (a AND b) = NOT a OR NOT b) and
    # flattens: the records selected stay the same.
    for a in (1, 2, None):
        for b in (1, 2):
            await store.create(T, "Row", {"a": a, "b": b, "key": f"{a}-{b}"})

    async def keys(where: Any) -> set[str]:
        return {row["key"] for row in await store.list(T, "Row", parse_list_options({"where": where}))}

    assert await keys({"$not": {"a": 1, "b": 1}}) == {"2-1", "2-2", "None-1", "None-2", "1-2"}
    assert await keys({"$not": {"$or": [{"a": 1}, {"b": 1}]}}) == {"2-2", "None-2"}
    assert await keys({"$not": {"$not": {"a": 1}}}) == {"1-1", "1-2"}
    assert await keys({"$not": {"a": {"gt": 1}}}) == {"1-1", "1-2", "None-1", "None-2"}
    assert await keys({"$or": [{"$and": [{"a": 1}, {"b": 2}]}, {"$not": {"a": {"exists": True}}}]}) == {
        "1-2",
        "None-1",
        "None-2",
    }


# -- names and text ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda db: db.create(["Order", {"a\x00b": 1}]),
            "db.create(): field name 'a\\x00b' contains a control character (\\x00); names cannot contain control "
            "characters",
        ),
        (lambda db: db.create(["Order", {"customer": {"e\x07mail": 1}}]), "db.create(): field name 'e\\x07mail'"),
        (lambda db: db.get(["Order", "ord_\x00x"]), "db.get(): id 'ord_\\x00x' contains a control character"),
        (lambda db: db.delete(["Order", "a\x1bb"]), "db.delete(): id 'a\\x1bb' contains a control character"),
        (lambda db: db.update(["Order", "a\x00b", {"n": 1}]), "db.update(): id 'a\\x00b'"),
        (lambda db: db.list(["Order", {"where": {"a\x00b": 1}}]), "Field 'a\\x00b' contains a control character"),
        (lambda db: db.list(["Order", {"where": {"a": {"$e\x00q": 1}}}]), "Field '$e\\x00q' contains a control"),
        (lambda db: db.list(["Order", {"sort": {"a\x00b": "asc"}}]), "Field 'a\\x00b' contains a control character"),
        (lambda db: db.list(["Order", {"sort": "-a\x00b"}]), "Field 'a\\x00b' contains a control character"),
        (
            lambda db: db.list(["Order", {"cursor": "ord_\x00"}]),
            "cursor must be the id of the last record of the previous page, got 'ord_\\x00'",
        ),
        (lambda db: db.list(["Order", {"x\x00y": 1}]), "Unknown db.list option 'x\\x00y'"),
        (
            lambda db: db.relate([{"type": "Order", "id": "a"}, "r\x00el", {"type": "Order", "id": "b"}]),
            "db.relate(): the relation 'r\\x00el' contains a control character",
        ),
        (
            lambda db: db.related([{"type": "Order", "id": "a"}, "r\x85"]),
            "db.related(): the relation 'r\\x85' contains a control character",
        ),
        (lambda db: db.related([{"type": "Order", "id": "a\x00"}]), "db.related(): from id 'a\\x00' contains a"),
    ],
)
async def test_a_nul_or_control_character_in_any_name_is_refused_showing_the_name_escaped(
    db: DbApi, call: Any, expected: str
) -> None:
    with pytest.raises(InputError) as error:
        await call(db)
    assert message_of(error).startswith(expected)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda db: db.create(["Order", {"name": "\ud800"}]),
            "db.create(): field 'name' contains a lone surrogate (\\ud800), strings must be valid Unicode",
        ),
        (
            lambda db: db.create(["Order", {"customer": {"tags": ["ok", "x\udfffy"]}}]),
            "db.create(): field 'customer.tags.1' contains a lone surrogate (\\udfff)",
        ),
        (
            lambda db: db.create(["Order", {"n\ud800": 1}]),
            "db.create(): field name 'n\\ud800' contains a lone surrogate (\\ud800)",
        ),
        (
            lambda db: db.update(["Order", "ord_1", {"name": "\ud800"}]),
            "db.update(): field 'name' contains a lone surrogate (\\ud800)",
        ),
        (lambda db: db.get(["Order", "\ud800"]), "db.get(): id '\\ud800' contains a lone surrogate (\\ud800)"),
        (
            lambda db: db.list(["Order", {"where": {"name": "\ud800"}}]),
            "where.name contains a lone surrogate (\\ud800), strings must be valid Unicode",
        ),
        (
            lambda db: db.list(["Order", {"where": {"name": {"startsWith": "\udc00"}}}]),
            "where.name.startsWith contains a lone surrogate (\\udc00)",
        ),
        (
            lambda db: db.list(["Order", {"where": {"$or": [{"a": {"in": ["\ud800"]}}]}}]),
            "where.$or.0.a.in.0 contains a lone surrogate",
        ),
        (lambda db: db.list(["Order", {"where": {"\ud800": 1}}]), "Field '\\ud800' contains a lone surrogate"),
        (lambda db: db.list(["Order", {"sort": {"\ud800": "asc"}}]), "Field '\\ud800' contains a lone surrogate"),
        (lambda db: db.list(["Order", {"cursor": "\ud800"}]), "cursor must be the id of the last record"),
        (
            lambda db: db.relate([{"type": "Order", "id": "a"}, "\ud800", {"type": "Order", "id": "b"}]),
            "db.relate(): the relation '\\ud800' contains a lone surrogate",
        ),
    ],
)
async def test_a_lone_surrogate_anywhere_is_refused_with_a_clear_encodable_message(
    db: DbApi, call: Any, expected: str
) -> None:
    with pytest.raises(InputError) as error:
        await call(db)
    assert message_of(error).startswith(expected)


def test_a_type_name_with_a_trailing_newline_a_nul_or_a_lone_surrogate_is_refused_escaped() -> None:
    for name, shown in (("Order\n", "'Order\\n'"), ("Or\x00der", "'Or\\x00der'"), ("Order\ud800", "'Order\\ud800'")):
        with pytest.raises(InputError) as error:
            type_name("db.create", name)
        assert message_of(error) == f"db.create(): type must be a name like 'Order', got {shown}"


@pytest.mark.anyio
async def test_the_store_refuses_a_trailing_newline_in_a_type_name_or_a_created_id(store: SqliteEntityStore) -> None:
    with pytest.raises(InputError, match=r"Type names start with a letter.*got 'Order\\n'"):
        await store.get(T, "Order\n", "ord_1")
    with pytest.raises(InputError, match=r"got 'ord_1\\n'"):
        check_id("ord_1\n")
    with pytest.raises(InputError, match=r"id must be .*got 'ord_1\\n'"):
        await store.create(T, "Order", {"id": "ord_1\n"})
    with pytest.raises(InputError, match=r"The relation name 'r\\x00' contains a control character"):
        await store.relate(T, Ref("Order", "a"), "r\x00", Ref("Order", "b"))


# -- record data -------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("levels", [MAX_VALUE_DEPTH, 100, 5000])
async def test_deeper_record_data_is_refused_naming_the_limit_never_a_recursion_error(db: DbApi, levels: int) -> None:
    existing = await db.create(["Order", {"n": 1}])
    for wrap in (lambda inner: {"d": inner}, lambda inner: [inner]):
        data = {"top": nested(levels, 1, wrap)}
        assert json_depth(data) == levels + 1
        for call in (db.create(["Order", data]), db.update(["Order", existing["id"], data])):
            with pytest.raises(InputError) as error:
                await call
            text = message_of(error)
            assert re.match(
                r"^db\.(create|update)\(\): field 'top[.d0]*' is nested too deeply "
                r"\(more than 64 levels of objects and arrays\)$",
                text,
            ), text
    assert await db.get(["Order", existing["id"]]) == existing
    at_limit = nested(MAX_VALUE_DEPTH - 1, {"leaf": 1}, lambda inner: {"d": inner})
    assert json_depth(at_limit) == MAX_VALUE_DEPTH
    record = await db.create(["Order", at_limit])
    assert await db.get(["Order", record["id"]]) == record and record["d"] == at_limit["d"]


@pytest.mark.anyio
async def test_a_non_finite_number_in_record_data_names_the_field(db: DbApi) -> None:
    with pytest.raises(InputError) as error:
        await db.create(["Order", {"a": {"b": [1, float("nan")]}}])
    assert message_of(error) == "db.create(): field 'a.b.1' must be a finite number, got NaN"
    with pytest.raises(InputError, match=r"^db.create\(\): field 'a' is not JSON: a set$"):
        await db.create(["Order", {"a": {1, 2}}])
