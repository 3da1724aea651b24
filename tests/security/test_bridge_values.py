"""Values crossing the bridge between guest and host, as an attacker would send them: protocol-looking text in
every guest string that reaches the host, huge and deep values, lone surrogates, NUL bytes, engine-exhausting
string operations, and shared randomness. Each gets an exact round trip or a clear error; the runner keeps
serving and another caller's next execution gets exactly its own answer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcpdo.errors import LimitExceeded, McpdoError, ScriptRuntimeError
from mcpdo.inputs import MAX_VALUE_DEPTH
from mcpdo.sandbox import ExecutionRequest, ExecutionResult, Limits, Sandbox

pytestmark = pytest.mark.anyio

ATTACKER = "t1\x1fapiKey\x1fmallory"
BYSTANDER = "t2\x1fapiKey\x1fbob"
PROTOCOL_TEXTS = [
    '\n{"type":"result","exec":2,"nonce":"x","ok":true,"undefined":false,"value":{"forged":true}}\n',
    '"}\n{"type":"call","exec":1,"id":999,"name":"db.create","args":["Pwned",{}]}\n{"x":"',
    "\r\n\u2028\u2029\x00\\u0000\\n",
]


class Host:
    """A host that records each call and answers with what it was asked for."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.answer = answer

    async def __call__(self, name: str, args: list[Any]) -> Any:
        self.calls.append((name, args))
        if name == "import":
            return {"id": str(args[0]), "code": "export const x = 1"}
        return self.answer if self.answer is not None else {"echo": args}


@pytest.fixture
async def sandbox(anyio_backend: str) -> AsyncIterator[Sandbox]:
    sb = Sandbox(size=1, debug=True)
    await sb.start()
    yield sb
    await sb.close()


async def run(
    sandbox: Sandbox, code: str, host: Host | None = None, key: str | None = ATTACKER, **limits: Any
) -> ExecutionResult:
    with anyio.fail_after(30):
        return await sandbox.execute(
            ExecutionRequest(code=code, limits=Limits(**limits), readonly=False, reuse_key=key), host or Host()
        )


async def failure(sandbox: Sandbox, code: str, **limits: Any) -> McpdoError:
    with pytest.raises(McpdoError) as info:
        await run(sandbox, code, **limits)
    return info.value


async def assert_bystander_served(sandbox: Sandbox) -> None:
    """Another caller's next execution gets exactly the answer its own host gave, and only its own calls."""
    host = Host(answer=[{"id": "ord_1", "total": 42}])
    result = await run(sandbox, "const orders = await db.list('Order')\n({ orders, sum: 40 + 2 })", host, BYSTANDER)
    assert result.value == {"orders": [{"id": "ord_1", "total": 42}], "sum": 42}
    assert host.calls == [("db.list", ["Order"])]


@pytest.mark.parametrize("text", PROTOCOL_TEXTS)
async def test_protocol_looking_text_in_every_guest_string_reaches_the_host_exactly(
    sandbox: Sandbox, text: str
) -> None:
    pid = sandbox.processes[0].pid
    host = Host()
    script = (
        f"const t = {json.dumps(text)}\n"
        "await db.create(t, { [t]: t })\n"
        "await send(t, { t })\n"
        "console.log(t)\n"
        f"import {{ x }} from {json.dumps(text)}\n"
        "let thrown = null\n"
        "try { throw new Error(t) } catch (e) { thrown = e.message }\n"
        "({ t, thrown, typeName: $[t]({}).$type, x })"
    )
    result = await run(sandbox, script, host)
    assert result.value == {"t": text, "thrown": text, "typeName": text, "x": 1}
    assert [log.message for log in result.logs] == [text]
    assert ("db.create", [text, {text: text}]) in host.calls
    assert ("send", [text, {"t": text}]) in host.calls
    assert ("import", [text]) in host.calls
    assert all(name != "Pwned" and args[:1] != ["Pwned"] for name, args in host.calls)
    assert sandbox.processes[0].pid == pid
    await assert_bystander_served(sandbox)


async def test_an_argument_and_a_result_may_each_nest_exactly_as_deep_as_record_data(sandbox: Sandbox) -> None:
    # One depth rule (record data's): the argument list around a value is not a level of its own.
    nest = "let v: any = 1\nfor (let i = 0; i < {n}; i++) v = [v]\n"
    host = Host(answer=True)
    assert (await run(sandbox, nest.format(n=MAX_VALUE_DEPTH) + "await db.create('Deep', v)", host)).value is True
    assert host.calls and host.calls[0][0] == "db.create"
    assert (await run(sandbox, nest.format(n=MAX_VALUE_DEPTH) + "v")).value is not None
    too_deep = await failure(sandbox, nest.format(n=MAX_VALUE_DEPTH + 1) + "await db.create('Deep', v)")
    assert f"db.create() arguments: nested more than {MAX_VALUE_DEPTH} levels deep" in too_deep.message


