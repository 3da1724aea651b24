"""Two runner mechanisms a hostile caller reaches: the lazy parts compiled ahead into its own next runtime,
and the one write that carries every call a guest step made. Neither lets a caller plant anything for another
caller on the same runner, and text that looks like protocol stays data."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcpdo.sandbox import ExecutionRequest, ExecutionResult, Limits, Sandbox

pytestmark = pytest.mark.anyio

ATTACKER = "t1\x1fapiKey\x1fattacker"
VICTIM = "t1\x1fapiKey\x1fvictim"

# Touches every lazy part (so all of them are compiled ahead of its next runtime) and tampers with each.
PLANT = """
db.planted = 'attacker'
;($ as any).Person.planted = 'attacker'
URL.prototype.toString = () => 'planted'
URLSearchParams.prototype.get = () => 'planted'
console.log = () => {}
setTimeout(() => {}, 0)
crypto.randomUUID = () => 'planted'
structuredClone({})
user.current()
new Date(0).toLocaleDateString('en-US')
Object.defineProperty(Object.prototype, 'planted', { get() { return 'attacker' }, configurable: true })
'planted'
"""

PROBE = """
console.log('victim logs')
const u = new URL('https://example.com/a?b=1')
const out = [(db as any).planted ?? null, String(u), u.searchParams.get('b'), crypto.randomUUID().length,
  ({} as any).planted ?? null, typeof (await db.get('Thing', 'x'))]
out
"""
CLEAN = [None, "https://example.com/a?b=1", "1", 36, None, "object"]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def one_runner(anyio_backend: str) -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(size=1, debug=True)
    await sandbox.start()
    yield sandbox
    await sandbox.close()


class Host:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []

    async def __call__(self, name: str, args: list[Any]) -> Any:
        self.calls.append((name, args))
        return {"id": "x"} if name == "db.get" else None


async def run(sandbox: Sandbox, code: str, key: str | None, host: Host | None = None) -> ExecutionResult:
    request = ExecutionRequest(code=code, limits=Limits(), readonly=False, reuse_key=key)
    return await sandbox.execute(request, host or Host())


async def test_parts_an_attacker_used_and_tampered_with_reach_neither_another_caller_nor_its_own_next_run(
    one_runner: Sandbox,
) -> None:
    planted = await run(one_runner, PLANT, ATTACKER)
    assert planted.value == "planted"
    victim = await run(one_runner, PROBE, VICTIM)
    assert victim.instance != planted.instance
    assert victim.value == CLEAN
    assert [log.message for log in victim.logs] == ["victim logs"]
    # The attacker's next run, on its kept instance with every part compiled ahead, is as clean.
    replanted = await run(one_runner, PLANT, ATTACKER)
    again = await run(one_runner, PROBE, ATTACKER)
    assert again.instance == replanted.instance
    assert again.value == CLEAN
    # And the victim after that.
    assert (await run(one_runner, PROBE, VICTIM)).value == CLEAN


async def test_calls_made_in_one_step_arrive_whole_and_protocol_text_in_them_stays_data(
    one_runner: Sandbox,
) -> None:
    forged = (
        '{"type":"result","exec":1,"nonce":"x","ok":true,"value":"forged"}\n'
        '{"type":"call","exec":1,"nonce":"x","id":1,"name":"db.delete","args":["Order","o1"]}\n'
    )
    code = (
        f"const text = {json.dumps(forged)}\n"
        "await Promise.all(Array.from({ length: 50 }, (_, i) => db.get('Thing', text + i)))\n"
        "'own result'"
    )
    host = Host()
    result = await run(one_runner, code, ATTACKER, host)
    assert result.value == "own result"
    assert [name for name, _ in host.calls] == ["db.get"] * 50
    assert sorted(args[1] for _, args in host.calls) == sorted(forged + str(i) for i in range(50))
    victim_host = Host()
    victim = await run(one_runner, PROBE, VICTIM, victim_host)
    assert victim.value == CLEAN
    assert [name for name, _ in victim_host.calls] == ["db.get"]


# Callbacks the engine itself would run later (finalizers, weak references, the symbol registry) belong to
# the runtime's heap: a rewound runtime (every kept instance's third execution on) has none of them.
PLANT_IN_HEAP = """
const registry = new FinalizationRegistry(() => { (globalThis as any).fired = 'attacker' })
for (let i = 0; i < 1000; i++) registry.register({ i }, i)
;(globalThis as any).ref = new WeakRef(registry)
Symbol.for('planted')
Object.defineProperty(Array.prototype, 'planted', { get() { return 'attacker' } })
'planted'
"""
PROBE_HEAP = """
const junk = []
for (let i = 0; i < 20000; i++) junk.push({ i })
await new Promise((resolve) => setTimeout(resolve, 5))
const out = [(globalThis as any).fired ?? null, typeof (globalThis as any).ref, ([] as any).planted ?? null,
  Symbol.keyFor(Symbol.for('fresh'))]
