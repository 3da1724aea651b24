"""Event types and the patterns `on()` subscribes with.

An event type is dot-separated segments of letters, digits, `_` and `-` (`Order.created`,
`Invoice.payment.failed`). A pattern is one of:

- exact: `Order.created` matches only that type;
- namespace: `Order.*` matches every type that starts with `Order.` (`Order.created`,
  `Order.item.added`);
- verb: `*.created` matches every type that ends with `.created` (`Order.created`, `Shop.Order.created`);
- everything: `*` matches every type.

The wildcard is a whole segment, first or last, and there is at most one. These are exactly the prefix and
suffix matches an EventBridge rule can express on `detail-type` (see :func:`to_eventbridge`), so a pattern
means the same locally and in the cloud.
"""

from __future__ import annotations

import re
from typing import Any

from mcpdo.errors import InputError

__all__ = ["MAX_TYPE_LENGTH", "candidates", "check_event_type", "matches", "to_eventbridge", "validate_pattern"]

# EventBridge carries the type as an entry's DetailType: at most 128 characters there, so everywhere.
MAX_TYPE_LENGTH = 128
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


def check_event_type(text: object) -> str:
    """Return `text` if it is a valid event type (`Order.created`), else raise InputError naming it."""
    if not isinstance(text, str):
        raise InputError(f"An event type must be a string like 'Order.created', got {text!r}")
    problem = _segments_problem(text)
    if problem is None and "*" in text:
        problem = "an event type cannot contain '*' (wildcards are for on() patterns)"
    if problem is None and "." not in text:
        problem = "an event type has at least two segments, a type and a verb ('Order.created')"
    if problem is not None:
        raise InputError(f"Invalid event type {text!r}: {problem}")
    return text


def validate_pattern(text: object) -> str:
    """Return `text` if it is a supported `on()` pattern, else raise InputError saying what is wrong."""
    if not isinstance(text, str):
        raise InputError(f"An event pattern must be a string like 'Order.created', got {text!r}")
    if text == "*":
        return text
    problem = _segments_problem(text, allow_star=True)
    if problem is None:
        segments = text.split(".")
        stars = [index for index, segment in enumerate(segments) if segment == "*"]
        if len(stars) > 1:
            problem = "only one '*' segment is allowed ('Order.*' or '*.created')"
        elif stars and len(segments) > 1 and stars[0] not in (0, len(segments) - 1):
            problem = "'*' must be the first or the last segment ('Order.*' or '*.created')"
    if problem is not None:
        raise InputError(f"Invalid event pattern {text!r}: {problem}")
    return text


def matches(pattern: str, event_type: str) -> bool:
    """True when `event_type` is matched by the (validated) `pattern`."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    if pattern.startswith("*."):
        return event_type.endswith(pattern[1:])
    return pattern == event_type


def candidates(event_type: str) -> tuple[str, ...]:
    """Every pattern that matches the (valid) `event_type`: `matches(p, t)` is `p in candidates(t)`.

    An index keyed by pattern (a table, a DynamoDB partition) finds the subscriptions of an event with one
    lookup per candidate instead of a scan: `Order.item.added` has `Order.item.added`, `Order.*`,
    `Order.item.*`, `*.item.added`, `*.added` and `*`.
    """
    segments = event_type.split(".")
    prefixes = [".".join(segments[:n]) + ".*" for n in range(1, len(segments))]
    suffixes = ["*." + ".".join(segments[n:]) for n in range(1, len(segments))]
    return (event_type, *prefixes, *suffixes, "*")


def to_eventbridge(pattern: str) -> dict[str, Any]:
    """The EventBridge `detail-type` condition of a pattern, e.g. `{"detail-type": [{"prefix": "Order."}]}`."""
    validate_pattern(pattern)
    if pattern == "*":
        return {"detail-type": [{"prefix": ""}]}
    if pattern.endswith(".*"):
        return {"detail-type": [{"prefix": pattern[:-1]}]}
    if pattern.startswith("*."):
        return {"detail-type": [{"suffix": pattern[1:]}]}
    return {"detail-type": [pattern]}


def _segments_problem(text: str, allow_star: bool = False) -> str | None:
    if not text:
        return "it is empty"
    if len(text) > MAX_TYPE_LENGTH:
        return f"it is longer than {MAX_TYPE_LENGTH} characters"
    if any(ch.isspace() for ch in text):
        return "it contains whitespace"
    if text.startswith(".") or text.endswith(".") or ".." in text:
        return "it has an empty segment (segments are separated by single dots)"
    for segment in text.split("."):
        if allow_star and segment == "*":
            continue
        if "*" in segment:
            return (
                f"'*' must be a whole segment, not part of '{segment}'"
                if allow_star
                else "an event type cannot contain '*' (wildcards are for on() patterns)"
            )
        if not _SEGMENT.match(segment):
            return f"segment '{segment}' may only contain letters, digits, '_' and '-'"
    return None