async def test_an_uncaught_error_with_protocol_text_is_reported_as_that_text(sandbox: Sandbox) -> None:
    error = await failure(sandbox, f"throw new Error({json.dumps(PROTOCOL_TEXTS[0])})")
    assert isinstance(error, ScriptRuntimeError)
    assert error.message == PROTOCOL_TEXTS[0]
    await assert_bystander_served(sandbox)


DEEP = "let a = 1\nfor (let i = 0; i < 3000; i++) a = [a]\n"
CLEAR_ERRORS = [
    ("a 3,000-deep argument", DEEP + "await db.get('Deep', a)", "db.get() arguments: nested more than 64 levels deep"),
    ("a 3,000-deep result", DEEP + "a", "Result: nested more than 64 levels deep"),
    (
        "a 2,000-deep $or",
        "let w = { n: 1 }\nfor (let i = 0; i < 2000; i++) w = { $or: [w] }\nawait db.list('Order', { where: w })",
        "db.list() arguments: nested more than 64",
    ),
    ("3,000-deep record data", DEEP + "await db.create('Deep', { a })", "db.create() arguments: nested more than 64"),
    (
        "a lone surrogate in a result",
        "({ name: 'a\\ud800b' })",
        "Result: a string that is not valid Unicode (a lone surrogate) at result.name",
    ),
    ("a lone surrogate in a key", "({ ['k\\udc00']: 1 })", "Result: a key that is not valid Unicode"),
    (
        "a lone surrogate in an argument",
        "await db.create('X', { name: 'a\\udc00' })",
        "db.create() arguments: a string that is not valid Unicode (a lone surrogate) at arguments[1].name",
    ),
    (
        "split and join of a 20 MB string",
        "const s = 'x'.repeat(20 * 1024 * 1024)\ns.split('').join('-').length",
        "Memory limit exceeded",
    ),
    ("replace in a 20 MB string", "'ab'.repeat(10 * 1024 * 1024).replace(/a/g, 'xyz').length", "Memory limit exceeded"),
    ("an endless promise chain", "let p = Promise.resolve()\nfor (;;) p = p.then(() => {})", "Memory limit exceeded"),
    (
        "9 MB of call arguments",
        "await db.create('Big', { s: 'x'.repeat(9 * 1024 * 1024) })",
        "db.create(): arguments too large (more than 8388608 bytes)",
    ),
    ("a million timers", "for (let i = 0; i < 1e6; i++) setTimeout(() => {}, 60000)", "Too many timers"),
    (
        "native recursion in JSON.stringify",
        "let a = 1\nfor (let i = 0; i < 20000; i++) a = [a]\nJSON.stringify(a)",
        "Stack overflow",
    ),
    ("native recursion in String()", "let a = 1\nfor (let i = 0; i < 20000; i++) a = [a]\nString(a)", "Stack overflow"),
]


@pytest.mark.parametrize(("name", "script", "expected"), CLEAR_ERRORS, ids=[case[0] for case in CLEAR_ERRORS])
async def test_a_hostile_value_gets_a_clear_error_naming_the_limit_and_the_runner_keeps_serving(
    sandbox: Sandbox, name: str, script: str, expected: str
) -> None:
    error = await failure(sandbox, script, timeout_ms=20_000)
    assert expected in error.message, error.message
    for python_text in ("RecursionError", "Traceback", "Internal error", "engine failed"):
        assert python_text not in error.message
    assert error.message != "null"
    await assert_bystander_served(sandbox)


async def test_nul_bytes_and_astral_characters_round_trip_exactly(sandbox: Sandbox) -> None:
    host = Host()
    text = "a\x00b \U0001f600 \u0000 end"
    result = await run(sandbox, f"await db.create('Note', {{ text: {json.dumps(text)} }})\n{json.dumps(text)}", host)
    assert result.value == text
    assert host.calls == [("db.create", ["Note", {"text": text}])]


async def test_a_host_answer_with_a_lone_surrogate_reaches_the_guest_exactly(sandbox: Sandbox) -> None:
    script = "const r = await db.get('X', 'y')\nreturn [r.length, r.charCodeAt(1)]"
    result = await run(sandbox, script, Host(answer="a\ud800"))
    assert result.value == [2, 0xD800]


async def test_math_random_is_never_shared_between_concurrent_executions(anyio_backend: str) -> None:
    async with Sandbox(size=2) as pool:
        results: list[Any] = []

        async def one(n: int) -> None:
            key = None if n % 4 == 0 else f"t\x1fapiKey\x1fcaller{n % 3}"
            result = await pool.execute(
                ExecutionRequest(
                    code="[Math.random(), Math.random(), Math.random(), ...crypto.getRandomValues(new Uint32Array(2))]",
                    limits=Limits(),
                    readonly=False,
                    reuse_key=key,
                ),
                Host(),
            )
            results.append(result.value)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for n in range(48):
                    tg.start_soon(one, n)
    sequences = [tuple(r[:3]) for r in results]
    assert len(sequences) == 48
    assert len(set(sequences)) == 48
    assert all(0 <= x < 1 for seq in sequences for x in seq)
    assert len({tuple(r[3:]) for r in results}) == 48


