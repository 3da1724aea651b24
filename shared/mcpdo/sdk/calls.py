"""Every SDK call the sandbox can make and the action each needs: the one list that the host's policy and
the runtime's read-only check both use (the runtime receives it when it starts: `--sdk=`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcpdo.identity import READ_ACTIONS

SDK_ACTIONS: Mapping[str, str] = {
    "db.list": "list",
    "db.get": "get",
    "db.create": "create",
    "db.update": "update",
    "db.delete": "delete",
    "db.relate": "relate",
    "db.related": "related",
    "ai.generate": "generate",
    "ai.embed": "embed",
    "ai.batch": "batch",
    "api.fetch": "fetch",
    "api.proxy": "proxy",
    "send": "send",
    "on": "subscribe",
    "every": "schedule",
    "import": "read",
}

# Calls that write only with some arguments: `api.fetch` with a method other than GET sends.
CONDITIONAL_WRITE_CALLS = ("api.fetch",)
WRITE_CALLS = tuple(name for name, action in SDK_ACTIONS.items() if action not in READ_ACTIONS)


def action_of(name: str, args: list[Any]) -> str:
    """The action a call needs; KeyError for a name that is no SDK call."""
    if name == "api.fetch":
        options = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
        if str(options.get("method") or "GET").upper() != "GET":
            return "send"
    return SDK_ACTIONS[name]


def runtime_view() -> dict[str, list[str]]:
    """What the runtime needs of this list: the calls it may pass on and those a read-only script may not make."""
    return {"calls": list(SDK_ACTIONS), "writes": list(WRITE_CALLS), "conditionalWrites": list(CONDITIONAL_WRITE_CALLS)}
