"""One base error; each subclass knows the exact text a caller sees (mapped by type, never by message)."""

from __future__ import annotations

from typing import Any, ClassVar


class McpdoError(Exception):
    """Base of every error the product reports to a caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # What the failed execution logged before it failed (sandbox LogEntry items), shown with the error.
        self.logs: tuple[Any, ...] = ()

    @property
    def text(self) -> str:
        """The exact text shown to the caller in an error result."""
        return self.message


class InputError(McpdoError):
    """The tool's arguments (or an SDK call's arguments) are malformed."""


class ScriptRuntimeError(McpdoError):
    """The script threw; positions point into the caller's source."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None, name: str = "Error") -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.name = name

    @property
    def text(self) -> str:
        head = self.message if self.name == "Error" else f"{self.name}: {self.message}"
        where = f"\n    at line {self.line}:{self.column}" if self.line is not None else ""
        return f"Error: {head}{where}"


class ScriptSyntaxError(McpdoError):
    """The script does not parse."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column

    @property
    def text(self) -> str:
        where = f"\n    at line {self.line}:{self.column}" if self.line is not None else ""
        return f"SyntaxError: {self.message}{where}"


class ReadonlyViolation(McpdoError):
    """An anonymous script contains write calls (found before it runs)."""

    def __init__(self, violations: list[tuple[str, int]]) -> None:
        self.violations = violations
        lines = "\n".join(f"- {call}() at line {line}" for call, line in violations)
        super().__init__(f"Readonly violations detected:\n{lines}")


class ExecutionTimeout(McpdoError):
    """The execution ran past its time budget."""

    def __init__(self, budget_ms: int) -> None:
        super().__init__(f"Execution timeout after {budget_ms}ms")
        self.budget_ms = budget_ms


class LimitExceeded(McpdoError):
    """A sandbox limit other than time (memory, stack, result size, SDK calls, script size, logs)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class AuthenticationRequired(McpdoError):
    """An anonymous caller attempted a write."""

    # The `name` the error has inside the script, so a script that does not catch it fails with this text.
    guest_name = "AuthenticationError"

    def __init__(self) -> None:
        super().__init__("Authentication required for write operations")


class PermissionDenied(McpdoError):
    """The caller's roles do not allow the action on the resource."""

    guest_name = "PermissionError"

    def __init__(self, action: str, resource: str) -> None:
        super().__init__(f"Permission denied: {action} {resource}")
        self.action = action
        self.resource = resource


class Unauthorized(McpdoError):
    """Credentials were presented but are invalid, expired or revoked (HTTP 401, never anonymous)."""


class CredentialsRequired(Unauthorized):
    """No credentials where the deployment takes no anonymous calls (HTTP 401 without an error code, RFC 6750)."""


class AuthUnavailable(McpdoError):
    """Credentials could not be checked at all: the OAuth issuer's keys are out of reach (HTTP 503)."""


class NotFound(McpdoError):
    """A record, key or module does not exist."""


class Conflict(McpdoError):
    """A duplicate id or a failed optimistic-concurrency check."""


class StoreError(McpdoError):
    """A storage backend failed; the message never carries backend secrets."""


class SandboxCrashed(McpdoError):
    """The runtime process died or misbehaved; it has been replaced."""


class SandboxBusy(McpdoError):
    """No runner could be had within the bounded wait: all were busy, or the caller's share was in use.

    `reason`: "runners" (every runner busy), "key" (the key's cap), "source" (an anonymous address's cap),
    "anonymous" (the share of the pool all anonymous callers have together).
    """

    _TEXTS: ClassVar[dict[str, str]] = {
        "key": (
            "Too many concurrent executions for this key: at most {cap} at a time "
            "(MCPDO_CONCURRENCY_PER_KEY), and none finished within {wait} ms (MCPDO_SANDBOX_WAIT_MS); "
            "try again when one has finished"
        ),
        "source": (
            "Too many concurrent executions for anonymous callers from this address: at most {cap} at a "
            "time (MCPDO_CONCURRENCY_PER_ANONYMOUS), and none finished within {wait} ms "
            "(MCPDO_SANDBOX_WAIT_MS); try again when one has finished"
        ),
        "anonymous": (
            "The sandbox is busy with anonymous executions: at most {cap} at a time for all anonymous "
            "callers together (MCPDO_ANONYMOUS_RUNNERS), and none finished within {wait} ms "
            "(MCPDO_SANDBOX_WAIT_MS); try again, or authenticate with an API key"
        ),
        "runners": ("The sandbox is busy: no runner became free within {wait} ms (MCPDO_SANDBOX_WAIT_MS); try again"),
    }

    def __init__(self, reason: str, wait_ms: int, cap: int | None = None) -> None:
        template = self._TEXTS.get(reason, self._TEXTS["runners"])
        super().__init__(template.format(cap=cap, wait=wait_ms))
        self.reason = reason
        self.wait_ms = wait_ms
        self.cap = cap


class NotConfigured(McpdoError):
    """A capability was used that the deployment has not configured (names the settings to set)."""


class ModelError(McpdoError):
    """A model provider failed or refused after retries; the text names the provider, never its key."""


class FetchError(McpdoError):
    """An outgoing HTTP request could not be made or completed."""


class FetchRefused(FetchError):
    """The URL or an address it resolves or redirects to is not allowed (scheme, SSRF guard, redirects)."""


class FetchTimeout(FetchError):
    """Connecting or reading took longer than the deployment allows."""


class ResponseTooLarge(FetchError):
    """The response body is larger than the deployment's cap."""


class HttpStatusError(FetchError):
    """The server answered with a non-2xx status: the text carries the status and an excerpt of the body."""

    def __init__(self, status: int, url: str, excerpt: str) -> None:
        detail = f": {excerpt}" if excerpt else ""
        super().__init__(f"HTTP {status} from {url}{detail}")
        self.status = status
