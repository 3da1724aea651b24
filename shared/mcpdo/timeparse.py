"""Instants from the forms scripts use: ISO-8601 strings, epoch milliseconds and relative phrases.

Everything here is UTC. Strings without a zone are read as UTC, date-only strings as midnight UTC.
Formatting matches JavaScript's `Date#toISOString` (`2026-11-25T20:45:00.000Z`).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Keep to the JavaScript Date range so every instant we accept can be formatted back.
_MAX_MS = 8_640_000_000_000_000

_ISO = re.compile(
    r"""^(?P<date>\d{4}-\d{2}-\d{2})
        (?:[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?
           (?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?)?$""",
    re.VERBOSE,
)

_UNIT_MS = {
    "ms": 1,
    "millisecond": 1,
    "s": 1_000,
    "sec": 1_000,
    "second": 1_000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
    "hour": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "w": 604_800_000,
    "wk": 604_800_000,
    "week": 604_800_000,
}
_CALENDAR_UNITS = {"mo": 1, "mon": 1, "month": 1, "y": 12, "yr": 12, "year": 12}
_UNIT_WORD = r"[a-z]+"
_AMOUNT = r"(?P<n>\d+(?:\.\d+)?|an?|one)"
_AGO = re.compile(rf"^{_AMOUNT}\s*(?P<unit>{_UNIT_WORD})\s+ago$")
_IN = re.compile(rf"^in\s+{_AMOUNT}\s*(?P<unit>{_UNIT_WORD})$")
_SIGNED = re.compile(rf"^(?P<sign>[+-])\s*{_AMOUNT}\s*(?P<unit>{_UNIT_WORD})$")


def utc_now() -> datetime:
    """The current instant, timezone-aware UTC."""
    return datetime.now(UTC)


def now_ms() -> int:
    """The current instant in epoch milliseconds."""
    return to_epoch_ms(utc_now())


def to_epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive ones are read as UTC), truncated like JS."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000 + delta.microseconds // 1_000


def from_epoch_ms(ms: int | float) -> datetime:
    """The aware UTC datetime of an epoch-milliseconds value."""
    return _EPOCH + timedelta(milliseconds=int(ms))


def format_iso(moment: datetime | int | float) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, exactly as JavaScript's `toISOString`."""
    ms = moment if isinstance(moment, int | float) else to_epoch_ms(moment)
    dt = from_epoch_ms(ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def is_iso_string(text: str) -> bool:
    """True when `text` is an ISO-8601 date or date-time this module can parse."""
    return parse_iso_ms(text) is not None


def parse_iso_ms(text: str) -> int | None:
    """Epoch ms of an ISO-8601 date or date-time string, or None if it is not one."""
    match = _ISO.match(text.strip())
    if match is None:
        return None
    try:
        year, month, day = (int(part) for part in match["date"].split("-"))
        hour = int(match["h"] or 0)
        minute = int(match["m"] or 0)
        second = int(match["s"] or 0)
        micro = int((match["frac"] or "0").ljust(6, "0")[:6])
        extra_day = hour == 24 and minute == 0 and second == 0 and micro == 0
        moment = datetime(year, month, day, 0 if extra_day else hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        return None
    ms = to_epoch_ms(moment) + (86_400_000 if extra_day else 0)
    zone = match["tz"]
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            return None
        ms -= sign * (hours * 60 + minutes) * 60_000
    return ms


def parse_relative_ms(text: str, now: datetime | None = None) -> int | None:
    """Epoch ms of a relative phrase ('24 hours ago', 'in 2 hours', 'now', 'today', 'yesterday')."""
    phrase = " ".join(text.strip().lower().split())
    current = now if now is not None else utc_now()
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    current = current.astimezone(UTC)
    if phrase in ("now", "right now"):
        return to_epoch_ms(current)
    midnight = current.replace(hour=0, minute=0, second=0, microsecond=0)
    days = {"today": 0, "yesterday": -1, "tomorrow": 1}.get(phrase)
    if days is not None:
        return to_epoch_ms(midnight + timedelta(days=days))
    for pattern, direction in ((_AGO, -1), (_IN, 1), (_SIGNED, 0)):
        match = pattern.match(phrase)
        if match is None:
            continue
        sign = direction or (1 if match["sign"] == "+" else -1)
        return _shift(current, sign, match["n"], match["unit"])
    return None


def _shift(current: datetime, sign: int, amount_text: str, unit_text: str) -> int | None:
    amount = 1.0 if amount_text in ("a", "an", "one") else float(amount_text)
    unit = _singular(unit_text)
    if unit in _UNIT_MS:
        span = amount * _UNIT_MS[unit]
        if not math.isfinite(span) or span > _MAX_MS * 2:
            return None  # '1e400 days ago' is no instant (and would overflow `round`)
        ms = to_epoch_ms(current) + sign * round(span)
        return ms if abs(ms) <= _MAX_MS else None
    if unit in _CALENDAR_UNITS and amount.is_integer():
        months = sign * int(amount) * _CALENDAR_UNITS[unit]
        try:
            return to_epoch_ms(_add_months(current, months))
        except (ValueError, OverflowError):
            return None
    return None


def _singular(unit: str) -> str:
    aliases = {"mins": "min", "secs": "sec", "hrs": "hr", "wks": "wk", "yrs": "yr", "mos": "mo"}
    if unit in aliases:
        return aliases[unit]
    if unit.endswith("s") and unit[:-1] in (*_UNIT_MS, *_CALENDAR_UNITS) and len(unit) > 2:
        return unit[:-1]
    return unit


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    next_month = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    last_day = (next_month - timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def instant_ms(value: object, now: datetime | None = None) -> int | None:
    """Epoch ms of any instant form (number, ISO string, relative phrase, datetime), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > _MAX_MS:
            return None
        return int(value)
    if isinstance(value, datetime):
        return to_epoch_ms(value)
    if isinstance(value, str):
        iso = parse_iso_ms(value)
        return iso if iso is not None else parse_relative_ms(value, now)
    return None


def parse_instant(value: object, now: datetime | None = None) -> datetime | None:
    """The aware UTC datetime of any instant form, or None if `value` is not an instant."""
    ms = instant_ms(value, now)
    return None if ms is None else from_epoch_ms(ms)


def stored_instant_ms(value: object) -> int | None:
    """Epoch ms of a stored value: numbers as epoch ms, ISO strings parsed; never relative phrases."""
    if isinstance(value, str):
        return parse_iso_ms(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value) if math.isfinite(value) and abs(value) <= _MAX_MS else None
    return None
