"""One long-lived Node runner process: one execution at a time, host calls dispatched concurrently."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from mcpdo.errors import ExecutionTimeout, McpdoError, SandboxCrashed
from mcpdo.sandbox.protocol import (
    CRASHED_MESSAGE,
    CallMessage,
    ExecutionChannel,
    ProtocolViolation,
    Refusals,
    ResultMessage,
    compromised_message,
    error_from_result,
    exec_line,
    new_nonce,
    parse_constructed,
    parse_exports,
    parse_line,
    parse_logs,
    parse_warnings,
    reply_error_line,
    reply_ok_line,
)
from mcpdo.sandbox.types import ExecutionRequest, ExecutionResult, HostCall, Limits, LogEntry
from mcpdo.sdk.calls import runtime_view

logger = logging.getLogger("mcpdo.sandbox")

# Results are capped by limits.max_result_bytes and call arguments by the runner; this only bounds a line.
_MAX_LINE = 96 * 1024 * 1024
# How long past the budget the runner may take to report before the process is killed.
WATCHDOG_GRACE_S = 0.5
# V8 lets a busy process's young generation grow to 16 MiB per semi-space; a runner's garbage is small and
# short-lived, and after 10,000 executions that growth was most of what each runner had added (+17 MiB).
NODE_FLAGS = ("--no-warnings", "--max-semi-space-size=2")
# The runner's whole environment: nothing of the host's, only glibc's allocator told to keep two arenas. Node's
# helper threads (libuv, V8's compiler and GC) each grew an arena of their own: ~5 MB per idle runner, growing.
RUNNER_ENV = {"MALLOC_ARENA_MAX": "2"}


def keep_inherited_descriptors_home() -> None:
    """Mark every descriptor above stderr not inheritable, so that a runner gets only its pipes.

    Python opens its own files and sockets not inheritable, but descriptors this process was given by whoever
    started it (a supervisor's pipe, a socket, `3<secrets` in a wrapper script, the Lambda runtime's telemetry
    descriptor) stay inheritable, and uvloop spawns without closing them (asyncio's loop closes them): a guest
    that escaped into Node would find them open.
    """
    listing = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"  # Linux, else macOS and BSDs
    for fd in (int(name) for name in os.listdir(listing)):
        if fd > 2:
            with contextlib.suppress(OSError):  # closed meanwhile, or the listing's own descriptor
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)


def _attach_logs(err: McpdoError, logs: tuple[LogEntry, ...]) -> McpdoError:
    err.logs = logs
    return err


class RunnerProcess:
    """A warm Node runner; `execute` raises McpdoError subclasses, and marks the process dead if it is."""

    def __init__(
        self,
        node_path: str,
        runner_path: Path,
        *,
        ready_timeout: float = 15.0,
        debug: bool = False,
        memory_bytes: int = Limits().memory_bytes,
    ) -> None:
        self.node_path = node_path
        # The memory limit of the instances the runner prepares ahead (a request with another rebuilds them).
        self.memory_bytes = memory_bytes
        self.runner_path = runner_path
        self.ready_timeout = ready_timeout
        # Results name the wasm instance that ran them (ExecutionResult.instance).
        self.debug = debug
        # The reuse key whose next execution this process can start on a kept instance (as the runner last
        # reported it): the pool routes requests with that key here first.
        self.warm_key: str | None = None
        self.spawn_env: dict[str, str] = dict(RUNNER_ENV)
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._next_exec = 0
        self.dead = False

    @property
    def pid(self) -> int | None:
        """The OS process id (None before start)."""
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        """True while the process runs and has not been condemned."""
        return not self.dead and self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Spawn with nothing of the host's environment (`RUNNER_ENV`) and only its three pipes, and wait for
        the runner's ready line."""
        keep_inherited_descriptors_home()
        self._proc = await asyncio.create_subprocess_exec(
            self.node_path,
            *NODE_FLAGS,
            str(self.runner_path),
            f"--memory-bytes={self.memory_bytes}",
            f"--sdk={json.dumps(runtime_view())}",
            *(("--debug",) if self.debug else ()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.spawn_env,
            cwd=str(self.runner_path.parent),
            limit=_MAX_LINE,
        )
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        try:
            async with asyncio.timeout(self.ready_timeout):
                while True:
                    msg = parse_line(await self._readline())
                    if msg["type"] == "ready":
                        return
        except (TimeoutError, ProtocolViolation, SandboxCrashed) as exc:
            await self.kill()
            raise SandboxCrashed(f"The sandbox runtime did not start: {exc}") from exc

    async def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        stream = self._proc.stderr
        with contextlib.suppress(Exception):
            while line := await stream.readline():
                logger.debug("runner %s: %s", self.pid, line.decode(errors="replace").rstrip())

    async def _readline(self) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            line = await self._proc.stdout.readline()
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise ProtocolViolation("runner line too long") from exc
        if not line:
            raise SandboxCrashed(CRASHED_MESSAGE)
        return line

    def _write(self, data: bytes) -> None:
        if self._proc is None or self._proc.stdin is None or not self.alive:
            return
        try:
            self._proc.stdin.write(data)
        except (ConnectionError, RuntimeError):
            self.dead = True

    async def kill(self) -> None:
        """SIGKILL the process and reap it."""
        self.dead = True
        self.warm_key = None
        proc = self._proc
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            if proc.stdin is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        if self._stderr_task is not None:
            self._stderr_task.cancel()

    async def close(self) -> None:
        """End the process: close stdin (the runner exits), kill it if it lingers."""
        proc = self._proc
        if proc is not None and proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 1)
        await self.kill()

    async def execute(self, request: ExecutionRequest, host: HostCall) -> ExecutionResult:
        """Run one request; the process is killed on timeout, crash or any line it should not have written."""
        if not self.alive:
            raise SandboxCrashed(CRASHED_MESSAGE)
        self._next_exec += 1
        channel = ExecutionChannel(self._next_exec, new_nonce(), request.limits.max_sdk_calls)
        started = time.perf_counter()
        budget_s = request.limits.timeout_ms / 1000
        tasks: set[asyncio.Task[None]] = set()
        refusals: Refusals = {}
        try:
            self._write(exec_line(channel.exec_id, channel.nonce, request))
            async with asyncio.timeout(budget_s + WATCHDOG_GRACE_S):
                while True:
                    msg = channel.accept(await self._readline())
                    if isinstance(msg, ResultMessage):
                        try:
                            return self._result(msg.body, request, started, refusals)
                        except (TypeError, ValueError, KeyError) as exc:
                            raise ProtocolViolation("a malformed result") from exc
                    task = asyncio.create_task(self._host_call(channel.exec_id, msg, host, refusals))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except TimeoutError:
            await self.kill()
            raise ExecutionTimeout(request.limits.timeout_ms) from None
        except ProtocolViolation as exc:
            logger.warning("sandbox runner %s broke the protocol: %s; replacing it", self.pid, exc)
            await self.kill()
            raise SandboxCrashed(compromised_message(str(exc))) from exc
        except SandboxCrashed:
            await self.kill()
            raise
        except McpdoError:
            raise
        except BaseException:
            # Cancelled, or anything unforeseen: the runner's state is unknown, so it serves nobody else.
            await self.kill()
            raise
        finally:
            for task in tasks:
                task.cancel()

    def _result(
        self, msg: dict[str, Any], request: ExecutionRequest, started: float, refusals: Refusals
    ) -> ExecutionResult:
        warm = msg.get("warm")
        self.warm_key = warm if isinstance(warm, str) else None
        logs = parse_logs(msg.get("logs"))
        if msg.get("ok") is True:
            instance = msg.get("instance")
            duration = msg.get("durationMs")
            return ExecutionResult(
                value=msg.get("value"),
                is_undefined=msg.get("undefined") is True,
                logs=logs,
                duration_ms=float(duration)
                if isinstance(duration, int | float)
                else (time.perf_counter() - started) * 1000,
                exports=parse_exports(msg.get("exports")),
                instance=instance if isinstance(instance, str) else None,
                constructed=parse_constructed(msg.get("constructed")),
                warnings=parse_warnings(msg.get("warnings")),
            )
        raise _attach_logs(error_from_result(msg.get("error"), request, refusals), logs)

    async def _host_call(self, exec_id: int, msg: CallMessage, host: HostCall, refusals: Refusals) -> None:
        try:
            value = await host(msg.name, msg.args)
            try:
                line = reply_ok_line(exec_id, msg.id, value)
            except (TypeError, ValueError):
                logger.warning("host call %s returned a value that is not JSON", msg.name)
                line = reply_error_line(exec_id, msg.id, f"Internal error in {msg.name}")
        except McpdoError as exc:
            guest_name = getattr(exc, "guest_name", None)
            if guest_name is not None:
                refusals[(guest_name, exc.message)] = exc
            line = reply_error_line(exec_id, msg.id, exc.message, guest_name)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("host call %s failed", msg.name)
            line = reply_error_line(exec_id, msg.id, f"Internal error in {msg.name}")
        self._write(line)
