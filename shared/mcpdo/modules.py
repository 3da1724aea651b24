"""Modules: registration (parse, evaluate once, persist a version, swap its live handlers) and imports.

Registering stores the new version first and then makes its subscriptions and schedules live, each set
replaced at once: an event is routed to the old version's handlers or to the new one's, never a mix. If
making them live fails, the call fails and the previous handlers stay live; registering again repairs it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urljoin, urlparse

from mcpdo.errors import AuthenticationRequired, InputError, McpdoError, NotFound
from mcpdo.events import HandlerFailed, HandlerOutcome
from mcpdo.execution import Executor
from mcpdo.identity import Identity
from mcpdo.inputs import quote
from mcpdo.mdxld import ParsedModule, parse_module
from mcpdo.patterns import validate_pattern
from mcpdo.ports import (
    Event,
    HandlerRef,
    ModuleStore,
    ScheduleEntry,
    ScheduleSync,
    StoredModule,
    Subscription,
    SubscriptionSync,
)
from mcpdo.sandbox.types import LogEntry
from mcpdo.schedules import parse_schedule
from mcpdo.sdk.events import authorize_delivery
from mcpdo.sdk.policy import authorize
from mcpdo.timeparse import format_iso, utc_now

# How much module text (source and code) the versions a process ran last stay in memory for its deliveries.
VERSION_CACHE_CHARS = 4_000_000


class ModuleVersions:
    """Stored module versions by (tenant, id, version), the ones read last kept in memory: a saved version
    never changes (every ModuleStore refuses to save one twice), so each delivery need not read its code
    again (a table read per delivery on AWS)."""

    def __init__(self, store: ModuleStore, max_chars: int = VERSION_CACHE_CHARS) -> None:
        self._store = store
        self._max_chars = max_chars
        self._kept: OrderedDict[tuple[str, str, int], StoredModule] = OrderedDict()
        self._chars = 0

    async def get(self, tenant: str, id: str, version: int) -> StoredModule | None:
        """Version `version` of module `id` in `tenant`, or None when it is not stored."""
        key = (tenant, id, version)
        module = self._kept.get(key)
        if module is not None:
            self._kept.move_to_end(key)
            return module
        module = await self._store.get(tenant, id, version)
        if module is not None and key not in self._kept:
            self._kept[key] = module
            self._chars += _size(module)
            while self._chars > self._max_chars and self._kept:
                _, dropped = self._kept.popitem(last=False)
                self._chars -= _size(dropped)
        return module


def _size(module: StoredModule) -> int:
    return len(module.source) + len(module.code)


class ModuleService:
    """Registers MDXLD modules for a caller and resolves `import` specifiers to stored modules."""

    def __init__(
        self,
        store: ModuleStore,
        subscriptions: SubscriptionSync,
        schedules: ScheduleSync,
        executor: Executor,
        default_context: str,
        current_owner: Callable[[Identity], Awaitable[Identity | None]],
    ) -> None:
        self._store = store
        self._versions = ModuleVersions(store)
        self._subscriptions = subscriptions
        self._schedules = schedules
        self._executor = executor
        self._default_context = default_context
        self._current_owner = current_owner

    async def register(self, text: str, identity: Identity) -> tuple[dict[str, Any], StoredModule]:
        """The summary value `{ id, type, version, handlers, schedules, exports }`, and the stored module."""
        if identity.is_anonymous:
            raise AuthenticationRequired()
        parsed = parse_module(text, self._default_context)
        authorize(identity, "register", parsed.type or "Module")
        code = without_ui_imports(parsed)
        # Evaluate before persisting: a module whose code fails registers nothing and changes nothing.
        outcome = await self._executor.evaluate_module(code, identity, module_id=parsed.id)
        version = await self._store.next_version(identity.tenant, parsed.id)
        subscriptions = [
            Subscription(HandlerRef(identity.tenant, parsed.id, version, index), pattern)
            for pattern, index in outcome.registrations.handlers
        ]
        schedules = [
            ScheduleEntry(HandlerRef(identity.tenant, parsed.id, version, index), schedule)
            for schedule, index in outcome.registrations.schedules
        ]
        module = StoredModule(
            tenant=identity.tenant,
            id=parsed.id,
            version=version,
            type=parsed.type,
            source=text,
            code=code,
            owner=owner_of(identity),
            exports=tuple(outcome.exports),
            metadata=dict(parsed.data),
            created_at=format_iso(utc_now()),
        )
        check_handlers(module, subscriptions, schedules)
        await self._store.save(module)
        await self._subscriptions.sync(module, subscriptions)
        await self._schedules.sync(module, schedules)
        now = utc_now()
        summary = {
            "id": parsed.id,
            "type": parsed.type,
            "version": version,
            "handlers": [{"event": s.pattern, "id": s.handler.handler_id} for s in subscriptions],
            "schedules": [
                {
                    "cron": parse_schedule(s.schedule).canonical,
                    "id": s.handler.handler_id,
                    "next": format_iso(parse_schedule(s.schedule).next_after(now)),
                }
                for s in schedules
            ],
            "exports": list(outcome.exports),
        }
        return summary, module

    async def invoke(self, handler: HandlerRef, event: Event) -> HandlerOutcome:
        """Run one delivery: the handler of the module version it was published to, as the module's owner."""
        module = await self._versions.get(handler.tenant, handler.module_id, handler.version)
        if module is None:
            raise HandlerFailed(f"Module {handler.module_id} version {handler.version} no longer exists")
        registered_by = identity_of(module.owner)
        owner = await self._current_owner(registered_by)
        if owner is None:
            # Revoking a key also stops what it registered: a leaked key must not keep acting through handlers.
            credential = "API key" if registered_by.auth_type == "apiKey" else "a token of"
            raise HandlerFailed(
                f"Module {module.id} was registered with {credential} {registered_by.id}, which has been "
                f"revoked or has expired: register the module again with a valid key",
                retryable=False,
            )
        try:
            authorize_delivery(owner, event.type)
        except McpdoError as exc:
            # The deployment's roles changed under the module: another attempt would be refused alike.
            text = f"{exc.text} (module {module.id}, registered by {registered_by.id})"
            raise HandlerFailed(text, retryable=False) from exc
        try:
            result = await self._executor.invoke_handler(
                module, owner, handler.index, (event.data, event.to_json()), parent=event
            )
        except McpdoError as exc:
            raise HandlerFailed(exc.text, logs_json(exc.logs)) from exc
        return HandlerOutcome(logs=logs_json(result.logs), value=result.value)


