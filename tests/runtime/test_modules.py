"""Modules in the sandbox: imports through the host, exports, preloads, handler invocation, the ASI rule."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcpdo.errors import NotFound, ScriptRuntimeError, ScriptSyntaxError
from mcpdo.sandbox import ExecutionRequest, ExecutionResult, Limits, Sandbox
from mcpdo.sandbox.types import Invocation, ModuleSource

from .conftest import RecordingHost

pytestmark = pytest.mark.anyio

BASE = "https://x.test/modules/"


def store_host(modules: dict[str, str], **answers: Any) -> RecordingHost:
    """A host that answers `import` from a table of module code keyed by specifier (relative to BASE)."""

    async def do_import(spec: str) -> dict[str, str]:
        name = spec.removeprefix(BASE).removeprefix("./")
        if name not in modules:
            raise NotFound(f"Module {spec} not found")
        return {"id": BASE + name, "code": modules[name]}

    return RecordingHost({"import": do_import, **answers})


async def run(
    sandbox: Sandbox,
    code: str,
    host: RecordingHost | None = None,
    *,
    kind: str = "script",
    preload: tuple[ModuleSource, ...] = (),
    invoke: Invocation | None = None,
) -> ExecutionResult:
    request = ExecutionRequest(
        code=code,
        limits=Limits(),
        readonly=False,
        kind=kind,  # type: ignore[arg-type]
        preload=preload,
        invoke=invoke,
    )
    with anyio.fail_after(15):
        return await sandbox.execute(request, host or RecordingHost())


MATH = """
export const ONE = 1
export function add(a: number, b: number): number { return a + b }
export default function twice(x: number) { return x * 2 }
const hidden = 5
export { hidden as five }
"""


async def test_a_module_reports_its_exports_in_declaration_order_and_no_value(sandbox: Sandbox) -> None:
    code = (
        "\n\nexport const a = 1\nexport let b = 2, c = 3\nexport async function d() {}\nexport class E {}\n"
        "const f = 6\nexport { f, f as g }\nexport default { a }\n"
    )
    result = await run(sandbox, code, kind="module")
    assert result.exports == ("a", "b", "c", "d", "E", "f", "g", "default")
    assert result.is_undefined is True


async def test_named_aliased_default_and_namespace_imports(sandbox: Sandbox) -> None:
    host = store_host({"math": MATH})
    code = (
        f"import twice, {{ add, ONE as one }} from '{BASE}math'\n"
        f"import * as m from '{BASE}math'\n"
        "import type { Thing } from './math'\n"
        "({ sum: add(one, 2), doubled: twice(4), five: m.five, ns: Object.keys(m).sort(), same: m.add === add })"
    )
    result = await run(sandbox, code, host)
    assert result.value == {"sum": 3, "doubled": 8, "five": 5, "same": True, "ns": ["ONE", "add", "default", "five"]}
    # Loaded once per execution, cached by id.
    assert [c for c in host.calls if c[0] == "import"] == [("import", [f"{BASE}math"]), ("import", [f"{BASE}math"])]


async def test_an_imported_module_can_import_and_its_top_level_runs_once(sandbox: Sandbox) -> None:
    host = store_host(
        {
            "a": "import { add } from './math'\nconsole.log('a loaded')\nexport const three = add(1, 2)",
            "math": MATH,
        }
    )
    code = "import { three } from './a'\nimport { add } from './math'\nimport { three as t } from './a'\nadd(three, t)"
    result = await run(sandbox, code, host)
    assert result.value == 6
    assert [e.message for e in result.logs] == ["a loaded"]


async def test_an_import_cycle_is_a_clear_error(sandbox: Sandbox) -> None:
    host = store_host(
        {"a": "import { b } from './b'\nexport const a = 1", "b": "import { a } from './a'\nexport const b = 2"}
    )
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, "const x = 1\nimport { a } from './a'\na", host)
    assert "Import cycle" in info.value.message
    assert f"{BASE}a -> {BASE}b -> {BASE}a" in info.value.message
    assert info.value.line == 2


async def test_an_unknown_module_fails_at_the_import_line(sandbox: Sandbox) -> None:
    host = store_host({})
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, "const x = 1\n\n  import { nope } from './missing'\nnope()", host)
    assert info.value.message == "Module ./missing not found"
    assert (info.value.line, info.value.column) == (3, 3)


async def test_a_missing_export_is_a_clear_error(sandbox: Sandbox) -> None:
    host = store_host({"math": MATH})
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, "import { sub } from './math'\nsub(1, 2)", host)
    assert "has no export named 'sub'" in info.value.message
    assert info.value.line == 1


async def test_a_syntax_error_in_an_imported_module_names_the_module(sandbox: Sandbox) -> None:
    host = store_host({"bad": "export const a = 1\nexport const b = (\n"})
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, "\nimport { a } from './bad'\na", host)
    assert f"(in {BASE}bad at line" in info.value.message
    assert info.value.line == 2


async def test_a_throw_inside_an_imported_function_names_the_module_and_position(sandbox: Sandbox) -> None:
    host = store_host({"boom": "\n\nexport function boom(): never {\n    throw new Error('boom')\n}\n"})
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, "import { boom } from './boom'\nconst x = 1\nboom()", host)
    assert info.value.message == f"boom (in {BASE}boom at line 4:11)"
    assert (info.value.line, info.value.column) == (3, 1)


async def test_a_syntax_error_in_module_code_has_module_positions(sandbox: Sandbox) -> None:
    with pytest.raises(ScriptSyntaxError) as info:
        await run(sandbox, "\n\nexport const a = 1\nexport const b = ;\n", kind="module")
    assert (info.value.line, info.value.column) == (4, 18)


HANDLERS = """

import { helper } from './helper'

