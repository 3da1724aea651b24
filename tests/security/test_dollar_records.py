"""The `$.Type(props)` records are the prelude's, not the guest's: a script that plants traps on the prototypes the
recording could touch, passes Proxies and throwing getters, or builds values by the thousand cannot read, forge,
grow or break the records, nor the result they travel with; and a runner that sends a malformed `constructed`
field gets it ignored, not trusted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcpdo.sandbox import ExecutionRequest, ExecutionResult, Limits, Sandbox
from mcpdo.sandbox.protocol import parse_constructed

pytestmark = pytest.mark.anyio


class Host:
    async def __call__(self, name: str, args: list[Any]) -> Any:
        return {"echo": args}


@pytest.fixture
async def sandbox(anyio_backend: str) -> AsyncIterator[Sandbox]:
    sb = Sandbox(size=1)
    await sb.start()
    yield sb
    await sb.close()


async def run(sandbox: Sandbox, code: str) -> ExecutionResult:
    with anyio.fail_after(30):
        return await sandbox.execute(ExecutionRequest(code=code, limits=Limits(), readonly=False), Host())


# Traps on everything the recording could use if it looked anything up at call time: array and object
# prototypes (index setters, toJSON, n), the string methods, JSON and Map.
TRAPS = r"""
let hits = ''
const note = (what) => { hits += what + ';' }
const trapped = []
const trap = (proto, name) => {
  trapped.push([proto, name])
  Object.defineProperty(proto, name, {
    configurable: true,
    get() { note('get ' + name); return undefined },
    set(v) { note('set ' + name); throw new Error('trapped ' + name) },
  })
}
for (const name of ['0', '1', '2', 'n', 'constructed', 'records', 'keys', 'text']) {
  trap(Object.prototype, name)
  trap(Array.prototype, name)
}
Object.defineProperty(Array.prototype, 'toJSON', { configurable: true, value() { note('toJSON'); return 'forged' } })
Object.defineProperty(String.prototype, 'toJSON', { configurable: true, value() { note('stoJSON'); return 'forged' } })
const saved = [String.prototype.slice, String.prototype.concat, JSON.stringify, Map.prototype.set, Map.prototype.has]
String.prototype.slice = function () { note('slice'); return 'forged' }
String.prototype.concat = function () { note('concat'); return 'forged' }
JSON.stringify = function () { note('stringify'); return '["Forged",["x"]]' }
Map.prototype.set = function () { note('map.set'); return this }
Map.prototype.has = function () { note('map.has'); return true }
const untrap = () => {
  for (const [proto, name] of trapped) delete proto[name]
  delete Array.prototype.toJSON
  delete String.prototype.toJSON
  ;[String.prototype.slice, String.prototype.concat, JSON.stringify, Map.prototype.set, Map.prototype.has] = saved
}
"""


async def test_traps_on_prototypes_json_and_map_see_nothing_and_forge_nothing(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        TRAPS
        + """
        const p = $.Person({ nmae: 'x', ['k'.repeat(300)]: 1 })
        $.Order({ customer: p })
        $.Person({ nmae: 'x', ['k'.repeat(300)]: 1 })
        untrap()
        ;({ hits, type: p.$type, nmae: p.nmae })
        """,
    )
    assert result.value == {"hits": "", "type": "Person", "nmae": "x"}
    assert result.constructed == (("Person", ("nmae", "k" * 100)), ("Order", ("customer",)))


async def test_proxies_and_throwing_getters_cannot_break_the_records_or_the_result(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        """
        const sneaky = new Proxy({}, {
          ownKeys() { return ['name', 'nmae', Symbol.iterator] },
          getOwnPropertyDescriptor(t, k) { return { value: 1, enumerable: true, configurable: true } },
          get(t, k) { return typeof k === 'string' ? k.toUpperCase() : undefined },
        })
        const fromProxy = $.Person(sneaky)
        const hostile = new Proxy({}, { ownKeys() { throw new Error('no keys') } })
        let failures = 0
        try { $.Person(hostile) } catch (e) { failures++ }
        try { $.Person({ a: 1, get b() { throw new Error('getter') }, c: 3 }) } catch (e) { failures++ }
        const weird = $.Person({ ['\\u0000\\n"]}' ]: 1, ['\\ud800']: 2 })
        ;({ fromProxy, failures, weird: Object.keys(weird).length })
        """,
    )
    assert result.value == {"fromProxy": {"$type": "Person", "name": "NAME", "nmae": "NMAE"}, "failures": 2, "weird": 3}
    assert result.constructed[0] == ("Person", ("name", "nmae"))
    # The lone surrogate arrives replaced, as every guest string does: the host can always encode it.
    assert result.constructed[1] == ("Person", ('\x00\n"]}', "\ufffd"))
    assert len(result.constructed) == 2


async def test_ten_thousand_constructions_keep_the_records_bounded_and_the_result_whole(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        """
        Object.defineProperty(Array.prototype, '64', { set() { throw new Error('full') }, configurable: true })
        let made = 0
        for (let i = 0; i < 10000; i++) {
          const v = $['T' + (i % 500)]({ ['f' + i]: i, name: 'n' })
          if (v.name === 'n') made++
        }
        ;({ made })
        """,
    )
    assert result.value == {"made": 10000}
    assert len(result.constructed) == 64
    assert result.constructed[0] == ("T0", ("f0", "name"))


async def test_the_guest_cannot_reach_the_records_from_dollar(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        """
        $.Person({ nmae: 1 })
        const t = $.Person
        const seen = [typeof t.recorded, typeof t.records, typeof t.record, String(t.constructed),
          Object.getOwnPropertyNames(t).join(','), typeof globalThis.__mcpdo_sync]
        seen
        """,
    )
    assert result.value == ["object", "object", "object", "Person.constructed", "prototype", "undefined"]
    assert result.constructed == (("Person", ("nmae",)),)


def test_a_malformed_constructed_field_from_a_runner_is_ignored() -> None:
    assert parse_constructed(None) == ()
    assert parse_constructed({"Person": ["x"]}) == ()
    good = ["Person", ["nmae"]]
    junk: list[Any] = [
        "Person",
        ["Person"],
        ["Person", "nmae"],
        [1, ["x"]],
        ["Person", [1]],
        ["P" * 101, ["x"]],
        ["Person", ["x" * 101]],
        ["Person", ["k"] * 65],
        good,
    ]
    assert parse_constructed(junk) == (("Person", ("nmae",)),)
    assert len(parse_constructed([good] * 1000)) == 64
