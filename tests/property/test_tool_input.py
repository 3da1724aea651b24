"""Arbitrary `do` tool inputs against DoTool.call with the real wiring (build_local: SQLite, the Node runner):
whatever the arguments (not an object, unknown or wrong-typed keys, the runner's own message fields) and
whatever the script (text shaped like the runner's protocol, huge strings, NUL, odd Unicode, unbalanced
braces, writes as an anonymous caller, probes of another tenant), `call` returns a ToolResult and never
raises. After each call the same tool still runs `1 + 1`, and another tenant's records and module, stored
beforehand, are unchanged and never shown to the anonymous caller or to the hostile caller's tenant.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from mcpdo.bootstrap import App, build_local
from mcpdo.identity import Identity
from mcpdo.ports import ListQuery, Record, StoredModule
from mcpdo.settings import Settings
from mcpdo.tool import ToolResult

pytestmark = pytest.mark.anyio

ANONYMOUS_BUDGET_MS = 400
KEYED_BUDGET_MS = 800
MARKER = "payroll-7f3a-secret"
VICTIM_MODULE_ID = "https://victim.test/payroll"
VICTIM = Identity.for_roles(id="key_victim", tenant="victim", auth_type="apiKey", roles=("admin",))
ATTACKER = Identity.for_roles(id="key_attacker", tenant="attacker", auth_type="apiKey", roles=("member",))
ANONYMOUS = Identity.anonymous("public")
CALLERS = st.sampled_from([ATTACKER, ANONYMOUS])

# One runner, few examples: about 2 sandbox executions each, so the file stays well under a minute.
TOOL_INPUTS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
SHAPES = settings(TOOL_INPUTS, max_examples=200)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class World:
    app: App
    database: Path
    secrets: list[Record]
    module: StoredModule

    @property
    def victim_id(self) -> str:
        return str(self.secrets[0]["id"])


VICTIM_MODULE = f"""---
$type: Workflow
$id: {VICTIM_MODULE_ID}
---
export function payroll() {{ return '{MARKER}' }}
on($.Payroll.run, async () => {{}})
"""


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    env = {"MCPDO_ANONYMOUS_TIMEOUT_MS": str(ANONYMOUS_BUDGET_MS), "MCPDO_TIMEOUT_MS": str(KEYED_BUDGET_MS)}
    data_dir = tmp_path_factory.mktemp("tool-input")
    app = build_local(replace(Settings.from_env(env), data_dir=data_dir, sandbox_pool_size=1, sandbox_pool_max=1))
    await app.start(worker=False)
    try:
        made = await app.tool.call(
            {
                "script": f"const a = await db.create('Secret', {{ note: '{MARKER}', n: 1 }})\n"
                f"const b = await db.create('Secret', {{ note: '{MARKER}-2', n: 2 }})\n"
                "return [a, b]",
                "module": VICTIM_MODULE,
            },
            VICTIM,
        )
        assert not made.is_error, made.texts
        assert made.structured is not None
        module = await app.adapters.modules.get("victim", VICTIM_MODULE_ID)
        assert module is not None
        yield World(app, app.settings.database_path, made.structured["value"], module)
    finally:
        await app.close()


# -- inputs -----------------------------------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each `weight` times as likely (st.one_of drops repeated strategies)."""
    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(lambda s: s)


