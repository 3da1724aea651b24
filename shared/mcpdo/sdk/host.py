"""Routes each SDK call from the sandbox to the host API that serves it, for one caller."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcpdo.errors import InputError, NotConfigured
from mcpdo.identity import Identity
from mcpdo.ports import EntityStore
from mcpdo.sdk.calls import SDK_ACTIONS, action_of
from mcpdo.sdk.db import DbApi
from mcpdo.sdk.policy import authorize

if TYPE_CHECKING:
    from mcpdo.audit import AuditReader

Handler = Callable[[list[Any]], Awaitable[Any]]


class Host:
    """The host side of the SDK as one callable: `await host("db.create", ["Order", {...}])`."""

    def __init__(self, identity: Identity, store: EntityStore, audit: AuditReader | None = None) -> None:
        self.identity = identity
        # How often each SDK call was made (the audit trail's counts); names that are no SDK call are "other".
        self.calls: Counter[str] = Counter()
        db = DbApi(store, identity, audit)
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
        self.calls[name if name in SDK_ACTIONS else "other"] += 1
        handler = self._routes.get(name)
        if handler is not None:
            return await handler(args)
        if name not in SDK_ACTIONS:
            raise InputError(f"Unknown SDK call '{name}'")
        # Checked even before the capability exists, so the rules hold everywhere.
        authorize(self.identity, action_of(name, args), "*")
        raise NotConfigured(f"{name}() is not configured on this deployment")
