"""Event types and on() patterns: validation and matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcpdo.errors import InputError
from mcpdo.patterns import candidates, check_event_type, matches, to_eventbridge, validate_pattern


@pytest.mark.parametrize(
    "pattern",
    [
        "Order.created",
        "Order.*",
        "*.created",
        "*",
        "Order",
        "Invoice.payment.failed",
        "Shop.Order.*",
        "*.payment.failed",
        "user_profile.updated-v2",
    ],
)
def test_supported_patterns_are_returned_unchanged(pattern: str) -> None:
    assert validate_pattern(pattern) == pattern


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "empty"),
        ("Order .created", "whitespace"),
        (" Order.created", "whitespace"),
        ("Order.created\n", "whitespace"),
        ("Order..created", "empty segment"),
        (".created", "empty segment"),
        ("Order.", "empty segment"),
        ("*.*", "only one '*'"),
        ("Order.*.created", "first or the last"),
        ("Ord*.created", "whole segment"),
        ("Order.cre*", "whole segment"),
        ("**", "whole segment"),
        ("Order.created!", "letters, digits"),
        ("x" * 300, "longer than"),
    ],
)
def test_bad_patterns_are_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_pattern(pattern)
    assert reason in caught.value.message
    assert "Invalid event pattern" in caught.value.message


def test_a_pattern_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InputError, match="must be a string"):
        validate_pattern(42)


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("Order.created", "Order.created", True),
        ("Order.created", "Order.updated", False),
        ("Order.created", "order.created", False),
        ("Order.created", "Order.created.v2", False),
        ("Order.*", "Order.created", True),
        ("Order.*", "Order.item.added", True),
        ("Order.*", "Order", False),
        ("Order.*", "OrderLine.created", False),
        ("*.created", "Order.created", True),
        ("*.created", "Shop.Order.created", True),
        ("*.created", "Order.recreated", False),
        ("*.created", "created", False),
        ("*", "Order.created", True),
        ("*", "Anything", True),
    ],
)
def test_matching(pattern: str, event_type: str, expected: bool) -> None:
    assert matches(pattern, event_type) is expected


def test_event_types_are_checked_and_may_not_contain_wildcards() -> None:
    assert check_event_type("Order.created") == "Order.created"
    for bad in ("", "Order.*", "Order created", "Order..created", None):
        with pytest.raises(InputError):
            check_event_type(bad)


def test_patterns_map_to_eventbridge_prefix_and_suffix_matches() -> None:
    assert to_eventbridge("Order.created") == {"detail-type": ["Order.created"]}
    assert to_eventbridge("Order.*") == {"detail-type": [{"prefix": "Order."}]}
    assert to_eventbridge("*.created") == {"detail-type": [{"suffix": ".created"}]}
    assert to_eventbridge("*") == {"detail-type": [{"prefix": ""}]}


_segment = st.text(alphabet="abAB01_-", min_size=1, max_size=3)
_type = st.lists(_segment, min_size=2, max_size=4).map(".".join)
_pattern = st.one_of(
    _type,
    st.lists(_segment, min_size=1, max_size=3).map(lambda parts: ".".join(parts) + ".*"),
    st.lists(_segment, min_size=1, max_size=3).map(lambda parts: "*." + ".".join(parts)),
    st.just("*"),
)


@given(pattern=_pattern, event_type=_type)
def test_a_pattern_matches_an_event_type_exactly_when_it_is_among_its_candidates(pattern: str, event_type: str) -> None:
    # Indexed lookups (SQLite, DynamoDB) find subscriptions by candidate; it must agree with `matches`.
    validate_pattern(pattern)
    assert matches(pattern, event_type) == (pattern in candidates(event_type))


def test_the_candidates_of_a_three_segment_type_are_its_prefixes_suffixes_and_the_wildcard() -> None:
    assert sorted(candidates("Order.item.added")) == sorted(
        ["Order.item.added", "Order.*", "Order.item.*", "*.item.added", "*.added", "*"]
    )


def test_event_types_fit_an_eventbridge_detail_type_on_every_deployment() -> None:
    longest = "Order." + "x" * 122
    assert check_event_type(longest) == longest  # 128 characters: EventBridge's DetailType limit
    with pytest.raises(InputError, match="128"):
        check_event_type(longest + "x")
