"""What the core hands the sandbox and what it gets back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mcpdo.errors import LimitExceeded
from mcpdo.inputs import MAX_VALUE_DEPTH

# The host side of every SDK call: (name such as "db.create", JSON arguments) -> JSON value.
# It raises an McpdoError subclass to make the call throw inside the script with that message.
HostCall = Callable[[str, list[Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Limits:
    """Per-execution limits; each one has its own error."""

    timeout_ms: int = 10_000
    memory_bytes: int = 128 * 1024 * 1024
    max_script_bytes: int = 100 * 1024
    max_result_bytes: int = 1024 * 1024
    max_sdk_calls: int = 1_000
    max_log_bytes: int = 256 * 1024
    # Every value crossing the bridge (call arguments, results): its JSON size and its nesting of arrays and
    # objects, checked in the runner before the host decodes anything; the depth is the record data rule's.
    max_call_bytes: int = 8 * 1024 * 1024
    max_value_depth: int = MAX_VALUE_DEPTH


def check_code_size(code: str, limits: Limits, what: str) -> None:
    """The one size rule for code the sandbox runs (scripts, module code, preloads, imports)."""
    size = len(code.encode("utf-8", errors="surrogatepass"))
    if size > limits.max_script_bytes:
        limit = limits.max_script_bytes
        raise LimitExceeded("script", f"{what} too large: {size} bytes exceeds the {limit}-byte limit")


@dataclass(frozen=True)
class ExecutionRequest:
    """One run of caller code in a fresh sandbox."""

    code: str
    limits: Limits
    # Statically refuse write calls before running (anonymous callers).
    readonly: bool
    # What `user.current()`, `user.session()` and `user.can()` answer, synchronously, in the guest.
    user: dict[str, Any] = field(default_factory=dict)
    # "module": ESM `import`/`export` allowed, exported names reported; the code is module text, lines aligned.
    kind: Literal["script", "module"] = "script"
    # Module code (the `$id` and code of stored modules) evaluated first; their exports become globals.
    preload: tuple[ModuleSource, ...] = ()
    # After a module's top level ran, call its handler number `index` (registration order of on/every).
    invoke: Invocation | None = None
    # Executions with the same non-None key may share a WebAssembly instance (its linear memory), one after
    # another, each still in a fresh QuickJS runtime and context; give one key per caller identity. None: always
    # a fresh instance.
    reuse_key: str | None = None


@dataclass(frozen=True)
class ModuleSource:
    """A stored module's code, as `import` and `preload` hand it to the runtime."""

    id: str
    code: str


@dataclass(frozen=True)
class Invocation:
    """Which registered handler to call, with which JSON arguments (`[data, event]` for `on`)."""

    index: int
    args: tuple[Any, ...]


@dataclass(frozen=True)
class LogEntry:
    level: str
    message: str
    timestamp: str


@dataclass(frozen=True)
class ExecutionResult:
    """A successful run: the JSON value of the final expression (or undefined) and the captured logs."""

    value: Any
    is_undefined: bool
    logs: tuple[LogEntry, ...]
    duration_ms: float
    warnings: tuple[str, ...] = ()
    # Names a module exported (kind "module" and preloads), in declaration order.
    exports: tuple[str, ...] = ()
    # Which WebAssembly instance ran it ("<pid>.<n>"): only from a sandbox started with debug=True.
    instance: str | None = None
    # What `$.Type(props)` calls were given, (type name, own keys), distinct and bounded: for hints on properties
    # a schema.org type does not have (mcpdo.vocabulary).
    constructed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Tokens the execution's model calls used ({inputTokens, outputTokens, modelCalls}); None when it made none.
    usage: Mapping[str, int] | None = None
