"""The sandbox: caller TypeScript runs in a fresh QuickJS runtime and context inside warm Node processes."""

from mcpdo.sandbox.admission import Caller, Caps
from mcpdo.sandbox.pool import Sandbox
from mcpdo.sandbox.types import ExecutionRequest, ExecutionResult, HostCall, Limits, LogEntry

__all__ = ["Caller", "Caps", "ExecutionRequest", "ExecutionResult", "HostCall", "Limits", "LogEntry", "Sandbox"]
