"""Running caller code: scripts, a module's registration pass, and the handlers of stored modules.

Each run gets the limits of its caller's tier, a host SDK bound to that caller, and a fresh sandbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from mcpdo.audit import Auditor, AuditReader
from mcpdo.identity import Identity, anonymous_source
from mcpdo.ports import EntityStore, Event, ModelProvider, SecretStore, StoredModule, WebClient
from mcpdo.sandbox.admission import Caller
from mcpdo.sandbox.types import (
    ExecutionRequest,
    ExecutionResult,
    HostCall,
    Invocation,
    ModuleSource,
    check_code_size,
)
from mcpdo.sdk.ai import AiApi, log_usage
from mcpdo.sdk.events import EventContext, EventsApi, Publisher, Registrations
from mcpdo.sdk.fetch import FetchApi
from mcpdo.sdk.host import Host
from mcpdo.sdk.policy import authorize
from mcpdo.sdk.proxy import ProxyApi
from mcpdo.sdk.web import ExecutionWeb
from mcpdo.services import ServiceRegistry
from mcpdo.settings import Settings
from mcpdo.timeparse import utc_now
from mcpdo.vocabulary import Vocabulary

# Resolves `import ... from specifier` for a caller: (specifier, identity, importer's $id) -> stored module.
ImportResolver = Callable[[str, Identity, str | None], Awaitable[StoredModule]]


class SandboxPort(Protocol):
    """What the executor needs from the sandbox (the runner pool implements it)."""

    async def execute(
        self, request: ExecutionRequest, host: HostCall, *, caller: Caller | None = None
    ) -> ExecutionResult: ...


@dataclass(frozen=True)
class Outside:
    """What scripts reach beyond the store: the model provider (None: not configured), the web, the
    integrated services with their secrets, and the schema.org vocabulary that shapes `ai` output."""

    models: ModelProvider | None
    web: WebClient
    services: ServiceRegistry
    secrets: SecretStore
    vocabulary: Vocabulary


@dataclass(frozen=True)
class ModuleEvaluation:
    """What a module's registration pass declared."""

    registrations: Registrations
    exports: tuple[str, ...]


