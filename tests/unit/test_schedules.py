from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from mcpdo.errors import InputError, McpdoError
from mcpdo.schedules import InvalidSchedule, Schedule, parse_schedule

PARIS = ZoneInfo("Europe/Paris")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "kind", "cron_text", "expression", "zone"),
    [
        ("0 9 * * *", "cron", "0 9 * * *", "cron(0 9 * * ? *)", "UTC"),
        ("0 8 * * MON", "cron", "0 8 * * MON", "cron(0 8 ? * MON *)", "UTC"),
        ("0 */6 * * *", "cron", "0 */6 * * *", "cron(0 0/6 * * ? *)", "UTC"),
        ("0 * * * *", "cron", "0 * * * *", "cron(0 * * * ? *)", "UTC"),
        ("*/15 9-17 * * MON-FRI", "cron", "*/15 9-17 * * MON-FRI", "cron(0/15 9-17 ? * MON-FRI *)", "UTC"),
        ("0 9 * * 1-5", "cron", "0 9 * * 1-5", "cron(0 9 ? * MON-FRI *)", "UTC"),
        ("0 0 * * 0", "cron", "0 0 * * 0", "cron(0 0 ? * SUN *)", "UTC"),
        ("0 0 * * 7", "cron", "0 0 * * 7", "cron(0 0 ? * SUN *)", "UTC"),
        ("0 0 * * 6,0", "cron", "0 0 * * 6,0", "cron(0 0 ? * SUN,SAT *)", "UTC"),
        ("0 0 * * sat,sun", "cron", "0 0 * * SAT,SUN", "cron(0 0 ? * SUN,SAT *)", "UTC"),
        ("0 0 * * 5-6", "cron", "0 0 * * 5-6", "cron(0 0 ? * FRI-SAT *)", "UTC"),
        ("0 0 1 * *", "cron", "0 0 1 * *", "cron(0 0 1 * ? *)", "UTC"),
        ("0 0 1,15 * *", "cron", "0 0 1,15 * *", "cron(0 0 1,15 * ? *)", "UTC"),
        ("0 0 */2 * *", "cron", "0 0 */2 * *", "cron(0 0 1/2 * ? *)", "UTC"),
        ("0-30/10 * * * *", "cron", "0-30/10 * * * *", "cron(0,10,20,30 * * * ? *)", "UTC"),
        ("0 12 * jan,JUL *", "cron", "0 12 * JAN,JUL *", "cron(0 12 * 1,7 ? *)", "UTC"),
        ("0 12 1 6-8 *", "cron", "0 12 1 6-8 *", "cron(0 12 1 6-8 ? *)", "UTC"),
        ("0 9 ? * MON", "cron", "0 9 * * MON", "cron(0 9 ? * MON *)", "UTC"),
        ("0 9 * * 0-7", "cron", "0 9 * * *", "cron(0 9 * * ? *)", "UTC"),
        ("  0   9 * *   *  ", "cron", "0 9 * * *", "cron(0 9 * * ? *)", "UTC"),
        ("TZ=Europe/Paris 0 9 * * *", "cron", "0 9 * * *", "cron(0 9 * * ? *)", "Europe/Paris"),
        ("CRON_TZ=America/New_York 30 8 * * MON", "cron", "30 8 * * MON", "cron(30 8 ? * MON *)", "America/New_York"),
        ("hourly", "cron", "0 * * * *", "cron(0 * * * ? *)", "UTC"),
        ("daily", "cron", "0 0 * * *", "cron(0 0 * * ? *)", "UTC"),
        ("weekly", "cron", "0 0 * * 0", "cron(0 0 ? * SUN *)", "UTC"),
        ("@daily", "cron", "0 0 * * *", "cron(0 0 * * ? *)", "UTC"),
        ("monthly", "cron", "0 0 1 * *", "cron(0 0 1 * ? *)", "UTC"),
        ("TZ=Europe/Paris daily", "cron", "0 0 * * *", "cron(0 0 * * ? *)", "Europe/Paris"),
        ("5m", "interval", "5m", "rate(5 minutes)", "UTC"),
        ("1m", "interval", "1m", "rate(1 minute)", "UTC"),
        ("30m", "interval", "30m", "rate(30 minutes)", "UTC"),
        ("1h", "interval", "1h", "rate(1 hour)", "UTC"),
        ("2h", "interval", "2h", "rate(2 hours)", "UTC"),
        ("1d", "interval", "1d", "rate(1 day)", "UTC"),
        ("15 minutes", "interval", "15m", "rate(15 minutes)", "UTC"),
        ("3 Days", "interval", "3d", "rate(3 days)", "UTC"),
    ],
)
def test_every_accepted_form_maps_to_its_eventbridge_expression(
    text: str, kind: str, cron_text: str, expression: str, zone: str
) -> None:
    schedule = parse_schedule(text)
    assert schedule.kind == kind
    assert schedule.cron_text == cron_text
    assert schedule.timezone == zone
    assert schedule.to_eventbridge() == (expression, zone)
    assert schedule.source == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30s", "Invalid schedule '30s': sub-minute schedules are not supported (the minimum is 1 minute)"),
        ("10 seconds", "Invalid schedule '10 seconds': sub-minute schedules are not supported"),
        ("0m", "Invalid schedule '0m': an interval must be at least 1 minute"),
        ("* * * * * *", "'* * * * * *': 6-field cron (with seconds or years) is not supported"),
        ("0 0 9 * * ? *", "7-field cron"),
        ("0 9 * *", "expected 5 cron fields (minute hour day-of-month month day-of-week), got 4"),
        ("every day", "expected 5 cron fields"),
        ("often", "Invalid schedule 'often': not a cron expression, interval (5m, 1h, 1d) or name"),
        ("", "empty schedule"),
        ("5w", "unknown interval unit 'w'"),
        ("@reboot", "unknown schedule name '@reboot'"),
        ("60 * * * *", "minute value 60 is out of range 0-59"),
        ("0 24 * * *", "hour value 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month value 0 is out of range 1-31"),
        ("0 0 32 * *", "day-of-month value 32 is out of range 1-31"),
        ("0 0 * 13 *", "month value 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week value 8 is out of range 0-7"),
        ("0 0 * * FUN", "'FUN' is not a valid day-of-week value"),
        ("0 0 * FOO *", "'FOO' is not a valid month value"),
        ("a * * * *", "'A' is not a valid minute value"),
        ("*/0 * * * *", "invalid step '/0' in the minute field"),
        ("5-1 * * * *", "range 5-1 in the minute field goes backwards"),
        ("1,,2 * * * *", "empty list item in the minute field"),
        ("? * * * *", "'?' is only allowed in day-of-month or day-of-week"),
        ("0 0 L * *", "'L' in the day-of-month field is not supported"),
        ("0 0 * * 1#2", "'#' (nth weekday) in the day-of-week field is not supported"),
        ("0 0 30 2 *", "never fires: no selected month has that day"),
        ("0 9 1 * MON", "Invalid schedule '0 9 1 * MON': restricts both day-of-month and day-of-week"),
        ("0 9 1-7 * 1-5", "EventBridge Scheduler cannot express"),
        ("TZ=Mars/Olympus 0 9 * * *", "unknown time zone 'Mars/Olympus'"),
        ("TZ=../etc/passwd 0 9 * * *", "unknown time zone '../etc/passwd'"),
        ("TZ= 0 9 * * *", "empty time zone after TZ="),
        ("TZ=Europe/Paris", "nothing follows the TZ= prefix"),
        ("TZ=Europe/Paris 5m", "a TZ= prefix applies to cron schedules and names, not intervals"),
    ],
)
def test_every_refused_form_names_the_input_and_the_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        parse_schedule(text)
    assert message in caught.value.message
    assert f"'{text}'" in caught.value.message


