"""Routes each SDK call from the sandbox to the host API that serves it, for one caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcpdo.errors import InputError, NotConfigured
from mcpdo.identity import Identity
from mcpdo.ports import EntityStore
from mcpdo.sdk.db import DbApi
from mcpdo.sdk.policy import authorize

Handler = Callable[[list[Any]], Awaitable[Any]]

# Write-like calls that are checked even before their capability exists, so the rules hold everywhere.
_ACTIONS = {
    "ai.generate": "generate",
    "ai.batch": "batch",
    "ai.embed": "embed",
    "api.fetch": "fetch",
    "api.proxy": "proxy",
    "send": "send",
    "on": "subscribe",
    "every": "schedule",
}


class Host:
    """The host side of the SDK as one callable: `await host("db.create", ["Order", {...}])`."""

    def __init__(self, identity: Identity, store: EntityStore) -> None:
        self.identity = identity
        db = DbApi(store, identity)
        self._routes: dict[str, Handler] = {
            "db.list": db.list,
            "db.get": db.get,
            "db.create": db.create,
            "db.update": db.update,
            "db.delete": db.delete,
            "db.relate": db.relate,
            "db.related": db.related,
        }

    def route(self, name: str, handler: Handler) -> None:
        """Add or replace the handler of one SDK call (wiring adds ai, api and events here)."""
        self._routes[name] = handler

    async def __call__(self, name: str, args: list[Any]) -> Any:
        handler = self._routes.get(name)
        if handler is not None:
            return await handler(args)
        action = _ACTIONS.get(name)
        if action is None:
            raise InputError(f"Unknown SDK call '{name}'")
        authorize(self.identity, _fetch_action(name, args) if name == "api.fetch" else action, "*")
        raise NotConfigured(f"{name}() is not configured on this deployment")


def _fetch_action(name: str, args: list[Any]) -> str:
    options = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    method = str(options.get("method") or "GET").upper()
    return "fetch" if method == "GET" else "send"
