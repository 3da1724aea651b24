"""Schedules for `every(schedule, handler)`: one parser, one meaning, locally and on EventBridge Scheduler.

Accepted forms (case-insensitive, surrounding whitespace ignored):

- 5-field cron ``minute hour day-of-month month day-of-week``: ``*``, numbers, ranges ``a-b``, lists
  ``a,b``, steps ``*/n``, ``a/n``, ``a-b/n``; month names ``JAN``-``DEC``; day names ``SUN``-``SAT``
  (day-of-week numbers 0-7, Sunday is 0 or 7); ``?`` is accepted as ``*`` in the two day fields.
- An optional time-zone prefix ``TZ=Europe/Paris `` (or ``CRON_TZ=``) before a cron or a name; the default
  zone is UTC. Cron fields are evaluated in that zone's wall-clock time.
- Intervals ``<n>m``, ``<n>h``, ``<n>d`` (also ``<n> minutes|hours|days``), at least one minute.
- Names ``hourly`` (``0 * * * *``), ``daily`` (``0 0 * * *``), ``weekly`` (``0 0 * * 0``),
  ``monthly`` (``0 0 1 * *``), ``yearly`` (``0 0 1 1 *``), each also with a leading ``@``.

Refused, each with an :class:`InvalidSchedule` naming the input: sub-minute schedules, 6/7-field crons
(seconds), malformed fields or out-of-range values, unknown time zones, ``L``/``W``/``#`` syntax, crons that
can never fire (``0 0 30 2 *``), and crons restricting both day-of-month and day-of-week (standard cron
reads that as "either", EventBridge Scheduler cannot express it).

Time semantics (shared by the local scheduler and the cloud one):

- Cron: evaluated in the schedule's zone. A wall-clock time skipped by a daylight-saving jump does not
  fire; a wall-clock time that occurs twice fires once, at its first occurrence (what EventBridge
  Scheduler does).
- Interval: fires at ``anchor + k * interval``; the anchor is the Unix epoch unless one is passed. An
  EventBridge ``rate()`` schedule counts from its ``StartDate``: create (and update) it with
  ``StartDate=schedule.eventbridge_start(now)`` (``next_after(now)``) to keep the cloud on the same
  epoch-aligned grid.

Time zones are IANA names from the zone database (``zoneinfo.available_timezones()``): files such as
``localtime`` or ``posix/...`` that ``ZoneInfo`` would also load are refused, as Scheduler refuses them.
"""

from __future__ import annotations

import calendar
import functools
import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from mcpdo.errors import InputError