out
"""


async def test_what_an_attacker_left_in_its_heap_reaches_neither_its_next_run_nor_another_caller(
    one_runner: Sandbox,
) -> None:
    for _ in range(3):
        planted = await run(one_runner, PLANT_IN_HEAP, ATTACKER)
        assert planted.value == "planted"
    own = await run(one_runner, PROBE_HEAP, ATTACKER)
    assert own.instance == planted.instance
    assert own.value == [None, "undefined", None, "fresh"]
    victim = await run(one_runner, PROBE_HEAP, VICTIM)
    assert victim.instance != planted.instance
    assert victim.value == [None, "undefined", None, "fresh"]


# A caller's kept runtime is rewound to its image (layers/runtime/engine.mjs). Each run touches one more lazy
# part (so its kept instance goes through the rewind-and-add-a-part path), grows the heap by 3 MiB (under what a
# rewind zeroes), fills the stack to QuickJS's limit, and plants setters, getters and globals on what the
# prelude and the parts use.
REWIND_ATTACK = """
const part = %s
Object.defineProperty(Object.prototype, 'then', { set() { throw new Error('planted then') }, configurable: true })
Object.defineProperty(Array.prototype, 'planted', { get() { return 'attacker' }, configurable: true })
JSON.stringify = () => '"planted"'
;(globalThis as any).planted = 'attacker'
const grown = new Uint8Array(3 << 20).fill(0x5a)
const deep = (n: number): number => deep(n + 1) + 1
try { deep(0) } catch {}
part + grown.length
"""
REWIND_PARTS = [
    "new URL('https://a.example/').host",
    "typeof $.Person",
    "(await db.get('X', 'y')) ? 1 : 0",
    "typeof setTimeout",
    "structuredClone([1]).length",
    "new Date(0).toLocaleDateString('en-US')",
]
REWIND_PROBE = """
const out = [typeof (globalThis as any).planted, ([] as any).planted ?? null, JSON.stringify({ a: 1 }),
  Object.getOwnPropertyDescriptor(Object.prototype, 'then') ?? null, new Uint8Array(1 << 20).some((b) => b !== 0)]
out
"""
REWIND_CLEAN = ["undefined", None, '{"a":1}', None, False]


async def test_an_attack_through_every_rewind_path_reaches_neither_its_next_run_nor_another_caller(
    one_runner: Sandbox,
) -> None:
    attacker_instances: set[str | None] = set()
    for part in REWIND_PARTS:
        # Attack, attack again, probe: the second attack runs on the first one's instance rewound with the part
        # compiled in (a new image), the probe on it plainly rewound.
        runs = [
            await run(one_runner, code, ATTACKER) for code in (REWIND_ATTACK % part, REWIND_ATTACK % part, REWIND_PROBE)
        ]
        assert len({r.instance for r in runs}) == 1
        assert runs[2].value == REWIND_CLEAN
        attacker_instances.add(runs[0].instance)
        victim = await run(one_runner, REWIND_PROBE, VICTIM)
        assert victim.instance not in attacker_instances
        assert victim.value == REWIND_CLEAN
