"""AuditLog in memory (tests, one-shot processes), and the rules every audit adapter shares.

The shared rules live here, with the reference implementation, so that SQLite and DynamoDB read them from one
place: instants given to `list` and `purge` are normalized to the core's ISO text before they are compared
with stored start times (which are that text, so text order is time order), and `calls` is kept as a JSON
object and handed back sorted by method, whatever order it was recorded in.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
from collections.abc import Iterable

from mcpdo.errors import InputError
from mcpdo.inputs import check_listing_limit
from mcpdo.ports import ExecutionRecord
from mcpdo.timeparse import format_iso, parse_iso_ms

Calls = tuple[tuple[str, int], ...]


class MemoryAuditLog:
    """AuditLog in a dict by id: nothing expires until `purge`."""

    def __init__(self) -> None:
        self._entries: dict[str, ExecutionRecord] = {}

    async def record(self, entry: ExecutionRecord) -> None:
        """Keep `entry` unless its id is kept already (the first one stays, as SQLite's INSERT OR IGNORE)."""
        if entry.id not in self._entries:
            self._entries[entry.id] = dataclasses.replace(entry, calls=sorted_calls(entry.calls))

    async def list(
        self, tenant: str | None = None, limit: int = 100, before: str | None = None
    ) -> builtins.list[ExecutionRecord]:
        """Entries newest first (start time, then id), of one tenant or all, strictly before `before`."""
        check_listing_limit(limit)
        cut = None if before is None else checked_instant(before, "before")
        kept = [
            entry
            for entry in self._entries.values()
            if (tenant is None or entry.tenant == tenant) and (cut is None or entry.started_at < cut)
        ]
        kept.sort(key=lambda entry: (entry.started_at, entry.id), reverse=True)
        return kept[:limit]

    async def purge(self, older_than: str) -> int:
        """Drop entries that started before `older_than`; how many went."""
        cut = checked_instant(older_than, "older_than")
        old = [key for key, entry in self._entries.items() if entry.started_at < cut]
        for key in old:
            del self._entries[key]
        return len(old)

    async def close(self) -> None:
        """Nothing to release."""


def checked_instant(text: str, name: str) -> str:
    """`text` as the core's ISO form (`format_iso`), so that comparing it with stored start times as text
    compares instants: "…T00:00:00Z" and "…T00:00:00.000Z" are the same moment but not the same text."""
    return format_iso(checked_ms(text, name))


def checked_ms(text: str, name: str) -> int:
    """The epoch milliseconds of the ISO instant `text`; InputError (naming the argument) for other text."""
    ms = parse_iso_ms(text) if isinstance(text, str) else None
    if ms is None:
        raise InputError(f"{name} must be an ISO 8601 instant, got {text!r}")
    return ms


def sorted_calls(calls: Iterable[tuple[str, int]]) -> Calls:
    """SDK call counts by method, sorted by method: the one order every adapter hands back."""
    return tuple(sorted(dict(calls).items()))


def calls_text(calls: Iterable[tuple[str, int]]) -> str:
    """The counts as JSON text: an object from method to count (the shape `ExecutionRecord.to_json` shows)."""
    return json.dumps(dict(sorted_calls(calls)), ensure_ascii=False)


def calls_from_text(text: str) -> Calls:
    """The counts kept by `calls_text`, sorted by method."""
    loaded: dict[str, int] = json.loads(text)
    return sorted_calls(loaded.items())
