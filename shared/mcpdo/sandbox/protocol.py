"""The JSON-lines protocol spoken with the Node runner (layers/runtime/runner.mjs)."""

from __future__ import annotations

import functools
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from mcpdo.errors import (
    ExecutionTimeout,
    InputError,
    LimitExceeded,
    McpdoError,
    ReadonlyViolation,
    SandboxCrashed,
    ScriptRuntimeError,
    ScriptSyntaxError,
)
from mcpdo.sandbox.types import ExecutionRequest, Limits, LogEntry

CRASHED_MESSAGE = "The sandbox runtime crashed and was restarted; the execution was lost"
_NONCE_BYTES = 16


class ProtocolViolation(Exception):
    """The runner wrote something it should not have: it is treated as compromised."""


def compromised_message(reason: str) -> str:
    """What the caller of an execution whose runner broke the protocol is told."""
    return f"The sandbox runner broke the protocol ({reason}); it was replaced and this execution was stopped"


def new_nonce() -> str:
    """A per-execution secret the runner echoes in every message; guest code never sees it."""
    return secrets.token_hex(_NONCE_BYTES)


def exec_line(exec_id: int, nonce: str, request: ExecutionRequest) -> bytes:
    """The line that starts one execution."""
    msg: dict[str, Any] = {
        "type": "exec",
        "id": exec_id,
        "nonce": nonce,
        "code": request.code,
        "readonly": request.readonly,
        "user": request.user,
        "limits": _limits_dict(request.limits),
        "kind": request.kind,
    }
    if request.reuse_key is not None:
        msg["key"] = request.reuse_key
    if request.preload:
        msg["preload"] = [{"id": m.id, "code": m.code} for m in request.preload]
    if request.invoke is not None:
        msg["invoke"] = {"index": request.invoke.index, "args": list(request.invoke.args)}
    return _line(msg)


@functools.lru_cache(maxsize=64)
def _limits_dict(limits: Limits) -> dict[str, int]:
    return asdict(limits)


def reply_ok_line(exec_id: int, call_id: int, value: Any) -> bytes:
    """A successful host-call reply; raises TypeError/ValueError when value is not JSON."""
    return _line({"type": "reply", "exec": exec_id, "id": call_id, "ok": True, "value": value})


def reply_error_line(exec_id: int, call_id: int, message: str, name: str | None = None) -> bytes:
    """A failed host-call reply: the guest's promise rejects with an Error carrying message (and name)."""
    msg: dict[str, Any] = {"type": "reply", "exec": exec_id, "id": call_id, "ok": False, "error": message}
    if name:
        msg["name"] = name
    return _line(msg)


def _line(msg: dict[str, Any]) -> bytes:
    # ASCII escapes: any str (lone surrogates included) encodes, and round-trips exactly through the runner.
    return (json.dumps(msg, allow_nan=False, separators=(",", ":")) + "\n").encode("ascii")


def parse_line(raw: bytes) -> dict[str, Any]:
    """One runner line as a dict; anything else is a ProtocolViolation."""
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolViolation("a line that is not JSON") from exc
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolViolation("a message without a type")
    return msg


@dataclass(frozen=True)
class CallMessage:
    """The guest asked the host for one SDK call."""

    id: int
    name: str
    args: list[Any]


@dataclass(frozen=True)
class ResultMessage:
    """The execution ended; `body` is the runner's result message."""

    body: dict[str, Any]


class ExecutionChannel:
    """What one execution may read from its runner: its own calls, with rising ids, then its one result.

    Every other line (another execution's id, a wrong nonce, an unknown type, a repeated call id, a line after
    the result) raises ProtocolViolation, and the caller replaces the runner.
    """

    def __init__(self, exec_id: int, nonce: str, max_calls: int) -> None:
        self.exec_id = exec_id
        self.nonce = nonce
        self.max_calls = max_calls
        self.calls = 0
        self._last_call_id = 0
        self.finished = False

    def accept(self, raw: bytes) -> CallMessage | ResultMessage:
        """Check one line from the runner and say what it is."""
        if self.finished:
            raise ProtocolViolation("a message after the result")
        msg = parse_line(raw)
        if msg.get("exec") != self.exec_id or type(msg.get("exec")) is not int:
            raise ProtocolViolation("a message addressed to another execution")
        nonce = msg.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(
            nonce.encode("utf-8", "surrogatepass"), self.nonce.encode("ascii")
        ):
            raise ProtocolViolation("a message without this execution's nonce")
        kind = msg["type"]
        if kind == "call":
            return self._call(msg)
        if kind == "result":
            if not isinstance(msg.get("ok"), bool):
                raise ProtocolViolation("a result without an outcome")
            self.finished = True
            return ResultMessage(msg)
        raise ProtocolViolation(f"an unexpected {kind!r} message")

    def _call(self, msg: dict[str, Any]) -> CallMessage:
        call_id, name, args = msg.get("id"), msg.get("name"), msg.get("args")
        if type(call_id) is not int or call_id <= self._last_call_id:
            raise ProtocolViolation("a call id that is not new")
        if not isinstance(name, str) or not isinstance(args, list):
            raise ProtocolViolation("a call without a name and arguments")
        self.calls += 1
        if self.calls > self.max_calls:
            raise ProtocolViolation("more calls than the runner may make")
        self._last_call_id = call_id
        return CallMessage(call_id, name, args)


