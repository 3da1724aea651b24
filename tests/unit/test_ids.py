from __future__ import annotations

import re
import time

import pytest
from mcpdo.errors import InputError
from mcpdo.ids import check_id, is_valid_id, new_id, type_prefix, ulid


@pytest.mark.parametrize(
    ("type_name", "prefix"),
    [
        ("Order", "ord"),
        ("Person", "per"),
        ("Product", "prod"),
        ("Organization", "org"),
        ("Customer", "cus"),
        ("Ticket", "tic"),
        ("Business", "bus"),
        ("Article", "art"),
        ("BlogPost", "blog"),
        ("Email", "ema"),
        ("XYZ", "xyz"),
        ("Q", "q"),
        ("123", "rec"),
        ("my_type", "mytype"),
    ],
)
def test_type_prefix_takes_letters_through_the_first_consonant_after_the_first_vowel(
    type_name: str, prefix: str
) -> None:
    assert type_prefix(type_name) == prefix


def test_new_ids_are_prefixed_url_safe_and_unique() -> None:
    made = [new_id("Order") for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"ord_[0-9a-hjkmnp-tv-z]{26}", made_id) for made_id in made)


def test_ulids_sort_in_creation_order_even_within_one_millisecond() -> None:
    made = [ulid() for _ in range(2_000)]
    assert made == sorted(made)
    before = ulid()
    time.sleep(0.002)
    assert ulid() > before


def test_ulid_time_part_is_the_current_millisecond() -> None:
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    now = time.time_ns() // 1_000_000
    value = 0
    for ch in ulid()[:10]:
        value = value * 32 + alphabet.index(ch)
    assert abs(value - now) < 5_000


@pytest.mark.parametrize("good", ["ord_1", "a", "A-b.c~d_e", "x" * 128])
def test_url_safe_ids_up_to_128_characters_are_valid(good: str) -> None:
    assert is_valid_id(good)
    assert check_id(good) == good


@pytest.mark.parametrize("bad", ["", "x" * 129, "a b", "a/b", "é", "a?b", None, 7])
def test_other_ids_are_refused_with_the_value_named(bad: object) -> None:
    assert not is_valid_id(bad)
    with pytest.raises(InputError, match="id must be"):
        check_id(bad)