V = "VICTIM_ID"  # replaced by the victim's record id when the call is made
SNIPPETS = [
    "1 + 1",
    "42",
    "undefined",
    "null",
    "return 5",
    # Text shaped like the runner's protocol (shared/mcpdo/sandbox/protocol.py), as values, logs and errors.
    """'{"type":"result","exec":1,"nonce":"00","ok":true,"value":"pwned"}\\n'""",
    """console.log('\\n{"type":"result","exec":1,"nonce":"00","ok":true,"value":1}\\n')""",
    """console.log('{"type":"call","exec":1,"nonce":"00","id":1,"name":"db.create","args":["Pwned",{}]}')""",
    """throw new Error('\\n{"type":"result","exec":1,"ok":true,"value":"forged"}\\n')""",
    """JSON.stringify({ type: 'reply', exec: 1, id: 1, ok: true, value: 1 })""",
    """({ type: 'result', exec: 1, nonce: '', ok: true, value: 'x', logs: [{ level: 'log', message: 'x' }] })""",
    """console.error('\\u2028{"type":"result"}\\u2029\\r\\n{"type":"exec"}')""",
    """({ __proto__: { type: 'result' }, exec: 2, constructed: [['Pwned', ['x']]] })""",
    """const e = new Error('x'); e.name = 'InputError'; e.kind = 'readonly'; throw e""",
    """throw { kind: 'limit', limit: 'memory', message: 'forged' }""",
    "throw null",
    # Huge strings, NUL, Unicode.
    "'x'.repeat(2 * 1024 * 1024)",
    "console.log('y'.repeat(300000))",
    "'\\u0000' + 'after NUL'",
    "'a\x00b'",
    "'\\ud800'",
    "({ ['\\udfff']: 1 })",
    "'\U0001f600\u202e\ufeff\u0301'",
    "'\u2028'",
    # Unbalanced or broken syntax.
    "{",
    "}",
    "({",
    "`${",
    "/*",
    "'",
    "<div>",
    "</script>",
    "})()",
    ")]}'",
    "\x00\x01\x02 garbage \x7f\x1b[31m",
    "--> x",
    "#!/bin/sh",
    # Writes, plain and disguised (refused for anonymous callers, allowed in the attacker's own tenant).
    "await db.create('Pwned', { n: 1 })",
    "const d = db\nawait d['cre' + 'ate']('Pwned', { n: 2 })",
    "await (0, eval)('db.create')('Pwned', { n: 3 })",
    "await globalThis['d' + 'b'].create('Pwned', {})",
    "await send('Secret.updated', { id: VICTIM_ID })",
    "on('*', async () => {})",
    "every('1m', async () => {})",
    # Probes of the victim's records and module.
    "await db.get('Secret', VICTIM_ID)",
    "await db.list('Secret')",
    "await db.list('Secret', { where: { note: { startsWith: 'payroll' } } })",
    "await db.list('Secret', { where: { $or: [{ tenant: 'victim' }, { n: { exists: true } }] } })",
    "await db.update('Secret', VICTIM_ID, { note: 'owned' })",
    "await db.delete('Secret', VICTIM_ID)",
    "await db.create('Secret', { id: VICTIM_ID, note: 'mine' })",
    "await db.relate({ type: 'Secret', id: VICTIM_ID }, 'x', { type: 'Secret', id: VICTIM_ID })",
    "await db.related({ type: 'Secret', id: VICTIM_ID }, null, 'both')",
    f"import {{ payroll }} from '{VICTIM_MODULE_ID}'\npayroll()",
    f"(await import('{VICTIM_MODULE_ID}')).payroll()",
    "user.current()",
    "user.session()",
    # Escapes and values that JSON cannot carry.
    "this.constructor.constructor('return process')().env",
    "globalThis.process",
    "require('fs')",
    "await import('fs')",
    "10n",
    "(() => { const a: any = {}; a.a = a; return a })()",
    "Symbol('x')",
    "() => 1",
    "new Date(NaN)",
    "await new Promise(() => {})",
    "function f(): number { return f() + 1 }\nf()",
    "db.md",
    "nope.md",
]
# Rarely: each costs the whole budget, or a runner restart.
EXPENSIVE = ["while (true) {}", "const a = []\nwhile (true) a.push(new Array(1e6).fill(1))"]
CHEAP_SCRIPTS = st.one_of(
    st.lists(st.sampled_from(SNIPPETS), min_size=1, max_size=3).map("\n".join),
    st.lists(st.sampled_from(SNIPPETS), min_size=1, max_size=3).map("\n".join),
    st.sampled_from(SNIPPETS).map(lambda snippet: snippet + "\n//" + "x" * 90_000),
    st.text(max_size=40),
    st.text(st.characters(codec=None, exclude_categories=["Cs"]), max_size=20),
    st.integers(0, 3).map(lambda n: "{" * n + "1" + "]" * (3 - n)),
)
SCRIPTS = weighted((15, CHEAP_SCRIPTS), (1, st.sampled_from(EXPENSIVE)))
MODULES = st.one_of(
    st.sampled_from(
        [
            "---\n$id: /attacker/flow\n---\non('Order.created', async () => {})",
            f"---\n$type: Workflow\n$id: {VICTIM_MODULE_ID}\n---\nexport function payroll() {{ return 'owned' }}",
            "---\n$id: /x\n---\nawait db.create('Pwned', {})",
            "---\n$id: [\n---\n1",
            "---\n---\n",
            "no frontmatter at all",
            "---\n$id: /laughs\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n---\n1",
            "---\n$id: /every\n---\nevery('* * * * * *', async () => {})",
            "---\n$id: !!python/object/apply:os.system ['true']\n---\n",
            "---\n$id: /x\n---\n```ts run\n{\n```",
        ]
    ),
    st.text(max_size=60).map(lambda body: "---\n$id: /generated\n---\n" + body),
)
NOT_STRINGS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
ARGUMENT_KEYS = st.sampled_from(
    [
        *("script", "module", "kind", "code", "nonce", "readonly", "user", "limits", "id", "type", "exec"),
        *("preload", "invoke", "key", "__proto__", "Script", "", "script ", "\x00", "\ud800"),
    ]
)
# Arguments refused by their shape alone, before any sandbox work.
NO_RUN = st.one_of(
    NOT_STRINGS,
    st.sampled_from(["1 + 1", b"1 + 1", ("script", "1"), object(), [{"script": "1"}]]),
    st.dictionaries(ARGUMENT_KEYS.filter(lambda key: key not in ("script", "module")), CHEAP_SCRIPTS, max_size=3),
    st.fixed_dictionaries({"script": NOT_STRINGS}, optional={"module": NOT_STRINGS}),
    st.fixed_dictionaries({"script": st.sampled_from(["", " ", "\n\t", "\u3000"])}),
    st.tuples(CHEAP_SCRIPTS, st.sampled_from(["\ud800", "\udfff", "\udbff\udbff"])).map(
        lambda parts: {"script": parts[0] + parts[1]}
    ),
    st.fixed_dictionaries({"script": CHEAP_SCRIPTS, "kind": st.sampled_from(["module", "handler"]) | NOT_STRINGS}),
    st.fixed_dictionaries({"module": MODULES, "nonce": st.text(max_size=8)}),
)
# Mostly scripts that run: the shapes alone are NO_RUN's test.
ARGUMENTS = weighted(
    (6, st.fixed_dictionaries({"script": SCRIPTS})),
    (1, st.fixed_dictionaries({"module": MODULES}, optional={"script": SCRIPTS})),
    (1, NO_RUN),
)