def test_a_refusal_is_an_input_error_the_caller_sees() -> None:
    with pytest.raises(InputError) as caught:
        parse_schedule("0 9 1 * MON")
    assert isinstance(caught.value, McpdoError)
    assert caught.value.text.startswith("Invalid schedule '0 9 1 * MON'")


def test_a_schedule_is_frozen() -> None:
    schedule = parse_schedule("5m")
    with pytest.raises(AttributeError):
        schedule.kind = "cron"  # type: ignore[misc]


def test_the_canonical_form_parses_back_to_the_same_schedule() -> None:
    for text in ["TZ=Europe/Paris 0 9 * * 1-5", "weekly", "15 minutes", "0 */6 * * *"]:
        schedule = parse_schedule(text)
        again = parse_schedule(schedule.canonical)
        assert (again.kind, again.cron_text, again.timezone) == (schedule.kind, schedule.cron_text, schedule.timezone)
    assert parse_schedule("TZ=Europe/Paris 0 9 * * *").canonical == "TZ=Europe/Paris 0 9 * * *"
    assert parse_schedule("daily").canonical == "0 0 * * *"


def test_cron_next_fire_times_are_utc_and_strictly_after() -> None:
    schedule = parse_schedule("0 9 * * *")
    assert schedule.next_after(utc(2025, 1, 1, 8, 59)) == utc(2025, 1, 1, 9, 0)
    assert schedule.next_after(utc(2025, 1, 1, 9, 0)) == utc(2025, 1, 2, 9, 0)
    result = schedule.next_after(datetime(2025, 1, 1, 10, 0, tzinfo=PARIS))  # 09:00 UTC
    assert result == utc(2025, 1, 2, 9, 0)
    assert result.tzinfo is UTC


