"""Line-start hazards at the top level: a line that starts with `(`, `[` or a template literal after a
complete statement is the new statement its writer meant (with a warning naming the line), never a call,
index or tag of the line before; inside functions, classes and blocks JavaScript's reading stands; error
positions stay exact."""

from __future__ import annotations

from typing import Any

import pytest
from mcpdo.errors import ScriptRuntimeError
from mcpdo.sandbox import ExecutionRequest, ExecutionResult, Limits, Sandbox

from .conftest import RecordingHost

pytestmark = pytest.mark.anyio


async def run(sandbox: Sandbox, code: str, host: RecordingHost | None = None) -> ExecutionResult:
    request = ExecutionRequest(code=code, limits=Limits(), readonly=False)
    return await sandbox.execute(request, host or RecordingHost())


def created(host: RecordingHost) -> list[Any]:
    return [args for name, args in host.calls if name == "db.create"]


@pytest.mark.parametrize(
    ("code", "value", "line"),
    [
        # a call of the line before
        ("const a = 1\n(a + 1)", 2, 2),
        ("const xs = [1, 2].map(x => x * 2)\n(xs.length)", 2, 2),
        ("let n = 40\nn += 1\n(n + 1)", 42, 3),
        # an index of the line before
        ("const pair = [3, 4]\n[pair[0], pair[1]].join('-')", "3-4", 2),
        ("const s = 'abc'\n[s.length]", [3], 2),
        # a tag of the line before
        ("const who = 'you'\n`hello ${who}`", "hello you", 2),
        # TypeScript, with an indented continuation line
        ("const total: number = [1, 2, 3].reduce((a, b) => a + b, 0)\n  (total * 2)", 12, 2),
        # the object result after a call (the reference's own style)
        (
            "const orders = [{ t: 1 }]\nconst revenue = orders.reduce((s, o) => s + o.t, 0)\n({ revenue })",
            {"revenue": 1},
            3,
        ),
    ],
)
async def test_a_top_level_line_start_is_a_new_statement_with_a_warning(
    sandbox: Sandbox, code: str, value: Any, line: int
) -> None:
    result = await run(sandbox, code)
    assert result.value == value
    [warning] = result.warnings
    assert warning.startswith(f"Line {line} starts with") and f"line {line - 1}" in warning


async def test_the_create_then_list_script_runs_both_and_returns_the_count(sandbox: Sandbox) -> None:
    host = RecordingHost({"db.list": [{"id": "x_1"}, {"id": "x_2"}]})
    code = "await db.create('X', { a: 1 })\n(await db.list('X')).length"
    result = await run(sandbox, code, host)
    assert result.value == 2 and created(host) == [["X", {"a": 1}]]
    assert result.warnings[0].startswith('Line 2 starts with "("')


@pytest.mark.parametrize(
    ("code", "value"),
    [
        # inside a function: JavaScript's reading (the line calls the one before)
        ("function f() {\n  const g = (x: number) => x\n  return g\n  (5)\n}\nf()", 5),
        ("const h = () => {\n  const k = (x: number) => x * 3\n  return k\n  (2)\n}\nh()", 6),
        # inside a block
        ("let out = 0\n{\n  const m = (x: number) => x + 1\n  out = m\n  (1)\n}\nout", 2),
        # a call on the same line, an optional call, a continued expression that is no hazard
        ("const f = (x: number) => x + 1\nf(1)", 2),
        ("const o = { f: (x: number) => x }\no.f?.\n(7)", 7),
        ("const v = [1, 2]\n  .map(x => x + 1)\n  .length\nv", 2),
    ],
)
async def test_inside_functions_and_blocks_and_without_a_hazard_nothing_changes(
    sandbox: Sandbox, code: str, value: Any
) -> None:
    result = await run(sandbox, code)
    assert result.value == value
    assert result.warnings == ()


async def test_a_function_body_keeps_javascripts_call(sandbox: Sandbox) -> None:
    code = "function f() {\n  const g = (x: number) => x * 10\n  const r = g\n  (4)\n  return r\n}\nf()"
    assert (await run(sandbox, code)).value == 40  # `g\n(4)` is one call in JavaScript
    assert (await run(sandbox, code)).warnings == ()


async def test_errors_after_a_split_point_at_the_callers_own_line_and_column(sandbox: Sandbox) -> None:
    positions = []
    for code in ("const a = 1\n(a.b.c)", "const a = 1;\n(a.b.c)"):  # split by the rule, and by the writer
        with pytest.raises(ScriptRuntimeError) as info:
            await run(sandbox, code)
        positions.append((info.value.line, info.value.column))
    assert positions[0] == positions[1] and positions[0][0] == 2
    code = "const t: number = 1\n  [t].map(x => x.y.z)"
    with pytest.raises(ScriptRuntimeError) as info:
        await run(sandbox, code)
    assert info.value.line == 2