on('Order.created', async (order, event) => {
  return { total: helper(order.total), type: event.type }
})

every('0 9 * * *', (info) => ({ tick: info.at }))

on('Order.failed', (order) => {
    throw new Error(`failed ${order.id}`)
})
"""


async def test_invoke_calls_the_registered_handler_with_its_arguments(sandbox: Sandbox) -> None:
    host = store_host({"helper": "export const helper = (x: number) => x * 10\non('Ignored.event', () => 1)"})
    first = await run(
        sandbox, HANDLERS, host, kind="module", invoke=Invocation(0, ({"total": 4}, {"type": "Order.created"}))
    )
    assert first.value == {"total": 40, "type": "Order.created"}
    second = await run(sandbox, HANDLERS, host, kind="module", invoke=Invocation(1, ({"at": "09:00"},)))
    assert second.value == {"tick": "09:00"}
    # A delivery does not ask the host about registrations (it checked the owner before the execution).
    assert [c for c in host.calls if c[0] in ("on", "every")] == []
    # Registering keeps one index across on and every; the imported module's own on() registered nothing.
    host.calls.clear()
    await run(sandbox, HANDLERS, host, kind="module")
    registrations = [c for c in host.calls if c[0] in ("on", "every")]
    assert registrations == [("on", ["Order.created", 0]), ("every", ["0 9 * * *", 1]), ("on", ["Order.failed", 2])]


async def test_invoke_of_an_unknown_handler_is_a_clear_error(sandbox: Sandbox) -> None:
    host = store_host({"helper": "export const helper = (x: number) => x"})
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, HANDLERS, host, kind="module", invoke=Invocation(7, ()))
    assert "No handler number 7" in info.value.message
    assert "registered 3 handlers" in info.value.message


async def test_a_handler_error_points_into_the_module_text(sandbox: Sandbox) -> None:
    host = store_host({"helper": "export const helper = (x: number) => x"})
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, HANDLERS, host, kind="module", invoke=Invocation(2, ({"id": "ord_1"}, {})))
    assert info.value.message == "failed ord_1"
    assert (info.value.line, info.value.column) == (12, 11)


SETUP = """
on('Module.loaded', () => 'ignored')
export function setupShopHandlers(prefix: string) {
  on(`${prefix}.created`, (data) => ({ seen: data }))
  return 'ok'
}
"""


async def test_exported_setup_functions_register_in_the_importer(sandbox: Sandbox) -> None:
    host = store_host({"shop": SETUP})
    code = "\nimport { setupShopHandlers } from './shop'\n\nsetupShopHandlers('Order')\n"
    await run(sandbox, code, host, kind="module")
    assert [c for c in host.calls if c[0] == "on"] == [("on", ["Order.created", 0])]
    result = await run(sandbox, code, host, kind="module", invoke=Invocation(0, ({"id": 1}, {})))
    assert result.value == {"seen": {"id": 1}}


async def test_preloaded_exports_are_globals_for_the_script(sandbox: Sandbox) -> None:
    preload = (ModuleSource(f"{BASE}shop", SETUP), ModuleSource(f"{BASE}math", MATH))
    host = RecordingHost()
    result = await run(sandbox, "setupShopHandlers('Cart')\nconst r = add(ONE, five)\nr", host, preload=preload)
    assert result.value == 6
    assert result.exports == ("setupShopHandlers", "ONE", "add", "five")
    assert [c for c in host.calls if c[0] == "on"] == [("on", ["Cart.created", 0])]


async def test_a_throw_in_a_preloaded_function_names_the_module(sandbox: Sandbox) -> None:
    preload = (ModuleSource(f"{BASE}boom", "export function boom() {\n  throw new TypeError('bad')\n}"),)
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, "const a = 1\nboom()", preload=preload)
    assert info.value.message == f"bad (in {BASE}boom at line 2:9)"
    assert info.value.name == "TypeError"
    assert info.value.line == 2


async def test_a_preload_syntax_error_names_the_module(sandbox: Sandbox) -> None:
    preload = (ModuleSource(f"{BASE}bad", "\nexport const = 1"),)
    with pytest.raises(ScriptSyntaxError) as info:
        await run(sandbox, "1", preload=preload)
    assert f"(in {BASE}bad at line 2:" in info.value.message


async def test_a_call_starting_on_the_last_line_with_a_paren_is_the_result(sandbox: Sandbox) -> None:
    code = (
        "const orders = [{ total: 10 }, { total: 32 }]\n"
        "const revenue = orders.reduce((sum, o) => sum + o.total, 0)\n"
        "({ totalOrders: orders.length, revenue })"
    )
    assert (await run(sandbox, code)).value == {"totalOrders": 2, "revenue": 42}
    multi = "const xs: number[] = [1, 2]\nconst n = xs.map(x => x * 2)\n  .length\n({\n  n,\n  xs\n})\n"
    assert (await run(sandbox, multi)).value == {"n": 2, "xs": [1, 2]}
    awaited = "const n = await Promise.resolve(3)\n({ n })"
    assert (await run(sandbox, awaited)).value == {"n": 3}


async def test_a_leading_semicolon_object_and_a_same_line_call_are_unchanged(sandbox: Sandbox) -> None:
    assert (await run(sandbox, ";({ a: 1 })")).value == {"a": 1}
    assert (await run(sandbox, "const f = (x: number) => x + 1\nconst y = f(2)\n;({ a: y })")).value == {"a": 3}
    assert (await run(sandbox, "const f = (x: number) => x + 1\nf(2)")).value == 3


async def test_asi_rule_keeps_error_positions(sandbox: Sandbox) -> None:
    code = "const a = [1].reduce((s, x) => s + x, 0)\n({ b: a.c.d })"
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, code)
    assert info.value.line == 2