def test_weekday_names_and_numbers_fire_on_the_right_day() -> None:
    monday = parse_schedule("0 8 * * MON").next_after(utc(2025, 6, 4))  # a Wednesday
    assert monday == utc(2025, 6, 9, 8, 0)
    assert monday.weekday() == 0
    sunday = parse_schedule("0 0 * * 7").next_after(utc(2025, 6, 4))
    assert sunday == utc(2025, 6, 8, 0, 0)
    assert parse_schedule("weekly").next_after(utc(2025, 6, 4)) == sunday


def test_a_paris_schedule_keeps_its_wall_clock_time_across_the_spring_change() -> None:
    schedule = parse_schedule("TZ=Europe/Paris 0 9 * * *")
    fires = schedule.fires_between(utc(2025, 3, 28), utc(2025, 4, 1))
    assert fires == [utc(2025, 3, 28, 8), utc(2025, 3, 29, 8), utc(2025, 3, 30, 7), utc(2025, 3, 31, 7)]
    assert all(f.astimezone(PARIS).hour == 9 for f in fires)


def test_a_paris_schedule_keeps_its_wall_clock_time_across_the_autumn_change() -> None:
    schedule = parse_schedule("TZ=Europe/Paris 0 9 * * *")
    fires = schedule.fires_between(utc(2025, 10, 25), utc(2025, 10, 28))
    assert fires == [utc(2025, 10, 25, 7), utc(2025, 10, 26, 8), utc(2025, 10, 27, 8)]


def test_a_time_skipped_by_the_spring_change_does_not_fire_that_day() -> None:
    schedule = parse_schedule("TZ=Europe/Paris 30 2 * * *")
    fires = schedule.fires_between(utc(2025, 3, 28, 12), utc(2025, 4, 1))
    # 02:30 does not exist in Paris on 30 March 2025 (02:00 CET jumps to 03:00 CEST).
    assert fires == [utc(2025, 3, 29, 1, 30), utc(2025, 3, 31, 0, 30)]


def test_a_time_repeated_by_the_autumn_change_fires_once() -> None:
    schedule = parse_schedule("TZ=Europe/Paris 30 2 * * *")
    fires = schedule.fires_between(utc(2025, 10, 25, 12), utc(2025, 10, 28))
    # 02:30 happens twice on 26 October 2025; only the first (CEST, 00:30 UTC) fires.
    assert fires == [utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30)]


