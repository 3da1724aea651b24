"""What a caller may hand to `db`: every limit and text rule is defined here, once.

The checks are iterative, so a hostile value cannot drive them (or the recursive code they guard) into
Python's recursion limit, and their messages show the caller's text escaped the way `repr` does, so a
NUL, a control character or a lone surrogate can neither truncate a message nor break its encoding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from mcpdo.errors import InputError

# -- limits ------------------------------------------------------------------------------------------

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
# The largest integer every JS number represents exactly: the bound of `ifVersion` and of `$inc` amounts.
MAX_SAFE_INTEGER = 2**53 - 1
# Levels of objects and arrays in a `where` (the `where` object itself is level 1).
MAX_WHERE_DEPTH = 32
# Keys and array items in a `where`, all levels together: keeps the compiled query bounded.
MAX_WHERE_ITEMS = 2000
# Segments of one field path (`'a.b.c'`, or nested objects in a `where`).
MAX_PATH_DEPTH = 32
MAX_IN_VALUES = 1000
MAX_SORT_FIELDS = 32
# Levels of objects and arrays in record data (the data object itself is level 1).
MAX_VALUE_DEPTH = 64
MAX_RELATION_LENGTH = 128
# Record type names: `Order`, `LineItem`, `user_profile`.
TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
TYPE_NAME_RULE = "start with a letter and use letters, digits or '_' (at most 64)"
# Record instants (`createdAt` given in data) must be dates of years 0001 to 9999.
MIN_INSTANT_MS = -62_135_596_800_000
MAX_INSTANT_MS = 253_402_300_799_999

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 controls, DEL and C1 controls: they break SQL JSON paths, terminals and C-string messages.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_MESSAGE_TEXT = 80

# -- showing caller values in messages ---------------------------------------------------------------


def quote(text: str, limit: int = _MESSAGE_TEXT) -> str:
    """`text` quoted and escaped like `repr` (NUL is `\\x00`, a lone surrogate `\\ud800`), shortened."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "..." + shown[0]


# The largest finite double: numbers beyond it come only from Python callers, never from a script.
MAX_NUMBER = 1.7976931348623157e308


def show(value: object) -> str:
    """A caller's value as the script's author would write it; containers are named, never expanded."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, int):
        if abs(value) > MAX_NUMBER:
            return "a number beyond the range of JavaScript numbers"
        return _show_float(float(value)) if abs(value) >= 10**21 else str(value)
    if isinstance(value, float):
        return _show_float(value)
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _show_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


# -- text --------------------------------------------------------------------------------------------


def text_problem(text: str, *, name: bool) -> str | None:
    """What makes `text` unusable, as a phrase (`a lone surrogate (\\ud800), ...`), or None.

    Every string must be valid Unicode; names (types, fields, keys, relations, ids) must also be free of
    control characters.
    """
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:
        return f"a lone surrogate ({_escaped(surrogate.group())}), strings must be valid Unicode"
    if name:
        control = _CONTROL.search(text)
        if control is not None:
            return f"a control character ({_escaped(control.group())}); names cannot contain control characters"
    return None


def check_name(what: str, text: str) -> str:
    """`text` if it is usable as a name; else InputError `<what> '<escaped text>' contains ...`."""
    problem = text_problem(text, name=True)
    if problem is not None:
        raise InputError(f"{what} {quote(text)} contains {problem}")
    return text


def _escaped(char: str) -> str:
    return repr(char)[1:-1]


# -- numbers -----------------------------------------------------------------------------------------


def integer_option(name: str, value: object, default: int, low: int, high: int) -> int:
    """A whole-number option (`limit`, `offset`, `ifVersion`) in `[low, high]`; None gives `default`."""
    if value is None:
        return default
    number = value
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
        raise InputError(f"{name} must be between {low} and {high}, got {show(value)}")
    return number


def check_listing_limit(limit: object) -> int:
    """How many entries a listing of the runs log or the sent mail may return: a positive integer."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError(f"limit must be a positive integer, got {limit!r}")
    return limit


def inc_amount(field: str, value: object) -> int | float:
    """A `$inc` amount: a finite number within the safe-integer range (so the sum stays finite)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and abs(value) <= MAX_SAFE_INTEGER)
    ):
        raise InputError(
            f"$inc on field '{field}' needs a finite number between {-MAX_SAFE_INTEGER} and "
            f"{MAX_SAFE_INTEGER}, got {show(value)}"
        )
    return value


# -- record data -------------------------------------------------------------------------------------


def check_data(call: str, data: Mapping[str, Any]) -> None:
    """Record data for `create`/`update`: JSON all through (string keys, finite numbers), field names
    without control characters, valid Unicode, at most MAX_VALUE_DEPTH levels. Raises InputError naming
    the call and the field."""
    stack: list[tuple[object, tuple[str, ...], int]] = [(data, (), 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value, name=False)
            if problem is not None:
                raise InputError(f"{call}(): field {_field(path)} contains {problem}")
        elif value is None or isinstance(value, bool):
            continue
        elif isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{call}(): field {_field(path)} must be a finite number, got {show(value)}")
        elif isinstance(value, list | Mapping):
            if depth > MAX_VALUE_DEPTH:
                raise InputError(
                    f"{call}(): field {_field(path)} is nested too deeply "
                    f"(more than {MAX_VALUE_DEPTH} levels of objects and arrays)"
                )
            if isinstance(value, list):
                stack.extend((item, (*path, str(index)), depth + 1) for index, item in enumerate(value))
                continue
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InputError(f"{call}(): field names must be strings, got {show(key)}")
                check_name(f"{call}(): field name", key)
                stack.append((item, (*path, key), depth + 1))
        else:
            raise InputError(f"{call}(): field {_field(path)} is not JSON: {show(value)}")


def _field(path: tuple[str, ...]) -> str:
    return quote(".".join(path)) if path else "data"


# -- where -------------------------------------------------------------------------------------------


def check_where(where: object) -> None:
    """The shape of a `where` before any recursive parsing: at most MAX_WHERE_DEPTH levels and
    MAX_WHERE_ITEMS keys and array items, names without control characters, valid Unicode."""
    stack: list[tuple[object, str, int]] = [(where, "where", 1)]
    items = 0
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value, name=False)
            if problem is not None:
                raise InputError(f"{_where_path(path)} contains {problem}")
            continue
        if not isinstance(value, list | Mapping):
            continue
        if depth > MAX_WHERE_DEPTH:
            raise InputError(f"where is nested too deeply (more than {MAX_WHERE_DEPTH} levels of objects and arrays)")
        items += len(value)
        if items > MAX_WHERE_ITEMS:
            raise InputError(f"where is too large (more than {MAX_WHERE_ITEMS} keys and array items in all)")
        if isinstance(value, list):
            stack.extend((item, f"{path}.{index}", depth + 1) for index, item in enumerate(value))
            continue
        for key, item in value.items():
            if isinstance(key, str):
                check_name("Field", key)  # operators have plain names, so this is what a bad key is
            stack.append((item, f"{path}.{key}", depth + 1))


def _where_path(path: str) -> str:
    return path if len(path) <= _MESSAGE_TEXT else path[: _MESSAGE_TEXT - 3] + "..."