def check_handlers(module: StoredModule, subscriptions: list[Subscription], schedules: list[ScheduleEntry]) -> None:
    """Refuse handlers that do not belong to `module`'s version, share an index, or do not parse."""
    for sub in subscriptions:
        _check_handler(module, sub.handler, "subscription")
        validate_pattern(sub.pattern)
    for entry in schedules:
        _check_handler(module, entry.handler, "schedule")
        parse_schedule(entry.schedule)
    for what, indexes in (
        ("subscription", [s.handler.index for s in subscriptions]),
        ("schedule", [e.handler.index for e in schedules]),
    ):
        if len(set(indexes)) != len(indexes):
            raise InputError(f"Module {module.id}: two {what}s share a handler index")


def _check_handler(module: StoredModule, ref: HandlerRef, what: str) -> None:
    if (ref.tenant, ref.module_id, ref.version) != (module.tenant, module.id, module.version):
        raise InputError(
            f"A {what} of module {module.id} version {module.version} (tenant {module.tenant}) points at "
            f"{ref.module_id} version {ref.version} (tenant {ref.tenant})"
        )


async def resolve_import(
    store: ModuleStore, default_context: str, specifier: str, identity: Identity, importer_id: str | None
) -> StoredModule:
    """The latest stored module an `import ... from specifier` names, in the caller's tenant.

    Exact `$id` first; a path that matches no id exactly falls back to the one module whose `$id` has that
    path under any context (scripts have no `$context` of their own).
    """
    target = resolve_specifier(specifier, importer_id=importer_id, context=default_context)
    module = await store.get(identity.tenant, target)
    if module is not None:
        return module
    path = urlparse(target).path
    candidates = [m for m in await store.list(identity.tenant) if urlparse(m.id).path == path]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(sorted(m.id for m in candidates))
        raise InputError(
            f"Cannot import {quote(specifier)}: several modules have that path ({names}); import one by its full $id"
        )
    raise NotFound(f"Cannot import {quote(specifier)}: no module is registered with $id {target[:200]}")