def test_an_hourly_paris_schedule_fires_every_real_hour_once_across_the_autumn_change() -> None:
    schedule = parse_schedule("TZ=Europe/Paris 0 * * * *")
    fires = schedule.fires_between(utc(2025, 10, 25, 23, 30), utc(2025, 10, 26, 3, 30))
    # Local 02:00 CEST, (02:00 CET, the repeat: skipped), 03:00 CET, 04:00 CET.
    assert fires == [utc(2025, 10, 26, 0), utc(2025, 10, 26, 2), utc(2025, 10, 26, 3)]


def test_utc_crons_ignore_daylight_saving() -> None:
    schedule = parse_schedule("0 */6 * * *")
    fires = schedule.fires_between(utc(2025, 3, 30), utc(2025, 3, 31))
    assert fires == [utc(2025, 3, 30, 6), utc(2025, 3, 30, 12), utc(2025, 3, 30, 18), utc(2025, 3, 31, 0)]


def test_intervals_fire_at_multiples_of_the_interval_since_the_unix_epoch() -> None:
    five = parse_schedule("5m")
    assert five.next_after(utc(2025, 1, 1, 10, 2, 30)) == utc(2025, 1, 1, 10, 5)
    assert five.next_after(utc(2025, 1, 1, 10, 5)) == utc(2025, 1, 1, 10, 10)
    assert parse_schedule("1h").next_after(utc(2025, 1, 1, 10, 0, 1)) == utc(2025, 1, 1, 11)
    assert parse_schedule("1d").next_after(utc(2025, 1, 1, 10)) == utc(2025, 1, 2)
    assert parse_schedule("7m").next_after(utc(1970, 1, 1, 0, 6)) == utc(1970, 1, 1, 0, 7)
    paris_time = datetime(2025, 1, 1, 11, 2, tzinfo=PARIS)
    assert five.next_after(paris_time) == utc(2025, 1, 1, 10, 5)
    assert five.interval == timedelta(minutes=5)


def test_intervals_can_count_from_an_anchor_instead() -> None:
    schedule = parse_schedule("2h")
    anchor = utc(2025, 1, 1, 0, 17)
    assert schedule.next_after(utc(2025, 1, 1, 3), anchor=anchor) == utc(2025, 1, 1, 4, 17)
    assert schedule.next_after(utc(2024, 12, 31, 23), anchor=anchor) == utc(2025, 1, 1, 0, 17)


def test_fires_between_lists_each_time_once_and_stops_at_the_limit() -> None:
    schedule = parse_schedule("1m")
    assert len(schedule.fires_between(utc(2025, 1, 1), utc(2025, 1, 1, 1))) == 60
    assert len(schedule.fires_between(utc(2025, 1, 1), utc(2025, 1, 2), limit=10)) == 10
    assert schedule.fires_between(utc(2025, 1, 1, 0, 0, 10), utc(2025, 1, 1, 0, 0, 50)) == []


def test_after_downtime_each_missed_schedule_fires_once_with_its_latest_time() -> None:
    hourly = parse_schedule("hourly")
    assert hourly.missed_since(utc(2025, 1, 1, 8, 30), utc(2025, 1, 1, 12, 15)) == utc(2025, 1, 1, 12)
    assert hourly.missed_since(utc(2025, 1, 1, 12, 0), utc(2025, 1, 1, 12, 59)) is None
    every_minute = parse_schedule("* * * * *")
    a_year_later = every_minute.missed_since(utc(2024, 1, 1), utc(2025, 1, 1, 0, 0, 30))
    assert a_year_later == utc(2025, 1, 1)
    five = parse_schedule("5m")
    assert five.missed_since(utc(2025, 1, 1), utc(2025, 1, 1, 0, 12)) == utc(2025, 1, 1, 0, 10)
    paris = parse_schedule("TZ=Europe/Paris 0 9 * * *")
    assert paris.missed_since(utc(2025, 3, 28), utc(2025, 3, 31, 12)) == utc(2025, 3, 31, 7)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("5m").next_after(datetime(2025, 1, 1))


def test_schedules_compare_by_value() -> None:
    assert parse_schedule("0 9 * * *") == Schedule(
        source="0 9 * * *", kind="cron", timezone="UTC", cron_text="0 9 * * *"
    )
