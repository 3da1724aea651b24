"""Running caller code: limits for the caller's tier, the host SDK for the caller, the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mcpdo.errors import LimitExceeded
from mcpdo.identity import Identity
from mcpdo.sandbox.types import ExecutionRequest, ExecutionResult, HostCall
from mcpdo.settings import Settings


class SandboxPort(Protocol):
    """What the executor needs from the sandbox (the runner pool implements it)."""

    async def execute(self, request: ExecutionRequest, host: HostCall) -> ExecutionResult: ...


class Executor:
    """Runs scripts for identities. One instance per process, shared by every transport."""

    def __init__(self, settings: Settings, sandbox: SandboxPort,
                 host_for: Callable[[Identity], HostCall]) -> None:
        self._settings = settings
        self._sandbox = sandbox
        self._host_for = host_for

    async def run_script(self, code: str, identity: Identity) -> ExecutionResult:
        """Run `code` now as `identity` and return its final value and logs."""
        limits = self._settings.limits(anonymous=identity.is_anonymous)
        size = len(code.encode("utf-8", errors="surrogatepass"))
        if size > limits.max_script_bytes:
            raise LimitExceeded("script", f"Script too large: {size} bytes exceeds the "
                                          f"{limits.max_script_bytes}-byte limit")
        request = ExecutionRequest(code=code, limits=limits, readonly=identity.is_anonymous,
                                   user=user_view(identity))
        return await self._sandbox.execute(request, self._host_for(identity))


def user_view(identity: Identity) -> dict[str, object]:
    """What `user.current()`, `user.session()` and `user.can()` answer inside the sandbox."""
    return {"current": identity.current(), "session": identity.session(),
            "grants": [list(grant) for grant in identity.grants]}