def resolve_specifier(specifier: str, *, importer_id: str | None, context: str) -> str:
    """URLs as they are; `/x` under the context (as `$id` paths are); `./x` against the importer's `$id`."""
    if not isinstance(specifier, str) or not specifier.strip():
        raise InputError("import: the module specifier must be a non-empty string")
    if urlparse(specifier).scheme in ("http", "https"):
        return specifier.rstrip("/")
    if specifier.startswith("/"):
        return context.rstrip("/") + "/" + specifier.lstrip("/").rstrip("/")
    if specifier.startswith(("./", "../")):
        return urljoin(importer_id or context.rstrip("/") + "/", specifier).rstrip("/")
    raise InputError(
        f"Cannot import '{specifier}': only stored modules can be imported, by $id path "
        f"('/workflows/x'), relative path ('./x') or URL"
    )


def without_ui_imports(parsed: ParsedModule) -> str:
    """The module's code with the imports that only feed JSX components blanked (lines kept).

    `import { OrderStatus } from './components'` used only as `<OrderStatus />` is UI: components are kept,
    never executed on the server, so their imports are not resolved either.
    """
    lines = parsed.code.split("\n")
    components = {component.name for component in parsed.components}
    for item in parsed.imports:
        names = [binding.local for binding in item.bindings]
        if not names or not all(name in components for name in names):
            continue
        span = _statement_span(lines, item.line - 1, item.specifier)
        rest = "\n".join(line for index, line in enumerate(lines) if index not in span)
        if any(re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", rest) for name in names):
            continue
        for index in span:
            lines[index] = ""
    return "\n".join(lines)


def _statement_span(lines: list[str], first: int, specifier: str) -> range:
    last = first
    while last < len(lines) - 1 and specifier not in lines[last]:
        last += 1
    return range(first, last + 1)


def logs_json(logs: tuple[LogEntry, ...]) -> tuple[dict[str, Any], ...]:
    return tuple({"level": e.level, "message": e.message, "timestamp": e.timestamp} for e in logs)


def owner_of(identity: Identity) -> dict[str, Any]:
    """The identity a module's handlers will run as, kept with the module version."""
    return {
        "id": identity.id,
        "tenant": identity.tenant,
        "authType": identity.auth_type,
        "roles": list(identity.roles),
        "scopes": list(identity.scopes),
        "name": identity.name,
        "email": identity.email,
        # A token's handlers stop when it expires (a key's when it is revoked or expires: looked up each time).
        "expiresAt": identity.expires_at if identity.auth_type == "oauth" else None,
    }


def identity_of(owner: dict[str, Any]) -> Identity:
    """The stored owner back as an Identity (handlers run with the registering caller's rights)."""
    return Identity.for_roles(
        id=owner["id"],
        tenant=owner["tenant"],
        auth_type=owner["authType"],
        roles=tuple(owner["roles"]),
        scopes=tuple(owner.get("scopes", ())),
        name=owner.get("name"),
        email=owner.get("email"),
        expires_at=owner.get("expiresAt"),
    )
