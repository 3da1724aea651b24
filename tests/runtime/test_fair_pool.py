"""Fair sharing of the real runner pool: caps per caller, the anonymous share, a bounded wait, growth."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from mcpdo.errors import ExecutionTimeout, SandboxBusy
from mcpdo.sandbox import Caller, Caps, ExecutionRequest, ExecutionResult, Limits, Sandbox

from .conftest import RecordingHost

pytestmark = pytest.mark.anyio

ALICE = Caller.key("t1\x1fapiKey\x1falice")
BOB = Caller.key("t1\x1fapiKey\x1fbob")
HELD = "await db.get('Order', 'o1')\n'held'"


class Gate:
    """A host answer that holds its execution (and so its runner) until the test opens it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()

    async def __call__(self, *args: Any) -> None:
        self.entered.set()
        await self.opened.wait()


def req(code: str, **limits: int) -> ExecutionRequest:
    return ExecutionRequest(code=code, limits=Limits(**limits), readonly=False)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def hold(sb: Sandbox, caller: Caller) -> tuple[Gate, asyncio.Task[ExecutionResult]]:
    """An execution of `caller` that keeps its runner until the gate opens."""
    gate = Gate()
    task = asyncio.create_task(sb.execute(req(HELD), RecordingHost({"db.get": gate}), caller=caller))
    with anyio.fail_after(10):
        await gate.entered.wait()
    return gate, task


async def timed(sb: Sandbox, code: str, caller: Caller) -> tuple[float, Any]:
    started = time.monotonic()
    with anyio.fail_after(10):
        result = await sb.execute(req(code), RecordingHost(), caller=caller)
    return time.monotonic() - started, result.value


async def test_anonymous_spinners_leave_a_runner_for_a_key_and_get_their_timeout_or_the_busy_error() -> None:
    async with Sandbox(size=2, caps=Caps(anonymous_runners=1), wait_ms=1000) as sb:
        sources = [Caller.anonymous(f"203.0.113.{n}") for n in range(4)]
        spinners = [
            asyncio.create_task(sb.execute(req("while (true) {}", timeout_ms=3000), RecordingHost(), caller=source))
            for source in sources
        ]
        await until(lambda: sb.admission.anonymous_running == 1 and len(sb.admission.waiting) == 3)
        elapsed, value = await timed(sb, "1 + 1", ALICE)
        assert value == 2
        assert elapsed < 1.0
        with anyio.fail_after(10):
            outcomes = await asyncio.gather(*spinners, return_exceptions=True)
        assert sorted(type(o).__name__ for o in outcomes) == ["ExecutionTimeout"] + ["SandboxBusy"] * 3
        busy = [o for o in outcomes if isinstance(o, SandboxBusy)]
        assert {b.reason for b in busy} == {"anonymous"}
        assert [o.budget_ms for o in outcomes if isinstance(o, ExecutionTimeout)] == [3000]
        assert (await timed(sb, "'after'", sources[0]))[1] == "after"


async def test_a_key_past_its_cap_waits_for_its_own_execution_while_another_key_runs() -> None:
    async with Sandbox(size=2, caps=Caps(per_key=1), wait_ms=5000) as sb:
        gate, first = await hold(sb, ALICE)
        second = asyncio.create_task(sb.execute(req("'second'"), RecordingHost(), caller=ALICE))
        await until(lambda: [t.caller for t in sb.admission.waiting] == [ALICE])
        elapsed, value = await timed(sb, "1 + 1", BOB)
        assert (value, elapsed < 1.0) == (2, True)
        assert not second.done()
        gate.opened.set()
        with anyio.fail_after(10):
            assert (await first).value == "held"
            assert (await second).value == "second"


async def test_a_request_that_gets_no_runner_in_time_gets_the_busy_error_and_the_pool_still_serves() -> None:
    async with Sandbox(size=1, wait_ms=300) as sb:
        gate, held = await hold(sb, ALICE)
        with anyio.fail_after(5), pytest.raises(SandboxBusy) as refused:
            await sb.execute(req("1 + 1"), RecordingHost(), caller=BOB)
        assert refused.value.text == (
            "The sandbox is busy: no runner became free within 300 ms (MCPDO_SANDBOX_WAIT_MS); try again"
        )
        assert sb.admission.waiting == ()
        gate.opened.set()
        with anyio.fail_after(10):
            assert (await held).value == "held"
        assert (await timed(sb, "1 + 1", BOB))[1] == 2


async def test_an_anonymous_address_past_its_cap_gets_its_own_error_naming_the_setting() -> None:
    home = Caller.anonymous("198.51.100.9")
    async with Sandbox(size=2, max_size=3, caps=Caps(per_anonymous=1, anonymous_runners=2), wait_ms=300) as sb:
        gate, held = await hold(sb, home)
        with anyio.fail_after(5), pytest.raises(SandboxBusy) as refused:
            await sb.execute(req("1 + 1"), RecordingHost(), caller=home)
        assert refused.value.reason == "source"
        assert refused.value.text.startswith(
            "Too many concurrent executions for anonymous callers from this address: at most 1 at a time "
            "(MCPDO_CONCURRENCY_PER_ANONYMOUS), and none finished within 300 ms"
        )
        assert (await timed(sb, "1 + 1", Caller.anonymous("192.0.2.1")))[1] == 2
        gate.opened.set()
        with anyio.fail_after(10):
            await held


async def test_the_pool_grows_for_a_waiting_key_and_retires_the_extra_runner_once_idle() -> None:
    now = [1000.0]
    async with Sandbox(size=1, max_size=2, idle_seconds=60, clock=lambda: now[0]) as sb:
        gate, held = await hold(sb, ALICE)
        now[0] += 1  # ALICE has held her runner for a second: a waiting request makes the pool grow
        elapsed, value = await timed(sb, "1 + 1", BOB)
        assert value == 2
        assert elapsed < 5.0
        assert len(sb.processes) == 2
        gate.opened.set()
        with anyio.fail_after(10):
            await held
        assert sb.reap_idle() == 0
        now[0] += 61
        assert sb.reap_idle() == 1
        assert len(sb.processes) == 1
        assert sb.reap_idle() == 0
        assert (await timed(sb, "1 + 1", ALICE))[1] == 2
