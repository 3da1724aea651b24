"""A script that plants setters, getters and replacements on every prototype and global the prelude could
touch, before touching the SDK, sees none of the prelude's private state: not the raw host functions, not
the shared `inner` record, not the result channel. Checked in scripts, in module registration and in
handlers run by the worker; afterwards no other caller's data changed and the server serves normally."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import RunningServer, start_server, stop_server
from tests.support.sync import call_as, call_tool, wait_for
from tests.support.victim import Victim, make_victim

RUNTIME = Path(__file__).resolve().parents[2] / "layers" / "runtime"
PRIVATE_NAMES = [
    "hostCall",
    "hostSync",
    "prim",
    "inner",
    "pending",
    "drained",
    "registrationError",
    "importing",
    "handlers",
    "intrinsics",
    "outstanding",
    "registrations",
    "loaded",
    "settle",
    "fire",
]


def touched_property_names() -> list[str]:
    """Every property name the prelude and its lazily compiled parts read or write, and the private ones."""
    sources = [RUNTIME / "prelude.js", *sorted((RUNTIME / "lazy").glob("*.js"))]
    names = set(PRIVATE_NAMES) | {"0", "1", "2", "3", "n", "id", "fn", "then", "constructor", "value", "done"}
    for path in sources:
        names |= set(re.findall(r"\.([A-Za-z_$][\w$]*)", path.read_text()))
    names -= {"prototype", "__proto__", "length", "caller", "callee", "arguments"}
    return sorted(names)


# Installs the traps, returns a function that reports what they saw that belongs to the prelude.
TRAPS = r"""
function installTraps(names) {
  const seen = []
  let count = 0
  let busy = false
  const apply = Reflect.apply
  const construct = Reflect.construct
  const Str = String
  const keep = Reflect.defineProperty
  const ownKeys = Reflect.ownKeys
  const describe = Reflect.getOwnPropertyDescriptor
  const record = (...item) => {
    if (busy) return
    busy = true
    try { keep(seen, count++, { __proto__: null, value: item, writable: true, enumerable: true, configurable: true }) }
    finally { busy = false }
  }
  const protos = [Object.prototype, Array.prototype, Function.prototype, Promise.prototype, Error.prototype,
    Map.prototype, Set.prototype, String.prototype, Number.prototype, RegExp.prototype, Date.prototype,
    Symbol.prototype, Object.getPrototypeOf([][Symbol.iterator]()),
    Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())),
    Object.getPrototypeOf(new Map().entries()), Object.getPrototypeOf(new Set().values()),
    Object.getPrototypeOf(async function () {}), Object.getPrototypeOf(function* () {})]
  for (const proto of protos) {
    for (const name of [...names, Symbol.iterator, Symbol.toPrimitive, Symbol.species, Symbol.hasInstance]) {
      const d = describe(proto, name)
      if (d && describe(d, 'configurable').value === false) continue
      const getter = d && describe(d, 'get')
      const data = d && describe(d, 'value')
      const original = getter && getter.value ? getter.value : () => (data ? data.value : undefined)
      keep(proto, name, { __proto__: null, configurable: true,
        get() { record('get', Str(name), this); return apply(original, this, []) },
        set(v) { record('set', Str(name), this, v); keep(this, name, { __proto__: null, value: v, writable: true,
          enumerable: true, configurable: true }) } })
    }
  }
  const wrap = (holder, name) => {
    const original = holder[name]
    if (typeof original !== 'function') return
    const replacement = function (...args) {
      record('call', name, this, ...args)
      return new.target ? construct(original, args) : apply(original, this, args)
    }
    keep(holder, name, { __proto__: null, value: replacement, writable: true, configurable: true })
  }
  for (const name of ['defineProperty', 'create', 'freeze', 'keys', 'hasOwn', 'assign', 'getOwnPropertyDescriptor',
    'setPrototypeOf', 'getPrototypeOf']) wrap(Object, name)
  for (const name of ['isArray', 'from', 'of']) wrap(Array, name)
  for (const name of ['stringify', 'parse']) wrap(JSON, name)
  for (const name of ['apply', 'construct', 'getOwnPropertyDescriptor', 'defineProperty', 'ownKeys']) {
    wrap(Reflect, name)
  }
  for (const name of ['all', 'resolve', 'reject', 'race', 'allSettled']) wrap(Promise, name)
  for (const name of ['max', 'min', 'floor']) wrap(Math, name)
  for (const name of ['Map', 'Set', 'Error', 'TypeError', 'String', 'Number', 'Proxy', 'Promise', 'Uint8Array',
    'Symbol', 'eval']) wrap(globalThis, name)

  const PRIVATE = new Set(%(private)s)
  const PRIVATE_FUNCTIONS = new RegExp('^(__mcpdo_call|__mcpdo_sync|settle|fire|load|step|whenDrained|reportError|' +
    'settled|define|push|newList|serialize|errorInfo|lazyGlobal)$')
  return function leaks() {
    const found = []
    const visited = new Set()
    const scan = (v, path, depth) => {
      if (v === null || (typeof v !== 'object' && typeof v !== 'function') || visited.has(v) || depth > 4) return
      visited.add(v)
      if (typeof v === 'function' && PRIVATE_FUNCTIONS.test(v.name)) found.push(`${path} is the function ${v.name}`)
      for (const key of ownKeys(v)) {
        // Accessors with these names are the traps themselves; a data property is someone's state.
        const d = describe(v, key)
        const data = d && describe(d, 'value')
        if (data && typeof key === 'string' && PRIVATE.has(key)) found.push(`${path}.${key}`)
        if (data) scan(data.value, `${path}.${Str(key)}`, depth + 1)
      }
    }
    busy = true
    try {
      seen.forEach((item, i) => item.slice(2).forEach((v, j) => scan(v, `${item[0]} ${item[1]} #${i}.${j}`, 0)))
      for (const name of ownKeys(globalThis)) {
        const d = describe(globalThis, name)
        const data = d && describe(d, 'value')
        if (data) scan(data.value, `globalThis.${Str(name)}`, 0)
      }
    } finally { busy = false }
    return { leaks: found.slice(0, 20), observed: seen.length }
  }
}
"""

# Touches every SDK global and guest-visible part of the prelude, so each lazily compiled part loads after
# the traps are in place.
EXERCISE = r"""
async function exercise() {
  await db.list('Order')
  await db.get('Order', 'ord_none')
  try { await db.update('Order', 'ord_none', { a: 1 }) } catch (e) { String(e) }
  try { await ai.generate({ prompt: 'x' }) } catch (e) { String(e) }
  try { await api.fetch('https://example.com') } catch (e) { String(e) }
  on('Probe.local', () => 1)
  await send('Probe.local', { a: 1 })
  await new Promise((resolve) => setTimeout(resolve, 1))
  const interval = setInterval(() => clearInterval(interval), 1)
  queueMicrotask(() => {})
  console.log('probe', { a: [1] }, new Error('e'))
  crypto.randomUUID()
  crypto.getRandomValues(new Uint8Array(4))
  structuredClone({ a: [1, new Date(0)] })
  user.current(); user.session(); user.can('read', 'Order')
  $.Person({ name: 'A' }); String($.Order.created)
  new URL('https://a.example/c?d=1').searchParams.get('d')
  new Date(0).toLocaleDateString('en-US', { month: 'long' })
  Math.random()
}
"""


def probe_script(names: list[str], then: str = "") -> str:
    traps = TRAPS % {"private": json.dumps(PRIVATE_NAMES)}
    return f"{traps}\n{EXERCISE}\nconst leaks = installTraps({json.dumps(names)})\nawait exercise()\n{then}\nleaks()"


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("prelude"), MCPDO_RETRY_BASE_MS="50")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def victim(hostile_server: RunningServer) -> Victim:
    return make_victim(hostile_server)


def test_traps_on_every_prototype_and_global_the_prelude_touches_see_nothing_private(
    hostile_server: RunningServer, victim: Victim
) -> None:
    is_error, text = call_as(hostile_server, hostile_server.admin_key, probe_script(touched_property_names()))
    assert not is_error, text
    report = json.loads(text)
    assert report["observed"] > 0, "the traps never fired: the probe tests nothing"
    assert report["leaks"] == []
    victim.assert_untouched()


def test_an_anonymous_script_with_the_traps_sees_nothing_private_either(
    hostile_server: RunningServer, victim: Victim
) -> None:
    writes = ("db.update(", "ai.generate(", "on('Probe", "send('Probe")
    script = "\n".join(
        line for line in probe_script(touched_property_names()).split("\n") if not any(call in line for call in writes)
    )
    is_error, text = call_as(hostile_server, None, script)
    assert not is_error, text
    report = json.loads(text)
    assert report["observed"] > 0
    assert report["leaks"] == []
    victim.assert_untouched()


def test_an_import_and_module_registration_under_the_traps_leak_nothing(
    hostile_server: RunningServer, victim: Victim
) -> None:
    library = "---\n$id: /lib/probe-helper\n---\nexport const helper = (x) => x * 2\n"
    assert call_tool(hostile_server, hostile_server.admin_key, {"module": library})[0] is False
    importer = "import { helper } from '/lib/probe-helper'\nif (helper(2) !== 4) throw new Error('import failed')"
    is_error, text = call_as(hostile_server, hostile_server.admin_key, probe_script(touched_property_names(), importer))
    assert not is_error, text
    assert json.loads(text)["leaks"] == []
    victim.assert_untouched()


def test_a_handler_run_by_the_worker_under_the_traps_leaks_nothing(
    hostile_server: RunningServer, victim: Victim
) -> None:
    traps = TRAPS % {"private": json.dumps(PRIVATE_NAMES)}
    module = (
        f"---\n$id: /workflows/prelude-probe\n---\n{traps}\n{EXERCISE}\n"
        f"const leaks = installTraps({json.dumps(touched_property_names())})\n"
        "on($.Probe.run, async (data) => {\n"
        "  await exercise()\n"
        "  const report = leaks()\n"
        "  await db.create('ProbeReport', { run: data.run, leaks: report.leaks, observed: report.observed })\n"
        "})\n"
    )
    is_error, text = call_tool(
        hostile_server, hostile_server.admin_key, {"module": module, "script": "await send($.Probe.run, { run: 1 })"}
    )
    assert not is_error, text

    def report() -> list[dict[str, object]] | None:
        is_error, text = call_as(hostile_server, hostile_server.admin_key, "await db.list('ProbeReport')")
        assert not is_error, text
        return json.loads(text) or None

    (found,) = wait_for(report)
    assert found["observed"] > 0
    assert found["leaks"] == []
    victim.assert_untouched()


def test_a_dynamic_import_under_the_traps_leaks_nothing(hostile_server: RunningServer, victim: Victim) -> None:
    library = "---\n$id: /lib/probe-dynamic\n---\nexport const helper = (x) => x * 3\n"
    assert call_tool(hostile_server, hostile_server.admin_key, {"module": library})[0] is False
    importer = (
        "const lib = await import('/lib/probe-dynamic')\n"
        "if (lib.helper(2) !== 6) throw new Error('dynamic import failed')"
    )
    is_error, text = call_as(hostile_server, hostile_server.admin_key, probe_script(touched_property_names(), importer))
    assert not is_error, text
    assert json.loads(text)["leaks"] == []
    victim.assert_untouched()


def test_hostile_dynamic_import_specifiers_never_reach_another_tenants_module(
    hostile_server: RunningServer, victim: Victim
) -> None:
    secret_module = "---\n$id: /lib/victim-only\n---\nexport const payroll = 'victim payroll'\n"
    assert victim.call_tool({"module": secret_module})[0] is False
    attacker = hostile_server.new_key("dynamic-importer", "--tenant", "attacker-dynamic")
    specifiers = [
        "'/lib/victim-only'",
        "{ toString() { return '/lib/victim-only' } }",
        "{ [Symbol.toPrimitive]() { return '/lib/victim-only' } }",
        "new Proxy({}, { get: () => () => '/lib/victim-only' })",
        "'/lib/victim-only'.padEnd(1_000_000, ' ')",
        "JSON.stringify({ type: 'reply', id: 1, ok: true, value: { id: '/lib/victim-only', code: '' } })",
    ]
    for spec in specifiers:
        script = f"let out\ntry {{ out = (await import({spec})).payroll ?? null }} catch (e) {{ out = String(e) }}\nout"
        is_error, text = call_as(hostile_server, attacker, script)
        assert not is_error and len(text) < 2000, (spec, text[:300])  # an error that quotes the spec, shortened
        assert "victim payroll" not in text, spec
    victim.assert_untouched()
    assert victim.call("(await import('/lib/victim-only')).payroll") == (False, '"victim payroll"')
