"""TypeScript and imports in the combinations models write: an import with a top-level `return` and type
annotations, dynamic `import('<$id>')`, and what cannot work (an enum with a top-level `return`, an import
after other statements in a script that returns) refused with an error that says what to write instead."""

from __future__ import annotations

import pytest
from mcpdo.errors import ScriptRuntimeError, ScriptSyntaxError
from mcpdo.sandbox import Sandbox

from .test_modules import BASE, run, store_host

pytestmark = pytest.mark.anyio

MATH = "export const double = (x: number): number => x * 2\nexport default 'math'\n"


@pytest.mark.parametrize(
    "code",
    [
        f"import {{ double }} from '{BASE}math'\n"
        "try { throw new Error('x') } catch (e: any) { }\nreturn double(21)",
        f"import {{ double }} from '{BASE}math'\nconst n: number = double(21)\nreturn n",
        f"// helpers\nimport {{\n  double,\n}} from '{BASE}math';\n\nimport name from '{BASE}math'\n"
        "const n: number = double(21)\nreturn n",
        f"import * as m from '{BASE}math' // all of it\n"
        "interface P { n: number }\nconst p: P = { n: m.double(21) }\nreturn p.n",
    ],
)
async def test_an_import_a_top_level_return_and_types_work_together(sandbox: Sandbox, code: str) -> None:
    assert (await run(sandbox, code, store_host({"math": MATH}))).value == 42


async def test_errors_in_such_a_script_point_at_the_callers_line_and_column(sandbox: Sandbox) -> None:
    positions = []
    for head in (f"import {{ double }} from '{BASE}math'", "const double = (x: number) => x * 2 // local"):
        code = f"{head}\nconst n: number = double(1)\nconst o: any = null\nreturn o.missing.x"
        with pytest.raises(ScriptRuntimeError) as info:
            await run(sandbox, code, store_host({"math": MATH}))
        positions.append((info.value.line, info.value.column))
    assert positions[0] == positions[1] and positions[0][0] == 4


async def test_dynamic_import_loads_a_stored_module(sandbox: Sandbox) -> None:
    host = store_host({"math": MATH})
    code = (
        f"const m = await import('{BASE}math')\n"
        "const f = async () => (await import('./math')).default\n[m.double(2), await f()]"
    )
    assert (await run(sandbox, code, host)).value == [4, "math"]
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, f"await import('{BASE}nope')", host)
    assert "not found" in info.value.message


async def test_an_enum_works_and_with_a_top_level_return_says_what_to_write(sandbox: Sandbox) -> None:
    assert (await run(sandbox, "enum Color { Red, Green }\nColor.Green")).value == 1
    with pytest.raises(ScriptSyntaxError) as info:
        await run(sandbox, "enum Color { Red, Green }\nconst c: Color = Color.Green\nreturn c")
    assert "cannot be combined with TypeScript that has to be compiled" in info.value.message
    assert "instead of `return value`" in info.value.message and info.value.line == 3


async def test_an_import_after_other_statements_with_a_return_says_to_move_it(sandbox: Sandbox) -> None:
    code = f"const a: number = 1\nimport {{ double }} from '{BASE}math'\nreturn double(a)"
    with pytest.raises(ScriptSyntaxError) as info:
        await run(sandbox, code, store_host({"math": MATH}))
    assert "imports must come first" in info.value.message and info.value.line == 2
    # Without the `return` the same script is fine: imports may come anywhere in module code.
    ok = f"const a: number = 1\nimport {{ double }} from '{BASE}math'\ndouble(a)"
    assert (await run(sandbox, ok, store_host({"math": MATH}))).value == 2
