from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from mcpdo.errors import InputError
from mcpdo.query import (
    And,
    Contains,
    Eq,
    Exists,
    Field,
    Not,
    Or,
    Range,
    StartsWith,
    parse_field,
    parse_list_options,
    parse_sort,
    parse_where,
)
from mcpdo.timeparse import to_epoch_ms

NOW = datetime(2026, 11, 25, 20, 45, tzinfo=UTC)
NOW_MS = to_epoch_ms(NOW)
DAY = 86_400_000


def where(value: Any) -> Any:
    return parse_where(value, NOW)


def f(*path: str | int) -> Field:
    return Field(tuple(path))


def test_no_options_give_the_defaults() -> None:
    query = parse_list_options(None)
    assert (query.where, query.sort, query.limit, query.offset, query.cursor) == (None, (), 100, 0, None)
    assert parse_list_options({}).limit == 100


def test_plain_values_mean_equality_and_several_fields_mean_and() -> None:
    assert where({"status": "pending"}) == Eq(f("status"), "pending")
    assert where({"status": "pending", "total": 5}) == And((Eq(f("status"), "pending"), Eq(f("total"), 5, instant=5)))
    assert where({"note": None}) == Eq(f("note"), None)
    assert where({"tags": ["a"]}) == Eq(f("tags"), ["a"])
    assert where({}) is None


def test_iso_date_strings_in_equality_carry_their_instant() -> None:
    assert where({"at": "2026-01-01"}) == Eq(f("at"), "2026-01-01", instant=1767225600000)
    assert where({"at": "today"}) == Eq(f("at"), "today")


def test_operators_are_accepted_with_or_without_a_dollar() -> None:
    assert where({"total": {"gt": 100}}) == Range(f("total"), "gt", 100, "number")
    assert where({"total": {"$gt": 100}}) == Range(f("total"), "gt", 100, "number")
    assert where({"status": {"$ne": "x"}}) == Not(Eq(f("status"), "x"))


def test_an_operator_object_with_several_operators_means_and() -> None:
    assert where({"n": {"gte": 1, "lt": 5}}) == And(
        (Range(f("n"), "gte", 1, "number"), Range(f("n"), "lt", 5, "number"))
    )


def test_in_and_nin_become_or_of_equalities() -> None:
    assert where({"s": {"in": ["a", "b"]}}) == Or((Eq(f("s"), "a"), Eq(f("s"), "b")))
    assert where({"s": {"nin": ["a"]}}) == Not(Or((Eq(f("s"), "a"),)))


@pytest.mark.parametrize("operand", ["a", 1, None, {"a": 1}])
def test_in_and_nin_need_arrays(operand: object) -> None:
    with pytest.raises(InputError, match=r"'in' on field 's' needs an array"):
        where({"s": {"in": operand}})


def test_exists_contains_and_starts_with() -> None:
    assert where({"a": {"exists": True}}) == Exists(f("a"), True)
    assert where({"a": {"contains": "x"}}) == Contains(f("a"), "x")
    assert where({"a": {"startsWith": "x"}}) == StartsWith(f("a"), "x")
    with pytest.raises(InputError, match="exists"):
        where({"a": {"exists": "yes"}})
    with pytest.raises(InputError, match="startsWith"):
        where({"a": {"startsWith": 3}})


def test_before_and_after_take_dates_epoch_ms_or_relative_times() -> None:
    stale = Range(f("createdAt"), "lt", NOW_MS - DAY, "instant")
    assert where({"createdAt": {"before": "24 hours ago"}}) == stale
    assert where({"at": {"after": 1767225600000}}) == Range(f("at"), "gt", 1767225600000, "instant")
    assert where({"at": {"$after": "2026-01-01"}}) == Range(f("at"), "gt", 1767225600000, "instant")
    with pytest.raises(InputError, match=r"'before' on field 'at' needs a date.*'someday'"):
        where({"at": {"before": "someday"}})


def test_range_operands_are_classified_as_number_instant_or_string() -> None:
    assert where({"a": {"lt": 5.5}}) == Range(f("a"), "lt", 5.5, "number")
    assert where({"a": {"gte": "2026-01-01T00:00:00Z"}}) == Range(f("a"), "gte", 1767225600000, "instant")
    assert where({"a": {"gte": "7 days ago"}}) == Range(f("a"), "gte", NOW_MS - 7 * DAY, "instant")
    assert where({"a": {"gt": "m"}}) == Range(f("a"), "gt", "m", "string")
    with pytest.raises(InputError, match="'gt' on field 'a'"):
        where({"a": {"gt": True}})


def test_nested_plain_objects_mean_nested_paths() -> None:
    assert where({"customer": {"email": "x"}}) == where({"customer.email": "x"})
    assert where({"customer": {"email": "x"}}) == Eq(f("customer", "email"), "x")
    assert where({"customer": {"tier": {"gt": 1}}}) == Range(f("customer", "tier"), "gt", 1, "number")
    assert where({"items.0.sku": "A"}) == Eq(f("items", 0, "sku"), "A")


def test_dollar_type_inside_nested_objects_is_a_field_not_an_operator() -> None:
    assert where({"customer": {"$type": "Person"}}) == Eq(f("customer", "$type"), "Person")


