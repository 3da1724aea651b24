"""Reuse of a WebAssembly instance between executions of the same caller, and only of the same caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcpdo.errors import ExecutionTimeout, LimitExceeded, ScriptRuntimeError
from mcpdo.sandbox import ExecutionRequest, ExecutionResult, Limits, Sandbox

from .conftest import RecordingHost

pytestmark = pytest.mark.anyio

ALICE = "t1\x1fapi_key\x1falice"
BOB = "t1\x1fapi_key\x1fbob"


@pytest.fixture
async def one(anyio_backend: str) -> AsyncIterator[Sandbox]:
    """One process, so that every execution lands on the same runner."""
    sb = Sandbox(size=1, debug=True)
    await sb.start()
    yield sb
    await sb.close()


async def run(sandbox: Sandbox, code: str, key: str | None, **limits: Any) -> ExecutionResult:
    with anyio.fail_after(15):
        return await sandbox.execute(
            ExecutionRequest(code=code, limits=Limits(**limits), readonly=False, reuse_key=key), RecordingHost()
        )


async def instance(sandbox: Sandbox, key: str | None) -> str:
    result = await run(sandbox, "1", key)
    assert result.instance is not None
    return result.instance


async def test_the_same_caller_reuses_the_instance_with_a_fresh_runtime_each_time(one: Sandbox) -> None:
    first = await run(
        one,
        "globalThis.leak = 1\nvar hoisted = 2\nconsole.log('x')\nconst seen = [typeof leak, typeof hoisted]\nseen",
        ALICE,
    )
    assert first.value == ["number", "number"]
    second = await run(one, "[typeof leak, typeof hoisted, typeof globalThis.leak]", ALICE)
    assert second.instance == first.instance
    assert second.value == ["undefined", "undefined", "undefined"]
    assert one.processes[0].warm_key == ALICE


async def test_a_changed_builtin_does_not_survive_into_the_next_execution(one: Sandbox) -> None:
    first = await run(one, "Array.prototype.push = () => 0\nObject.prototype.evil = 1\nconst n = [].push(1)\nn", ALICE)
    assert first.value == 0
    second = await run(
        one, "const a: number[] = []\na.push(1, 2)\nconst out = [a.length, ({} as any).evil ?? null]\nout", ALICE
    )
    assert second.instance == first.instance
    assert second.value == [2, None]


async def test_different_callers_never_share_an_instance(one: Sandbox) -> None:
    seen: dict[str, set[str]] = {ALICE: set(), BOB: set(), "none": set()}
    for key in (ALICE, BOB, ALICE, ALICE, BOB, BOB, None, ALICE, None, BOB):
        seen[key or "none"].add(await instance(one, key))
    assert not seen[ALICE] & seen[BOB]
    assert not (seen[ALICE] | seen[BOB]) & seen["none"]
    # Without a key every execution gets a fresh instance.
    assert len(seen["none"]) == 2


async def test_a_request_without_a_key_never_reuses(one: Sandbox) -> None:
    ids = [await instance(one, None) for _ in range(4)]
    assert len(set(ids)) == 4
    assert one.processes[0].warm_key is None


@pytest.mark.parametrize(
    "code, error, limits",
    [
        ("throw new Error('boom')", ScriptRuntimeError, {}),
        ("const a: string[] = []\nwhile (true) a.push('x'.repeat(1000))", LimitExceeded, {"memory_bytes": 16 << 20}),
        ("const f = (n: number): number => f(n + 1) + 1\nf(0)", LimitExceeded, {}),
        ("Promise.reject(new Error('late'))", ScriptRuntimeError, {}),
    ],
)
async def test_an_execution_that_fails_discards_its_instance(
    one: Sandbox, code: str, error: type[Exception], limits: dict[str, int]
) -> None:
    before = (await run(one, "1", ALICE, **limits)).instance
    assert (await run(one, "2", ALICE, **limits)).instance == before
    with pytest.raises(error):
        await run(one, code, ALICE, **limits)
    assert one.processes[0].warm_key is None
    after = (await run(one, "3", ALICE, **limits)).instance
    assert after != before


async def test_a_timeout_discards_the_instance(one: Sandbox) -> None:
    before = await instance(one, ALICE)
    with pytest.raises(ExecutionTimeout):
        await run(one, "await new Promise(() => {})", ALICE, timeout_ms=100)
    assert await instance(one, ALICE) != before


async def test_an_instance_serves_at_most_64_executions(one: Sandbox) -> None:
    ids = [await instance(one, ALICE) for _ in range(65)]
    assert len(set(ids[:64])) == 1
    assert ids[64] != ids[0]
    assert await instance(one, ALICE) == ids[64]


async def test_a_grown_memory_is_not_reused(one: Sandbox) -> None:
    # 100 MiB of a 128 MiB limit: the wasm memory grows past half of its maximum (limit + headroom).
    first = await run(one, "const big = new Uint8Array(100 * 1024 * 1024)\nbig[big.length - 1] = 1\nbig.length", ALICE)
    assert first.value == 100 * 1024 * 1024
    assert one.processes[0].warm_key is None
    assert (await run(one, "1", ALICE)).instance != first.instance


async def test_a_changed_memory_limit_gets_a_fresh_instance(one: Sandbox) -> None:
    before = await instance(one, ALICE)
    after = (await run(one, "1", ALICE, memory_bytes=64 << 20)).instance
    assert after != before


async def test_the_pool_routes_a_caller_to_the_process_holding_its_instance() -> None:
    async with Sandbox(size=2, debug=True) as sb:
        first = await instance(sb, ALICE)
        bob = await instance(sb, BOB)
        assert bob.split(".")[0] != first.split(".")[0]
        assert await instance(sb, ALICE) == first
        assert await instance(sb, BOB) == bob
        assert sorted(p.warm_key or "" for p in sb.processes) == sorted([ALICE, BOB])


async def test_results_name_no_instance_without_debug(sandbox: Sandbox) -> None:
    result = await run(sandbox, "1", ALICE)
    assert result.instance is None
