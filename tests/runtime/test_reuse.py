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
    # 100 MiB of a 128 MiB limit: the wasm memory grows far past its image (more than a rewind zeroes).
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


# The parts of the guest environment a caller's execution compiled on first use (db, $, URL, console, timers)
# are compiled into its next runtime ahead of time: that runtime must behave exactly as one that compiles them
# on first use, whatever the previous execution did to its own copies and whatever the next one does first.
USES_PARTS = (
    "const u = new URL('https://example.com/a?b=1')\n"
    "const p = $.Person({ name: 'Ann' })\n"
    "console.log('seen', { n: 1 })\n"
    "await new Promise((resolve) => setTimeout(resolve, 1))\n"
    "const got = await db.get('Thing', 'x')\n"
    "const out = [u.searchParams.get('b'), p.name, typeof got]\n"
    "out"
)


async def test_parts_compiled_ahead_for_the_next_execution_behave_as_compiled_on_first_use(one: Sandbox) -> None:
    first = await run(one, USES_PARTS, ALICE)
    assert first.value == ["1", "Ann", "object"]
    again = await run(one, USES_PARTS, ALICE)
    assert again.instance == first.instance
    assert again.value == first.value
    assert [log.message for log in again.logs] == [log.message for log in first.logs] == ['seen {"n":1}']


async def test_what_an_execution_did_to_its_parts_does_not_reach_the_parts_compiled_for_the_next(one: Sandbox) -> None:
    planted = await run(
        one,
        "db.planted = 1\n(URL as any).planted = 2\n"
        "URL.prototype.toString = () => 'planted'\nconsole.log = () => {}\n'ok'",
        ALICE,
    )
    assert planted.value == "ok"
    after = await run(
        one,
        "console.log('still logs')\n"
        "const out = [(db as any).planted ?? null, (URL as any).planted ?? null, "
        "String(new URL('https://example.com/'))]\nout",
        ALICE,
    )
    assert after.instance == planted.instance
    assert after.value == [None, None, "https://example.com/"]
    assert [log.message for log in after.logs] == ["still logs"]


async def test_parts_compiled_ahead_are_not_reached_through_globals_the_caller_replaced_first(one: Sandbox) -> None:
    await run(one, USES_PARTS, ALICE)
    hostile = await run(
        one,
        "Function.prototype.call = () => 'hijacked'\nFunction.prototype.apply = () => 'hijacked'\n"
        "Object.defineProperty(Object.prototype, 'planted', { set() { throw new Error('planted setter') } })\n"
        "JSON.parse = () => ({ planted: true })\nJSON.stringify = () => '\"planted\"'\n"
        "Promise.prototype.then = function () { throw new Error('planted then') }\n"
        "const got = db.get('Thing', 'x')\n"
        "const p = $.Person({ name: 'Ann' })\n"
        "console.log('after', 1)\n"
        "typeof got",
        ALICE,
    )
    assert hostile.value == "object"
    assert [log.message for log in hostile.logs] == ["after 1"]


# From its third execution on, a caller's runtime is its previous one rewound to the image kept when it was
# prepared (layers/runtime/engine.mjs): these hold on every rewound runtime, not only on freshly built ones.
async def test_a_rewound_runtime_still_stops_at_its_budget(one: Sandbox) -> None:
    ids = [await instance(one, ALICE) for _ in range(3)]
    assert len(set(ids)) == 1
    pid = one.processes[0].pid
    with pytest.raises(ExecutionTimeout):
        await run(one, "while (true) {}", ALICE, timeout_ms=200)
    # The engine interrupted the guest (not the host's watchdog, which would have replaced the process).
    assert (await run(one, "'after'", ALICE)).value == "after"
    assert one.processes[0].pid == pid


async def test_rewound_runtimes_draw_fresh_randomness(one: Sandbox) -> None:
    results = [await run(one, "[Math.random(), crypto.randomUUID()]", ALICE) for _ in range(5)]
    assert len({r.instance for r in results}) == 1
    assert len({r.value[0] for r in results}) == 5
    assert len({r.value[1] for r in results}) == 5


async def test_a_runtime_whose_heap_grew_a_little_is_rewound_and_runs_again(one: Sandbox) -> None:
    # 4 MiB past its image: the instance is kept, the grown pages zeroed at each rewind.
    grow = "const keep = []\nfor (let i = 0; i < 4; i++) keep.push(new Uint8Array(1 << 20).fill(7))\nkeep.length"
    results = [await run(one, grow, ALICE) for _ in range(4)]
    assert [r.value for r in results] == [4] * 4
    assert len({r.instance for r in results}) == 1
    assert (await run(one, "[1, 2, 3].map((n) => n * 2)", ALICE)).value == [2, 4, 6]


async def test_a_runtime_whose_heap_grew_more_than_a_rewind_zeroes_gets_a_fresh_instance(one: Sandbox) -> None:
    before = await instance(one, ALICE)
    grown = await run(one, "const big = new Uint8Array(12 << 20).fill(1)\nbig.length", ALICE)
    assert grown.instance == before
    assert await instance(one, ALICE) != before