def test_unknown_operators_are_refused_listing_the_valid_ones() -> None:
    with pytest.raises(InputError, match=r"Unknown operator '\$gtx'.*eq, ne, gt"):
        where({"total": {"$gtx": 1}})
    with pytest.raises(InputError, match=r"did you mean 'startsWith'"):
        where({"name": {"startswith": "a"}})
    with pytest.raises(InputError, match=r"Unknown operator 'befor' on field 'createdAt'.*before"):
        where({"createdAt": {"befor": "1 day ago"}})
    with pytest.raises(InputError, match=r"Unknown operator '\$where'"):
        where({"$where": "1"})


def test_mixing_operators_and_fields_is_refused() -> None:
    with pytest.raises(InputError, match=r"mixes operators with the field 'email'"):
        where({"customer": {"gt": 1, "email": "x"}})


def test_and_or_not_combine_conditions() -> None:
    assert where({"$or": [{"a": 1}, {"b": 2}]}) == Or((Eq(f("a"), 1, 1), Eq(f("b"), 2, 2)))
    assert where({"$and": [{"a": 1}], "$not": {"b": 2}}) == And((And((Eq(f("a"), 1, 1),)), Not(Eq(f("b"), 2, 2))))
    with pytest.raises(InputError, match=r"\$or must be a non-empty array"):
        where({"$or": {"a": 1}})


@pytest.mark.parametrize("name", ["a..b", ".a", "a.", 'a"b', "a\nb"])
def test_malformed_field_paths_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="Field"):
        where({name: 1})


def test_field_paths_may_hold_odd_characters() -> None:
    assert parse_field("a b'; DROP TABLE x; --").path == ("a b'; DROP TABLE x; --",)
    assert parse_field("0").path == ("0",)


def test_metadata_fields_are_recognized_and_checked() -> None:
    assert parse_field("createdAt").meta == "createdAt"
    assert parse_field("customer.id").meta is None
    assert where({"createdAt": 1767225600000}) == Eq(f("createdAt"), 1767225600000, 1767225600000)
    with pytest.raises(InputError, match=r"Field 'createdAt' compares with a date"):
        where({"createdAt": "yesterday-ish"})
    with pytest.raises(InputError, match="'gt' on field 'updatedAt' needs a date"):
        where({"updatedAt": {"gt": "abc"}})
    with pytest.raises(InputError, match="version"):
        where({"version": "2"})


def test_non_finite_numbers_and_non_json_values_are_refused() -> None:
    with pytest.raises(InputError, match="finite"):
        where({"a": float("nan")})
    with pytest.raises(InputError, match="not JSON"):
        where({"a": {"eq": object()}})


def test_sort_keeps_key_order_and_accepts_common_spellings() -> None:
    assert parse_sort({"status": "asc", "createdAt": "DESC"}) == (("status", "asc"), ("createdAt", "desc"))
    assert parse_sort([{"a": 1}, {"b": -1}]) == (("a", "asc"), ("b", "desc"))
    assert parse_sort("-createdAt") == (("createdAt", "desc"),)
    with pytest.raises(InputError, match=r"sort direction for 'a' must be 'asc' or 'desc', got 'up'"):
        parse_sort({"a": "up"})
    with pytest.raises(InputError, match="sort must be an object"):
        parse_sort(5)


@pytest.mark.parametrize("limit", [0, 1001, 5000, -1, "10", True, 1.5])
def test_limit_outside_1_to_1000_is_refused(limit: object) -> None:
    with pytest.raises(InputError, match="limit must be between 1 and 1000, got"):
        parse_list_options({"limit": limit})


def test_limit_message_names_the_value() -> None:
    with pytest.raises(InputError, match=r"^limit must be between 1 and 1000, got 5000$"):
        parse_list_options({"limit": 5000})


def test_limit_offset_and_cursor_are_kept() -> None:
    query = parse_list_options({"limit": 1000, "offset": 20, "cursor": "ord_1", "where": {"a": 1}})
    assert (query.limit, query.offset, query.cursor) == (1000, 20, "ord_1")
    assert parse_list_options({"limit": 10.0}).limit == 10
    with pytest.raises(InputError, match="offset"):
        parse_list_options({"offset": -1})
    with pytest.raises(InputError, match="cursor"):
        parse_list_options({"cursor": 5})


def test_unknown_options_are_refused_listing_the_valid_ones() -> None:
    with pytest.raises(InputError, match=r"Unknown db.list option 'filter'; valid options: where, sort"):
        parse_list_options({"filter": {}})
    with pytest.raises(InputError, match="must be an object"):
        parse_list_options([1])
    with pytest.raises(InputError, match="where must be an object"):
        parse_list_options({"where": "status = 'x'"})


def test_the_tree_is_immutable_and_hashable() -> None:
    tree = where({"a": {"gt": 1}, "b": {"in": [1, 2]}})
    assert hash(tree) == hash(where({"a": {"gt": 1}, "b": {"in": [1, 2]}}))
    with pytest.raises(AttributeError):
        tree.items = ()  # type: ignore[misc,union-attr]
