"""The `do` tool: its description, input checks, docs requests, the module + script flow, result shapes."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from mcpdo.docs import DOC_NAMES, load_doc
from mcpdo.errors import InputError, McpdoError
from mcpdo.identity import Identity
from mcpdo.inputs import quote, text_problem
from mcpdo.ports import StoredModule
from mcpdo.sandbox.types import ExecutionResult, LogEntry
from mcpdo.sdk.args import describe

TOOL_NAME = "do"

SIGNATURES = """\
$: Proxy<$.Subject.predicate.Object>  // $.Person({ name }) -> { $type: 'Person', name }; $.Order.created is an event
db: { list<T>(type, { where?, sort?, limit?, offset?, cursor? }): T[]; get<T>(type, id): T | null;
      create<T>(type, data): T; update<T>(type, id, data, { ifVersion? }?): T; delete(type, id): boolean;
      relate(from, rel, to): Edge; related<T>(from, rel?, 'out' | 'in' | 'both'): T[] }
ai: { generate<T>({ prompt, schema?, model?, temperature?, system?, maxTokens? }): T; embed(text): number[];
      batch(requests): Array<T | { error }> }
api: { fetch(url, { method?, headers?, body? }?): any; proxy(service, path, { method?, headers?, body? }?): any }
on: <Event>(pattern, handler: (data, event) => Promise<void>) => void   // 'Order.created' | 'Order.*' | '*.created'
send: <Event>(pattern, data) => Promise<{ id }>
every: (schedule, handler) => void   // '0 9 * * *', 'TZ=Europe/Paris 0 9 * * *', '5m', 'hourly'
user: { current(): User | null; session(): Session; can(action, resource): boolean }"""

DESCRIPTION = f"""\
Execute TypeScript against sdk.do modules. Semantic Business-as-Code primitives.

`script` runs now in a sandbox and returns the value of its final expression (top-level await works).
`module` is MDXLD (YAML frontmatter with $type, $id, $context; markdown; code) that registers persistent
`on` handlers and `every` schedules. Pass `script: '<name>.md'` ({", ".join(DOC_NAMES)}) for full docs.
Anonymous callers are read-only.

{SIGNATURES}"""

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "script": {
            "type": "string",
            "description": "TypeScript code to execute, or '{module}.md' for documentation",
        },
        "module": {
            "type": "string",
            "description": (
                "MDXLD module definition with yaml frontmatter ($type, $id, $context), markdown content, "
                "and MDX/JSX components. Defines persistent entities like Workflow, Agent, or WebSite."
            ),
        },
    },
    "additionalProperties": False,
}

TOOL_TITLE = "Run Business-as-Code"

_LOG_ENTRY = {
    "type": "object",
    "properties": {
        "level": {"type": "string", "enum": ["log", "info", "warn", "error", "debug"]},
        "message": {"type": "string"},
        "timestamp": {"type": "string"},
    },
    "required": ["level", "message", "timestamp"],
}

# What `structuredContent` holds, on success and on error alike: clients that read it can rely on this.
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "value": {"description": "The final expression's value as JSON; absent when it is undefined"},
        "logs": {"type": "array", "items": _LOG_ENTRY, "description": "Console output, in order"},
        "durationMs": {"type": "number", "description": "How long the script ran"},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "module": {"type": "object", "description": "The registered module: { id, type, version, handlers, ... }"},
        "usage": {"type": "object", "description": "Model tokens the execution spent, by model"},
        "doc": {"type": "string", "description": "For a documentation request: the page's name"},
        "error": {"type": "string", "description": "On error results: the error's text"},
    },
    "required": ["logs"],
}

_DOC_REQUEST = re.compile(r"^[\w$]+\.md$")

ScriptRunner = Callable[[str, Identity, tuple[StoredModule, ...]], Awaitable[ExecutionResult]]
ModuleRegistrar = Callable[[str, Identity], Awaitable[tuple[dict[str, Any], StoredModule]]]


@dataclass(frozen=True)
class ToolResult:
    """A `tools/call` result without the transport: text items, structured content, error flag."""

    texts: list[str]
    structured: dict[str, Any] | None = None
    is_error: bool = False
    error_kind: str | None = None
    """The error's class (`ScriptRuntimeError`, `LimitExceeded`, ...), for logs and metrics."""
    kind: str = "invalid"
    """What the call asked for: `script`, `module` (with or without a script), `docs`; `invalid` arguments."""