class Executor:
    """Runs code for identities. One instance per process, shared by every transport and the worker."""

    def __init__(
        self,
        settings: Settings,
        sandbox: SandboxPort,
        store: EntityStore,
        publish: Publisher,
        resolve_import: ImportResolver,
        outside: Outside,
        auditor: Auditor | None = None,
        audit_reader: AuditReader | None = None,
    ) -> None:
        self._settings = settings
        self._auditor = auditor
        self._audit_reader = audit_reader
        self._outside = outside
        self._sandbox = sandbox
        self._store = store
        self._publish = publish
        self._resolve_import = resolve_import

    async def run_script(
        self, code: str, identity: Identity, preload: tuple[StoredModule, ...] = ()
    ) -> ExecutionResult:
        """Run `code` now as `identity`; `preload` modules' exports are globals for it."""
        source = f"script:{identity.id or 'anonymous'}"
        events = EventsApi(identity, EventContext("script", source=source), self._publish)
        request = self._request(
            code, identity, kind="script", preload=tuple(ModuleSource(m.id, m.code) for m in preload)
        )
        result = await self._execute(request, identity, events, importer=None, who=source, kind="script")
        hints = self._outside.vocabulary.unknown_properties_warnings(result.constructed)
        return replace(result, warnings=result.warnings + events.warnings + hints)

    async def evaluate_module(self, code: str, identity: Identity, *, module_id: str) -> ModuleEvaluation:
        """Run a module's top level once, collecting its `on`/`every` registrations and exports."""
        events = EventsApi(identity, EventContext("register", source=module_id), self._publish)
        request = self._request(code, identity, kind="module")
        result = await self._execute(request, identity, events, importer=module_id, who=module_id, kind="module")
        return ModuleEvaluation(registrations=events.registrations, exports=result.exports)

    async def invoke_handler(
        self, module: StoredModule, owner: Identity, index: int, args: tuple[Any, ...], *, parent: Event
    ) -> ExecutionResult:
        """Call handler `index` of a stored module as its owner; events it sends get delivery-derived ids."""
        context = EventContext(
            "handler", source=module.id, parent=parent, delivery_key=f"{parent.id}/{module.id}#{index}"
        )
        events = EventsApi(owner, context, self._publish)
        request = replace(self._request(module.code, owner, kind="module"), invoke=Invocation(index, args))
        # A handler counts against its owner's key, like the owner's own calls.
        return await self._execute(
            request, owner, events, importer=module.id, who=f"{module.id}#{index}", kind="handler"
        )

    async def _execute(
        self,
        request: ExecutionRequest,
        identity: Identity,
        events: EventsApi,
        *,
        importer: str | None,
        who: str,
        kind: str,
    ) -> ExecutionResult:
        """One execution with its host; the tokens it spent on models are logged and the execution is audited
        even when it fails."""
        ai = AiApi(identity, self._outside.models, self._settings.ai, self._outside.vocabulary)
        host = self._host(identity, events, importer, ai)
        started, error = utc_now(), None
        try:
            result = await self._sandbox.execute(request, host, caller=caller_of(identity))
        except BaseException as exc:
            error = exc
            raise
        finally:
            usage = ai.report()
            if usage is not None:
                log_usage(usage, who)
            if self._auditor is not None:
                await self._auditor.record(
                    identity, kind=kind, code=request.code, started=started, error=error, calls=host.calls
                )
        return result if usage is None else replace(result, usage=usage)

    def _request(
        self, code: str, identity: Identity, *, kind: str, preload: tuple[ModuleSource, ...] = ()
    ) -> ExecutionRequest:
        limits = self._settings.limits(anonymous=identity.is_anonymous)
        return ExecutionRequest(
            code=code,
            limits=limits,
            readonly=identity.is_anonymous,
            user=user_view(identity),
            kind="module" if kind == "module" else "script",
            preload=preload,
            reuse_key=reuse_key(identity),
        )

    def _host(self, identity: Identity, events: EventsApi, importer: str | None, ai: AiApi) -> Host:
        host = Host(identity, self._store, self._audit_reader)
        outside = self._outside
        host.route("ai.generate", ai.generate)
        host.route("ai.embed", ai.embed)
        host.route("ai.batch", ai.batch)
        web = ExecutionWeb(outside.web)
        host.route("api.fetch", FetchApi(identity, web).fetch)
        host.route("api.proxy", ProxyApi(identity, outside.services, outside.secrets, web).proxy)
        host.route("send", events.send)
        host.route("on", events.on)
        host.route("every", events.every)

        async def load(args: list[Any]) -> Any:
            authorize(identity, "read", "Module")
            specifier = args[0] if args else None
            module = await self._resolve_import(str(specifier), identity, importer)
            check_code_size(module.code, self._settings.limits(anonymous=identity.is_anonymous), f"Module {module.id}")
            return {"id": module.id, "code": module.code}

        host.route("import", load)
        return host


def reuse_key(identity: Identity) -> str | None:
    """Executions with the same key may run one after another in one WebAssembly instance (each on a fresh
    runtime). Only one caller's own executions share: anonymous callers are many people, so never."""
    return None if identity.is_anonymous else _identity_key(identity)


def caller_of(identity: Identity) -> Caller:
    """Whom an execution counts against in the sandbox pool: its key, or its anonymous source address.

    Anonymous calls without an address (stdio, `mcpdo run`) share one "local" source: still anonymous, so
    still within the anonymous share of the pool.
    """
    if identity.is_anonymous:
        return Caller.anonymous(anonymous_source(identity.source or "local"))
    return Caller.key(_identity_key(identity))


def _identity_key(identity: Identity) -> str:
    """One authenticated caller, the same across its executions: tenant, kind of credential, subject."""
    return f"{identity.tenant}\x1f{identity.auth_type}\x1f{identity.id}"


def user_view(identity: Identity) -> dict[str, object]:
    """What `user.current()`, `user.session()` and `user.can()` answer inside the sandbox."""
    return {
        "current": identity.current(),
        "session": identity.session(),
        "grants": [list(grant) for grant in identity.grants],
    }
