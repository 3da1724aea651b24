"""The JSON-lines protocol spoken with the Node runner (layers/runtime/runner.mjs)."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
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
    policy_error,
)
from mcpdo.sandbox.types import ExecutionRequest, Limits, LogEntry

CRASHED_MESSAGE = "The sandbox runtime crashed and was restarted; the execution was lost"


class ProtocolViolation(Exception):
    """The runner wrote something that is not a protocol line."""


def exec_line(exec_id: int, request: ExecutionRequest) -> bytes:
    """The line that starts one execution."""
    msg: dict[str, Any] = {
        "type": "exec",
        "id": exec_id,
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


def reply_ok_line(call_id: int, value: Any) -> bytes:
    """A successful host-call reply; raises TypeError/ValueError when value is not JSON."""
    return _line({"type": "reply", "id": call_id, "ok": True, "value": value})


def reply_error_line(call_id: int, message: str, name: str | None = None) -> bytes:
    """A failed host-call reply: the guest's promise rejects with an Error carrying message (and name)."""
    msg: dict[str, Any] = {"type": "reply", "id": call_id, "ok": False, "error": message}
    if name:
        msg["name"] = name
    return _line(msg)


def _line(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode()


def parse_line(raw: bytes) -> dict[str, Any]:
    """One runner line as a dict; anything else is a ProtocolViolation."""
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolViolation("runner wrote a line that is not JSON") from exc
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolViolation("runner wrote a message without a type")
    return msg


def parse_logs(raw: Any) -> tuple[LogEntry, ...]:
    """Captured console entries from a result message."""
    if not isinstance(raw, list):
        return ()
    out: list[LogEntry] = []
    for item in raw:
        if isinstance(item, dict):
            out.append(LogEntry(level=str(item.get("level", "log")), message=str(item.get("message", "")),
                                timestamp=str(item.get("timestamp", ""))))
    return tuple(out)


def parse_exports(raw: Any) -> tuple[str, ...]:
    """Exported names from a result message."""
    if not isinstance(raw, list):
        return ()
    return tuple(str(name) for name in raw)


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def error_from_result(error: Any, request: ExecutionRequest) -> McpdoError:
    """Map the runner's error description to the product's error type."""
    if not isinstance(error, dict):
        return SandboxCrashed(CRASHED_MESSAGE)
    kind = error.get("kind")
    message = str(error.get("message", ""))
    if kind == "syntax":
        return ScriptSyntaxError(message, _opt_int(error.get("line")), _opt_int(error.get("column")))
    if kind == "runtime":
        policy = policy_error(str(error.get("name") or ""), message)
        if policy is not None:
            # An SDK call the host refused, uncaught: the exact policy text, as SPEC §1 gives it.
            return policy
        return ScriptRuntimeError(message, _opt_int(error.get("line")), _opt_int(error.get("column")),
                                  str(error.get("name") or "Error"))
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