class DoTool:
    """Validates a call, routes docs requests, registers a module, runs a script, and shapes the result."""

    def __init__(self, run_script: ScriptRunner, register_module: ModuleRegistrar | None = None) -> None:
        self._run_script = run_script
        self._register_module = register_module

    async def call(self, arguments: Any, identity: Identity) -> ToolResult:
        """Never raises for anything the caller did: every failure is an error result."""
        kind = "invalid"
        try:
            script, module_text = parse_arguments(arguments)
            kind = "module" if module_text is not None else "docs" if is_doc_request(script or "") else "script"
            result = await self._answer(script, module_text, identity)
        except McpdoError as exc:
            result = error_result(exc)
        return replace(result, kind=kind)

    async def _answer(self, script: str | None, module_text: str | None, identity: Identity) -> ToolResult:
        if script is not None and module_text is None:
            doc = _doc_request(script)
            if doc is not None:
                return ToolResult(texts=[doc], structured={"doc": script.strip(), "logs": [], "durationMs": 0})
        preload: tuple[StoredModule, ...] = ()
        summary: dict[str, Any] | None = None
        if module_text is not None:
            if self._register_module is None:
                raise InputError("Modules are not enabled on this deployment")
            summary, module = await self._register_module(module_text, identity)
            preload = (module,)
            if script is None:
                return value_result(summary, (), 0.0)
        assert script is not None
        result = await self._run_script(script, identity, preload)
        shaped = value_result(
            result.value, result.logs, result.duration_ms, undefined=result.is_undefined, warnings=result.warnings
        )
        if shaped.structured is not None:
            if summary is not None:
                shaped.structured["module"] = summary
            if result.usage is not None:
                shaped.structured["usage"] = dict(result.usage)
        return shaped


def parse_arguments(arguments: Any) -> tuple[str | None, str | None]:
    """(script, module) after checking shapes; at least one of them is present."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise InputError("The do tool's arguments must be an object with 'script' and/or 'module'")
    unknown = sorted(set(arguments) - {"script", "module"})
    if unknown:
        raise InputError(f"Unknown argument {quote(unknown[0])}: the do tool takes 'script' and/or 'module'")
    values: dict[str, str | None] = {}
    for name in ("script", "module"):
        value = arguments.get(name)
        if value is not None and not isinstance(value, str):
            raise InputError(f"'{name}' must be a string, got {describe(value)}")
        problem = None if value is None else text_problem(value, name=False)
        if problem is not None:
            # JSON can carry a lone surrogate (`"\ud800"`); no store or runtime could keep such text intact.
            raise InputError(f"'{name}' contains {problem}")
        values[name] = value if value and value.strip() else None
    if values["script"] is None and values["module"] is None:
        raise InputError("At least one of 'script' or 'module' is required")
    return values["script"], values["module"]


def is_doc_request(script: str) -> bool:
    """A script that is exactly `<name>.md` asks for documentation."""
    return _DOC_REQUEST.match(script.strip()) is not None


def _doc_request(script: str) -> str | None:
    name = script.strip()
    if not is_doc_request(name):
        return None
    try:
        return load_doc(name)
    except KeyError:
        raise InputError(f"Unknown documentation '{name}'. Available: {', '.join(DOC_NAMES)}") from None


def value_result(
    value: Any,
    logs: tuple[LogEntry, ...],
    duration_ms: float,
    *,
    undefined: bool = False,
    warnings: tuple[str, ...] = (),
) -> ToolResult:
    """Success: the pretty JSON of the value, then captured console output, plus structured content."""
    text = "undefined" if undefined else json.dumps(value, indent=2, ensure_ascii=False)
    texts = [text]
    if logs:
        texts.append(format_logs(logs))
    structured: dict[str, Any] = {"logs": [_log_json(entry) for entry in logs], "durationMs": round(duration_ms, 3)}
    if not undefined:
        structured = {"value": value, **structured}
    if warnings:
        structured["warnings"] = list(warnings)
        texts.append("\n".join(f"Warning: {w}" for w in warnings))
    return ToolResult(texts=texts, structured=structured)


def error_result(exc: McpdoError) -> ToolResult:
    """Failure: one text item with the exact error text; logs captured before the failure stay visible."""
    logs: tuple[LogEntry, ...] = exc.logs
    structured: dict[str, Any] = {"error": exc.text, "logs": [_log_json(entry) for entry in logs]}
    return ToolResult(texts=[exc.text], structured=structured, is_error=True, error_kind=type(exc).__name__)


def format_logs(logs: tuple[LogEntry, ...]) -> str:
    """Console output as a reader expects it: plain for log/info, tagged for the other levels."""
    lines = []
    for entry in logs:
        tag = "" if entry.level in ("log", "info") else f"[{entry.level}] "
        lines.append(tag + entry.message)
    return "\n".join(lines)


def _log_json(entry: LogEntry) -> dict[str, str]:
    return {"level": entry.level, "message": entry.message, "timestamp": entry.timestamp}