__all__ = ["InvalidSchedule", "Schedule", "parse_schedule"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

_NAMED = {
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "midnight": "0 0 * * *",
    "weekly": "0 0 * * 0",
    "monthly": "0 0 1 * *",
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
}

_UNITS: dict[str, Literal["m", "h", "d"]] = {
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
}
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
_UNIT_WORD = {"m": "minute", "h": "hour", "d": "day"}
_SUB_MINUTE = re.compile(r"^\d+(\.\d+)?\s*(s|sec|secs|second|seconds|ms|millis|milliseconds)$")
_INTERVAL = re.compile(r"^(\d+)\s*([a-z]+)$")
_TZ_PREFIX = re.compile(r"^(?:CRON_)?TZ=(\S*)\s*(.*)$", re.IGNORECASE | re.DOTALL)


class InvalidSchedule(InputError):
    """A schedule string given to `every()` is malformed or cannot be run by the scheduler."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"Invalid schedule '{text}': {reason}")
        self.schedule = text
        self.reason = reason


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: list[str] | None = None  # names for values low.. (months from 1, days from 0)


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _DAYS),
)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule. Build with :func:`parse_schedule`."""

    source: str
    """The text as given to `every()`."""
    kind: Literal["cron", "interval"]
    timezone: str
    """IANA zone of the cron fields: 'UTC' unless a TZ= prefix was given ('UTC' for intervals)."""
    cron_text: str
    """Canonical display form: the 5-field cron (`0 9 * * *`), or the interval (`5m`, `1h`, `1d`)."""
    interval_seconds: int | None = None
    interval_value: int | None = None
    interval_unit: Literal["m", "h", "d"] | None = None

    # -- display -------------------------------------------------------------------------------------
    @property
    def canonical(self) -> str:
        """`cron_text` with the `TZ=` prefix when the zone is not UTC: parses back to an equal schedule."""
        if self.kind == "cron" and self.timezone != "UTC":
            return f"TZ={self.timezone} {self.cron_text}"
        return self.cron_text

    @property
    def interval(self) -> timedelta | None:
        return None if self.interval_seconds is None else timedelta(seconds=self.interval_seconds)

    # -- cloud ---------------------------------------------------------------------------------------
    def to_eventbridge(self) -> tuple[str, str]:
        """(`ScheduleExpression`, `ScheduleExpressionTimezone`) for EventBridge Scheduler."""
        if self.kind == "interval":
            assert self.interval_value is not None and self.interval_unit is not None
            word = _UNIT_WORD[self.interval_unit]
            plural = "" if self.interval_value == 1 else "s"
            return f"rate({self.interval_value} {word}{plural})", "UTC"
        sets = _field_sets(self.cron_text.split())
        minute, hour, dom, month, dow = sets
        parts = [
            _render_numeric(minute, _FIELDS[0]),
            _render_numeric(hour, _FIELDS[1]),
            "?" if _restricted(dow, _FIELDS[4]) else _render_numeric(dom, _FIELDS[2]),
            _render_numeric(month, _FIELDS[3]),
            _render_dow(dow) if _restricted(dow, _FIELDS[4]) else "?",
            "*",
        ]
        return f"cron({' '.join(parts)})", self.timezone

    def eventbridge_start(self, now: datetime) -> datetime | None:
        """`StartDate` for EventBridge Scheduler: for an interval the first slot after `now` (aware UTC), since a
        `rate()` counts from its StartDate and this keeps the cloud on the epoch-aligned grid the local scheduler
        uses; None for a cron, whose fields alone say when it fires. Always after `now`: Scheduler refuses a
        StartDate more than 5 minutes in the past, so an update passes a fresh one on the same grid."""
        return self.next_after(now) if self.kind == "interval" else None

    # -- time ----------------------------------------------------------------------------------------
    def next_after(self, dt: datetime, anchor: datetime | None = None) -> datetime:
        """The first fire time strictly after `dt` (aware), as an aware UTC datetime.

        `anchor` applies to intervals only (default: the Unix epoch)."""
        dt = _aware(dt)
        if self.kind == "interval":
            step = self._step()
            base = _aware(anchor) if anchor is not None else EPOCH
            count = (dt - base) // step + 1
            return (base + count * step).astimezone(UTC)
        zone = ZoneInfo(self.timezone)
        start = dt.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3)
        it = _croniter(self.cron_text, start)
        for _ in range(1_000_000):
            naive: datetime = it.get_next(datetime)
            fire = _resolve(naive, zone)
            if fire is not None and fire > dt:
                return fire
        raise AssertionError(f"no fire time found for {self.canonical!r}")  # pragma: no cover

    def last_at_or_before(self, dt: datetime, anchor: datetime | None = None) -> datetime:
        """The latest fire time at or before `dt` (aware), as an aware UTC datetime."""
        dt = _aware(dt)
        if self.kind == "interval":
            step = self._step()
            base = _aware(anchor) if anchor is not None else EPOCH
            count = (dt - base) // step
            return (base + count * step).astimezone(UTC)
        zone = ZoneInfo(self.timezone)
        start = dt.astimezone(zone).replace(tzinfo=None) + timedelta(hours=3, minutes=1)
        it = _croniter(self.cron_text, start)
        for _ in range(1_000_000):
            naive: datetime = it.get_prev(datetime)
            fire = _resolve(naive, zone)
            if fire is not None and fire <= dt:
                return fire
        raise AssertionError(f"no fire time found for {self.canonical!r}")  # pragma: no cover

    def fires_between(
        self, start: datetime, end: datetime, limit: int = 1000, anchor: datetime | None = None
    ) -> list[datetime]:
        """Fire times `t` with `start < t <= end`, oldest first, at most `limit` of them (the oldest)."""
        out: list[datetime] = []
        current = _aware(start)
        end = _aware(end)
        while len(out) < limit:
            current = self.next_after(current, anchor)
            if current > end:
                break
            out.append(current)
        return out

    def missed_since(self, last: datetime, now: datetime, anchor: datetime | None = None) -> datetime | None:
        """After downtime: the latest fire time in `(last, now]`, or None if nothing was missed.

        A scheduler restarting fires each schedule with a missed time once (not once per missed time)."""
        latest = self.last_at_or_before(now, anchor)
        return latest if latest > _aware(last) else None

    def _step(self) -> timedelta:
        assert self.interval_seconds is not None
        return timedelta(seconds=self.interval_seconds)


