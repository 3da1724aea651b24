from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from mcpdo.timeparse import (
    format_iso,
    from_epoch_ms,
    instant_ms,
    is_iso_string,
    parse_instant,
    parse_iso_ms,
    parse_relative_ms,
    stored_instant_ms,
    to_epoch_ms,
)

NOW = datetime(2026, 11, 25, 20, 45, 0, 123000, tzinfo=UTC)
NOW_MS = to_epoch_ms(NOW)
HOUR = 3_600_000
DAY = 24 * HOUR


def test_format_iso_matches_javascript_to_iso_string() -> None:
    assert format_iso(datetime(2026, 11, 25, 20, 45, tzinfo=UTC)) == "2026-11-25T20:45:00.000Z"
    assert format_iso(1767225600000) == "2026-01-01T00:00:00.000Z"
    assert format_iso(NOW) == "2026-11-25T20:45:00.123Z"
    paris = timezone(timedelta(hours=1))
    assert format_iso(datetime(2026, 1, 1, 1, 0, tzinfo=paris)) == "2026-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T20:45:00.000Z", "2026-11-25T20:45:00.000Z"),
        ("2026-11-25T20:45:00Z", "2026-11-25T20:45:00.000Z"),
        ("2026-11-25T20:45Z", "2026-11-25T20:45:00.000Z"),
        ("2026-11-25T20:45:00", "2026-11-25T20:45:00.000Z"),
        ("2026-11-25 20:45:00", "2026-11-25T20:45:00.000Z"),
        ("2026-11-25", "2026-11-25T00:00:00.000Z"),
        ("2026-11-25T22:45:00+02:00", "2026-11-25T20:45:00.000Z"),
        ("2026-11-25T15:45:00-0500", "2026-11-25T20:45:00.000Z"),
        ("2026-11-25T20:45:00.123456789Z", "2026-11-25T20:45:00.123Z"),
    ],
)
def test_iso_strings_with_or_without_zone_parse_as_utc_instants(text: str, expected: str) -> None:
    ms = parse_iso_ms(text)
    assert ms is not None and format_iso(ms) == expected


@pytest.mark.parametrize("text", ["pending", "2026-13-01", "2026-02-30", "20261125", "2026-11-25T25:00", "", "5"])
def test_strings_that_are_not_iso_dates_are_not_instants(text: str) -> None:
    assert parse_iso_ms(text) is None
    assert not is_iso_string(text)


@pytest.mark.parametrize(
    ("phrase", "offset"),
    [
        ("now", 0),
        ("24 hours ago", -DAY),
        ("7 days ago", -7 * DAY),
        ("30 minutes ago", -30 * 60_000),
        ("in 2 hours", 2 * HOUR),
        ("an hour ago", -HOUR),
        ("1 week ago", -7 * DAY),
        ("90 seconds ago", -90_000),
        ("  24   Hours  AGO ", -DAY),
        ("-2h", -2 * HOUR),
        ("+15m", 15 * 60_000),
    ],
)
def test_relative_phrases_resolve_against_now(phrase: str, offset: int) -> None:
    assert parse_relative_ms(phrase, NOW) == NOW_MS + offset


def test_today_and_yesterday_are_utc_midnights() -> None:
    assert format_iso(parse_relative_ms("today", NOW) or 0) == "2026-11-25T00:00:00.000Z"
    assert format_iso(parse_relative_ms("yesterday", NOW) or 0) == "2026-11-24T00:00:00.000Z"
    assert format_iso(parse_relative_ms("tomorrow", NOW) or 0) == "2026-11-26T00:00:00.000Z"


def test_months_and_years_move_on_the_calendar() -> None:
    assert format_iso(parse_relative_ms("1 month ago", NOW) or 0) == "2026-10-25T20:45:00.123Z"
    assert format_iso(parse_relative_ms("2 years ago", NOW) or 0) == "2024-11-25T20:45:00.123Z"
    end_of_march = datetime(2026, 3, 31, tzinfo=UTC)
    assert format_iso(parse_relative_ms("1 month ago", end_of_march) or 0) == "2026-02-28T00:00:00.000Z"


@pytest.mark.parametrize("phrase", ["soon", "24 parsecs ago", "hours ago", "in a while", "ago"])
def test_unknown_relative_phrases_are_not_instants(phrase: str) -> None:
    assert parse_relative_ms(phrase, NOW) is None


def test_instant_ms_accepts_every_form() -> None:
    assert instant_ms(1767225600000) == 1767225600000
    assert instant_ms(1767225600000.7) == 1767225600000
    assert instant_ms("2026-01-01T00:00:00Z") == 1767225600000
    assert instant_ms("24 hours ago", NOW) == NOW_MS - DAY
    assert instant_ms(NOW) == NOW_MS
    assert instant_ms(datetime(2026, 1, 1)) == 1767225600000


@pytest.mark.parametrize("value", [True, None, float("nan"), float("inf"), [], {}, "nope", 1e300])
def test_instant_ms_refuses_what_is_not_an_instant(value: object) -> None:
    assert instant_ms(value, NOW) is None


def test_parse_instant_returns_an_aware_utc_datetime() -> None:
    moment = parse_instant("2026-11-25T22:45:00+02:00")
    assert moment == datetime(2026, 11, 25, 20, 45, tzinfo=UTC)
    assert moment is not None and moment.utcoffset() == timedelta(0)
    assert parse_instant("garbage") is None


def test_stored_values_never_read_relative_phrases() -> None:
    assert stored_instant_ms("now") is None
    assert stored_instant_ms("2026-01-01") == 1767225600000
    assert stored_instant_ms(5) == 5
    assert stored_instant_ms(False) is None


def test_epoch_round_trip_keeps_milliseconds_and_handles_dates_before_1970() -> None:
    assert to_epoch_ms(from_epoch_ms(NOW_MS)) == NOW_MS
    assert format_iso(-1) == "1969-12-31T23:59:59.999Z"
    assert parse_iso_ms("1969-12-31T23:59:59.999Z") == -1
