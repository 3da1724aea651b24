"""Checking the JSON arguments a script passed to an SDK call, with errors that name the call."""

from __future__ import annotations

from typing import Any

from mcpdo.errors import InputError
from mcpdo.inputs import TYPE_NAME, check_name


def arity(call: str, args: list[Any], required: int, maximum: int) -> list[Any]:
    """The arguments padded with None up to `maximum`, after checking how many were given."""
    if len(args) < required:
        raise InputError(f"{call}() needs at least {required} argument(s), got {len(args)}")
    if len(args) > maximum:
        raise InputError(f"{call}() takes at most {maximum} argument(s), got {len(args)}")
    return args + [None] * (maximum - len(args))


def type_name(call: str, value: Any) -> str:
    """A record type such as 'Order' (a `$.Order` token arrives as its name)."""
    if not isinstance(value, str) or not TYPE_NAME.fullmatch(value):
        raise InputError(f"{call}(): type must be a name like 'Order', got {describe(value)}")
    return value


def record_id(call: str, value: Any, what: str = "id") -> str:
    """A record id to look up: a non-empty string without control characters, valid Unicode."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{call}(): {what} must be a non-empty string, got {describe(value)}")
    return check_name(f"{call}(): {what}", value)


def obj(call: str, name: str, value: Any, *, optional: bool = False) -> dict[str, Any]:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{call}(): {name} must be an object, got {describe(value)}")
    return value


def describe(value: Any) -> str:
    """How a JSON value looks to the script's author, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"