def parse_schedule(text: str) -> Schedule:
    """Parse the first argument of `every()`; raises :class:`InvalidSchedule` with the reason."""
    if not isinstance(text, str):
        raise InvalidSchedule(repr(text), "a schedule must be a string")
    source = text
    body = text.strip()
    if not body:
        raise InvalidSchedule(source, "empty schedule")
    zone_name: str | None = None
    match = _TZ_PREFIX.match(body)
    if match:
        zone_name, body = match.group(1), match.group(2).strip()
        _check_zone(source, zone_name)
        if not body:
            raise InvalidSchedule(source, "nothing follows the TZ= prefix")
    lowered = body.lower()

    if _SUB_MINUTE.match(lowered):
        raise InvalidSchedule(source, "sub-minute schedules are not supported (the minimum is 1 minute)")
    interval = _INTERVAL.match(lowered)
    if interval and interval.group(2) in _UNITS:
        if zone_name is not None:
            raise InvalidSchedule(source, "a TZ= prefix applies to cron schedules and names, not intervals")
        value = int(interval.group(1))
        unit = _UNITS[interval.group(2)]
        if value < 1:
            raise InvalidSchedule(source, "an interval must be at least 1 minute")
        if value > 100_000:
            raise InvalidSchedule(source, "an interval must be at most 100000 units")
        return Schedule(
            source=source,
            kind="interval",
            timezone="UTC",
            cron_text=f"{value}{unit}",
            interval_seconds=value * _UNIT_SECONDS[unit],
            interval_value=value,
            interval_unit=unit,
        )
    if interval:
        raise InvalidSchedule(source, f"unknown interval unit '{interval.group(2)}' (use m, h or d)")

    name = lowered.removeprefix("@")
    if name in _NAMED:
        body = _NAMED[name]
    elif lowered.startswith("@"):
        raise InvalidSchedule(source, f"unknown schedule name '{body}' (use hourly, daily, weekly, monthly, yearly)")

    fields = body.split()
    if len(fields) in (6, 7):
        raise InvalidSchedule(
            source,
            f"{len(fields)}-field cron (with seconds or years) is not supported: "
            "use 5 fields (minute hour day-of-month month day-of-week); "
            "sub-minute schedules are not supported",
        )
    if len(fields) != 5:
        if len(fields) == 1:
            raise InvalidSchedule(
                source, "not a cron expression, interval (5m, 1h, 1d) or name (hourly, daily, weekly)"
            )
        raise InvalidSchedule(
            source, f"expected 5 cron fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    canonical = [_check_field(source, raw, spec) for raw, spec in zip(fields, _FIELDS, strict=True)]
    sets = _field_sets(canonical)
    _minute, _hour, dom, month, dow = sets
    if _restricted(dom, _FIELDS[2]) and _restricted(dow, _FIELDS[4]):
        raise InvalidSchedule(
            source,
            "restricts both day-of-month and day-of-week; standard cron runs when "
            "either matches, which EventBridge Scheduler cannot express: use '*' "
            "in one of them (or register two schedules)",
        )
    if _restricted(dom, _FIELDS[2]) and min(dom) > max(_month_days(m) for m in month):
        raise InvalidSchedule(source, "never fires: no selected month has that day")
    # Fields equal to their full range are written '*', so the canonical text has one reading everywhere.
    if not _restricted(dom, _FIELDS[2]):
        canonical[2] = "*"
    if not _restricted(dow, _FIELDS[4]):
        canonical[4] = "*"
    return Schedule(source=source, kind="cron", timezone=zone_name or "UTC", cron_text=" ".join(canonical))


# -- helpers ---------------------------------------------------------------------------------------------


# Files of the zone database that are not zones EventBridge Scheduler knows: the machine's own zone, the
# placeholder zone, and the POSIX rules template (the `posix/` and `right/` trees are never listed).
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@functools.cache
def _zone_names() -> frozenset[str]:
    """The IANA zone names this machine knows (read once: listing them opens every zone file)."""
    return frozenset(available_timezones()) - _NOT_ZONES


def _check_zone(source: str, name: str) -> None:
    """Accept only a listed IANA name: `ZoneInfo` also loads files such as `localtime`, `posix/Europe/Paris` or
    `right/UTC`, which would run locally with another meaning (or none) and which Scheduler refuses."""
    if not name:
        raise InvalidSchedule(source, "empty time zone after TZ=")
    try:
        if name not in _zone_names():
            raise ZoneInfoNotFoundError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(source, f"unknown time zone '{name}' (use an IANA name such as Europe/Paris)") from None


def _check_field(source: str, raw: str, spec: _Field) -> str:
    """Validate one cron field; return it in canonical form (names upper-case, '?' read as '*')."""
    text = raw.upper()
    if text == "?":
        if spec.name not in ("day-of-month", "day-of-week"):
            raise InvalidSchedule(source, f"'?' is only allowed in day-of-month or day-of-week, not in {spec.name}")
        return "*"
    if "#" in text:
        raise InvalidSchedule(source, f"'#' (nth weekday) in the {spec.name} field is not supported")
    for word in re.findall(r"[A-Z]+", text):
        if word in ("L", "W", "LW"):
            raise InvalidSchedule(source, f"'{word}' in the {spec.name} field is not supported")
    for part in text.split(","):
        _parse_part(source, part, spec)
    return text


def _value(source: str, token: str, spec: _Field) -> int:
    if token.isdigit():
        value = int(token)
    elif spec.names and token in spec.names:
        value = spec.names.index(token) + (1 if spec.name == "month" else 0)
    else:
        raise InvalidSchedule(source, f"'{token}' is not a valid {spec.name} value")
    if not spec.low <= value <= spec.high:
        raise InvalidSchedule(source, f"{spec.name} value {value} is out of range {spec.low}-{spec.high}")
    return value


def _parse_part(source: str, part: str, spec: _Field) -> set[int]:
    if not part:
        raise InvalidSchedule(source, f"empty list item in the {spec.name} field")
    base, _, step_text = part.partition("/")
    step = 1
    if _:
        if not step_text.isdigit() or int(step_text) < 1:
            raise InvalidSchedule(source, f"invalid step '/{step_text}' in the {spec.name} field")
        step = int(step_text)
        if step > spec.high:
            raise InvalidSchedule(source, f"step {step} is larger than the {spec.name} range")
    if base == "*":
        low, high = spec.low, spec.high
        if spec.name == "day-of-week":
            high = 6
    elif "-" in base:
        first, __, last = base.partition("-")
        low, high = _value(source, first, spec), _value(source, last, spec)
        if low > high:
            raise InvalidSchedule(source, f"range {base} in the {spec.name} field goes backwards")
    else:
        low = _value(source, base, spec)
        high = (6 if spec.name == "day-of-week" else spec.high) if _ else low
    values = set(range(low, high + 1, step))
    if spec.name == "day-of-week":
        values = {v % 7 for v in values}
    return values


def _field_sets(fields: list[str]) -> list[set[int]]:
    out: list[set[int]] = []
    for raw, spec in zip(fields, _FIELDS, strict=True):
        values: set[int] = set()
        for part in raw.split(","):
            values |= _parse_part(raw, part, spec)
        out.append(values)
    return out


def _restricted(values: set[int], spec: _Field) -> bool:
    full = set(range(0, 7)) if spec.name == "day-of-week" else set(range(spec.low, spec.high + 1))
    return values != full


def _month_days(month: int) -> int:
    return calendar.monthrange(2024, month)[1]  # a leap year: 29 February exists


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _render_numeric(values: set[int], spec: _Field) -> str:
    if not _restricted(values, spec):
        return "*"
    ordered = sorted(values)
    if len(ordered) >= 3:
        step = ordered[1] - ordered[0]
        progression = all(b - a == step for a, b in itertools.pairwise(ordered))
        if step > 1 and progression and ordered[-1] + step > spec.high:
            return f"{ordered[0]}/{step}"
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in _runs(ordered))


def _render_dow(values: set[int]) -> str:
    # EventBridge numbers days 1-7 from Sunday; names avoid any off-by-one between the two conventions.
    return ",".join(_DAYS[a] if a == b else f"{_DAYS[a]}-{_DAYS[b]}" for a, b in _runs(sorted(values)))


def _resolve(naive: datetime, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of a local wall-clock time: None if a DST jump skips it, the first if it repeats."""
    aware = naive.replace(tzinfo=zone, fold=0)
    utc = aware.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != naive:
        return None
    return utc


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return dt


def _croniter(cron_text: str, start: datetime) -> Any:
    """croniter over `cron_text` from `start`; imported on first use (~10 ms, and a plain `mcpdo run` has no
    schedule)."""
    from croniter import croniter  # type: ignore[import-untyped]

    return croniter(cron_text, start)