def parse_logs(raw: Any) -> tuple[LogEntry, ...]:
    """Captured console entries from a result message."""
    if not isinstance(raw, list):
        return ()
    out: list[LogEntry] = []
    for item in raw:
        if isinstance(item, dict):
            out.append(
                LogEntry(
                    level=str(item.get("level", "log")),
                    message=str(item.get("message", "")),
                    timestamp=str(item.get("timestamp", "")),
                )
            )
    return tuple(out)


# The runner's warnings are about the code (line-start hazards): a handful, each a sentence.
MAX_WARNINGS = 32
MAX_WARNING_CHARS = 500


def parse_warnings(raw: Any) -> tuple[str, ...]:
    """Warnings from a result message: strings, bounded in number and length."""
    if not isinstance(raw, list):
        return ()
    return tuple(item[:MAX_WARNING_CHARS] for item in raw[:MAX_WARNINGS] if isinstance(item, str))


def parse_exports(raw: Any) -> tuple[str, ...]:
    """Exported names from a result message."""
    if not isinstance(raw, list):
        return ()
    return tuple(str(name) for name in raw)


# The runner's bounds on `constructed` (layers/runtime/runner.mjs), applied again to what it sent.
MAX_CONSTRUCTED = 64
MAX_CONSTRUCTED_KEYS = 64
MAX_CONSTRUCTED_CHARS = 100


def parse_constructed(raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`$.Type(props)` records from a result message: `[[type, [key, ...]], ...]`; any other shape is skipped."""
    if not isinstance(raw, list):
        return ()
    out: list[tuple[str, tuple[str, ...]]] = []
    for item in raw[:MAX_CONSTRUCTED]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)):
            continue
        name, keys = item
        if not (isinstance(name, str) and len(name) <= MAX_CONSTRUCTED_CHARS and len(keys) <= MAX_CONSTRUCTED_KEYS):
            continue
        if all(isinstance(key, str) and len(key) <= MAX_CONSTRUCTED_CHARS for key in keys):
            out.append((name, tuple(keys)))
    return tuple(out)


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# The host's refusals during one execution, by the (name, message) the guest's error had: an uncaught one ends
# the execution as the very error the host raised.
Refusals = dict[tuple[str, str], McpdoError]


def error_from_result(error: Any, request: ExecutionRequest, refusals: Refusals | None = None) -> McpdoError:
    """Map the runner's error description to the product's error type."""
    if not isinstance(error, dict):
        return SandboxCrashed(CRASHED_MESSAGE)
    kind = error.get("kind")
    message = str(error.get("message", ""))
    if kind == "syntax":
        return ScriptSyntaxError(message, _opt_int(error.get("line")), _opt_int(error.get("column")))
    if kind == "runtime":
        refused = (refusals or {}).get((str(error.get("name") or ""), message))
        if refused is not None:
            # An SDK call the host refused, uncaught: the exact policy text, as SPEC §1 gives it.
            return refused
        return ScriptRuntimeError(
            message, _opt_int(error.get("line")), _opt_int(error.get("column")), str(error.get("name") or "Error")
        )
    if kind == "readonly":
        violations: list[tuple[str, int]] = []
        for item in error.get("violations") or []:
            if isinstance(item, list) and len(item) == 2:
                violations.append((str(item[0]), int(item[1])))
        return ReadonlyViolation(violations)
    if kind == "timeout":
        return ExecutionTimeout(request.limits.timeout_ms)
    if kind == "limit":
        return LimitExceeded(str(error.get("limit") or "unknown"), message)
    if kind == "input":
        return InputError(message)
    return SandboxCrashed(CRASHED_MESSAGE)