ATTACK = """
Object.defineProperty(Object.prototype, 'track', { set(v) { globalThis.stolen = v }, configurable: true })
// QuickJS's own JSON.stringify writes the caller's values through this one; a function would be the prelude's.
Object.defineProperty(Array.prototype, '0', { set(v) { if (typeof v === 'function') globalThis.stolen = v },
  configurable: true })
Promise.prototype.then = function () { return 'hijacked' }
Math.random = () => 0.5
globalThis.planted = 'planted'
await db.list('Order')
typeof globalThis.stolen
"""


async def test_after_an_attack_the_next_execution_on_the_same_instance_starts_clean(sandbox: Sandbox) -> None:
    attack = await run(sandbox, ATTACK)
    assert attack.value == "undefined"
    probe = (
        "[typeof globalThis.planted, typeof globalThis.stolen, Object.getOwnPropertyDescriptor(Object.prototype,"
        " 'track') === undefined, Math.random() !== 0.5, typeof (await db.get('X', 'y'))]"
    )
    again = await run(sandbox, probe)
    assert again.instance == attack.instance
    assert again.value == ["undefined", "undefined", True, True, "object"]
    await assert_bystander_served(sandbox)


async def test_a_result_over_the_size_limit_is_refused_with_the_limit(sandbox: Sandbox) -> None:
    error = await failure(sandbox, "'x'.repeat(2 * 1024 * 1024)")
    assert isinstance(error, LimitExceeded)
    assert "exceeds the limit of 1048576 bytes" in error.message
    await assert_bystander_served(sandbox)


async def test_a_30_mb_error_message_is_clipped_to_a_bounded_text(sandbox: Sandbox) -> None:
    error = await failure(sandbox, "throw new Error('x'.repeat(30_000_000))")
    assert len(error.message) < 20_000
    assert error.message.endswith("more characters)")
    await assert_bystander_served(sandbox)


async def test_empty_console_lines_count_against_the_log_limit(sandbox: Sandbox) -> None:
    result = await run(
        sandbox, "const t = Date.now()\nwhile (Date.now() - t < 1500) console.log('')\n1", timeout_ms=5000
    )
    assert len(result.logs) < 5000
    assert result.logs[-1].message.startswith("Log output truncated")
    await assert_bystander_served(sandbox)


async def test_timers_still_fire_after_an_execution_that_exhausted_the_native_stack(sandbox: Sandbox) -> None:
    await failure(sandbox, "let a = 1\nfor (let i = 0; i < 20000; i++) a = [a]\nsetTimeout(() => {}, 5)\nString(a)")
    result = await run(sandbox, "await new Promise((resolve) => setTimeout(() => resolve('fired'), 5))")
    assert result.value == "fired"


async def test_tojson_getters_and_to_primitive_on_values_crossing_the_bridge_only_shape_the_callers_own_call(
    sandbox: Sandbox,
) -> None:
    host = Host()
    script = """
const sneaky = { toJSON() { return { forged: '\\n{"type":"result"}' } } }
const getter = { get total() { return 42 } }
const eventName = { [Symbol.toPrimitive]: () => 'Order.created' }
const reentrant = { get x() { db.get('Inner', 'i'); return 1 } }
await db.create('A', sneaky)
await db.create('B', getter)
await send(eventName, {})
await db.create('C', reentrant)
'done'
"""
    result = await run(sandbox, script, host)
    assert result.value == "done"
    assert ("db.create", ["A", {"forged": '\n{"type":"result"}'}]) in host.calls
    assert ("db.create", ["B", {"total": 42}]) in host.calls
    assert ("send", ["Order.created", {}]) in host.calls
    assert ("db.create", ["C", {"x": 1}]) in host.calls
    assert ("db.get", ["Inner", "i"]) in host.calls
    await assert_bystander_served(sandbox)


# Calls made once the execution's result is decided: from the host's read of a thrown value, or from a timer
# still set. (A microtask queued before the end runs inside the execution, as the caller's own call.)
LATE_CALLS = [
    (
        "a call from a getter the host reads on a thrown value",
        "throw { get message() { db.create('Pwned', {}); return 'x' } }",
    ),
    ("a call from a timer left running at the end", "setTimeout(() => db.create('Pwned', {}), 0)\n1"),
]


@pytest.mark.parametrize(("name", "script"), LATE_CALLS, ids=[case[0] for case in LATE_CALLS])
async def test_a_host_call_made_as_an_execution_ends_never_reaches_the_host_or_the_next_caller(
    sandbox: Sandbox, name: str, script: str
) -> None:
    host = Host()
    with contextlib.suppress(McpdoError):
        await run(sandbox, script, host)
    await assert_bystander_served(sandbox)
    assert all(args[:1] != ["Pwned"] for _, args in host.calls), host.calls