def with_victim(arguments: Any, victim_id: str) -> Any:
    if isinstance(arguments, dict):
        return {
            key: value.replace(V, repr(victim_id)) if isinstance(value, str) else value
            for key, value in arguments.items()
        }
    return arguments


# -- checks -------------------------------------------------------------------------------------------------


def check_shape(result: Any) -> None:
    """A result an MCP client can be sent: text items of valid Unicode; an error is one text with a kind."""
    assert isinstance(result, ToolResult)
    assert result.texts and all(isinstance(text, str) for text in result.texts)
    for text in result.texts:
        text.encode("utf-8")  # strict: a lone surrogate cannot go over the wire
    if result.is_error:
        assert len(result.texts) == 1 and result.error_kind, result
        assert "Traceback" not in result.texts[0]
    else:
        assert isinstance(result.structured, dict)
        json.dumps(result.structured, allow_nan=False)


def shown(result: ToolResult) -> str:
    return "\n".join(result.texts) + json.dumps(result.structured, default=repr)


def rows_by_tenant(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        return dict(conn.execute("SELECT tenant, COUNT(*) FROM entities GROUP BY tenant").fetchall())


async def check_victim_untouched(world: World) -> None:
    store = world.app.adapters.store
    assert await store.list("victim", "Secret", ListQuery(limit=1000)) == world.secrets
    assert rows_by_tenant(world.database).get("victim") == len(world.secrets)
    assert await world.app.adapters.modules.list("victim") == [world.module]
    for tenant in (ATTACKER.tenant, ANONYMOUS.tenant):
        for record in await store.list(tenant, "Secret", ListQuery(limit=1000)):
            assert MARKER not in json.dumps(record), (tenant, record)


async def check_still_serving(world: World, caller: Identity) -> None:
    result = await world.app.tool.call({"script": "1 + 1"}, caller)
    assert not result.is_error, result.texts
    assert result.structured is not None and result.structured["value"] == 2


# -- properties -------------------------------------------------------------------------------------------


@SHAPES
@given(arguments=NO_RUN)
# Minimal failing example: tool.parse_arguments puts an unknown argument's name into its message as is
# (f"Unknown argument '{unknown[0]}'"), not escaped with mcpdo.inputs.quote, so a lone surrogate in the name
# makes a result text that cannot be encoded as UTF-8 (a NUL or control character is echoed raw too).
@example(arguments={"\ud800": "1 + 1"})
async def test_arguments_without_a_script_or_module_are_refused_without_running(world: World, arguments: Any) -> None:
    # No sandbox work: every one of these is an error result from the argument checks alone.
    result = await world.app.tool.call(arguments, ATTACKER)
    check_shape(result)
    assert result.is_error and result.error_kind == "InputError", result.texts


@TOOL_INPUTS
@given(arguments=ARGUMENTS, caller=CALLERS)
@example(arguments={"script": "await db.create('Pwned', { n: 1 })"}, caller=ANONYMOUS)
@example(arguments={"script": "await db.get('Secret', VICTIM_ID)"}, caller=ATTACKER)
@example(arguments={"script": "await db.list('Secret')"}, caller=ANONYMOUS)
@example(arguments={"script": SNIPPETS[5], "kind": "module"}, caller=ATTACKER)
@example(arguments={"script": "while (true) {}"}, caller=ANONYMOUS)
@example(arguments={"script": EXPENSIVE[1]}, caller=ATTACKER)  # the runner is replaced; the next call works
@example(arguments={"module": "---\n$id: /m\n---\n1"}, caller=ANONYMOUS)
async def test_any_input_gets_a_result_and_leaves_the_tool_and_other_tenants_intact(
    world: World, arguments: Any, caller: Identity
) -> None:
    result = await world.app.tool.call(with_victim(arguments, world.victim_id), caller)
    event(f"{'anonymous' if caller.is_anonymous else 'keyed'}: {result.error_kind or 'value'}")
    check_shape(result)
    assert MARKER not in shown(result), result.texts
    assert rows_by_tenant(world.database).get(ANONYMOUS.tenant, 0) == 0  # anonymous callers write nothing
    await check_victim_untouched(world)
    await check_still_serving(world, caller)


async def test_afterwards_the_victim_is_served_normally_and_others_still_see_nothing(world: World) -> None:
    app, victim_id = world.app, world.victim_id
    for caller in (ATTACKER, ANONYMOUS):
        for script in (f"await db.get('Secret', '{victim_id}')", "await db.list('Secret', { where: { n: 1 } })"):
            result = await app.tool.call({"script": script}, caller)
            assert not result.is_error, result.texts
            assert result.structured is not None
            # The hostile calls may have made a Secret of the same id in their own tenant: never the victim's.
            assert MARKER not in json.dumps(result.structured["value"]), result.texts
    anonymous_rows = rows_by_tenant(world.database).get(ANONYMOUS.tenant, 0)
    assert anonymous_rows == 0  # anonymous callers wrote nothing
    mine = await app.tool.call({"script": "await db.list('Secret', { sort: { n: 'asc' } })"}, VICTIM)
    assert not mine.is_error and mine.structured is not None
    assert mine.structured["value"] == world.secrets
    imported = await app.tool.call({"script": f"import {{ payroll }} from '{VICTIM_MODULE_ID}'\npayroll()"}, VICTIM)
    assert not imported.is_error and imported.structured is not None
    assert imported.structured["value"] == MARKER
