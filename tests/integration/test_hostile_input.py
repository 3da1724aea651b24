"""Hostile and sloppy input: each gets a clear error, the server keeps serving, stored data stays intact."""

from __future__ import annotations

import re
import time

import pytest
from mcp.shared.exceptions import MCPError

from tests.support.client import connect, text_of, value_of
from tests.support.server import RunningServer

pytestmark = pytest.mark.anyio

# (name, script, what the error text must contain). Budgets in the test server: 0.5 s anonymous, 3 s keyed.
HOSTILE = [
    ("syntax error", "const x = {\n  a: 1,\n  b: \n}", "SyntaxError: "),
    ("binary garbage", "\x00\x01\x02\xff\xfe garbage \x7f\x1b[31m", "SyntaxError: "),
    ("infinite loop", "while (true) {}", "Execution timeout after 3000ms"),
    ("memory bomb", "const a = []\nwhile (true) a.push('x'.repeat(16_000_000) + a.length)", "Memory limit"),
    ("unbounded recursion", "function f(n) { return f(n + 1) + 1 }\nf(0)", "tack"),
    ("50 MB result", "'x'.repeat(50 * 1024 * 1024)", "imit"),
    (
        "10,000 SDK calls",
        "await Promise.all(Array.from({ length: 10000 }, (_, i) => db.get('Order', 'ord_' + i)))",
        "SDK call limit exceeded",
    ),
    ("constructor escape", "this.constructor.constructor('return process')().env", "Error: "),
    ("bigint result", "10n", "BigInt"),
]


@pytest.mark.parametrize(("name", "script", "expected"), HOSTILE, ids=[case[0] for case in HOSTILE])
async def test_hostile_script_gets_a_clear_error_and_the_server_keeps_serving_with_data_intact(
    server: RunningServer, name: str, script: str, expected: str
) -> None:
    async with connect(server.url, key=server.admin_key) as client:
        marker = value_of(await client.call_tool("do", {"script": "await db.create('Marker', { n: 1 })"}))
        started = time.monotonic()
        result = await client.call_tool("do", {"script": script})
        elapsed = time.monotonic() - started
        assert result.is_error, f"{name} did not fail: {text_of(result)[:200]}"
        assert expected in text_of(result)
        assert len(text_of(result)) < 2000
        assert elapsed < 3.0 + 1.5
        after = value_of(await client.call_tool("do", {"script": f"await db.get('Marker', '{marker['id']}')"}))
        assert after == marker
        assert value_of(await client.call_tool("do", {"script": "1 + 1"})) == 2


async def test_a_loop_inside_json_parse_of_a_huge_string_is_stopped_within_its_budget_plus_a_second(
    server: RunningServer,
) -> None:
    # 0.4-0.7 s inside each JSON.parse call, where the engine's interrupt check never runs: the budget of the
    # test server (500 ms) runs out inside one of them, and the watchdog or the check after it stops the script.
    script = "const s = '[' + '1,'.repeat(5_000_000) + '1]'\nJSON.parse(s).length + JSON.parse(s).length"
    async with connect(server.url) as client:
        started = time.monotonic()
        result = await client.call_tool("do", {"script": script})
        elapsed = time.monotonic() - started
        assert result.is_error
        assert text_of(result) == "Execution timeout after 500ms"
        assert elapsed < 0.5 + 1.0
        assert value_of(await client.call_tool("do", {"script": "1 + 1"})) == 2


async def test_a_5_mb_script_is_refused_with_the_script_size_limit(server: RunningServer) -> None:
    script = "// " + "x" * (5 * 1024 * 1024)
    async with connect(server.url) as client:
        result = await client.call_tool("do", {"script": script})
        assert result.is_error
        assert text_of(result) == f"Script too large: {len(script)} bytes exceeds the 102400-byte limit"
        assert value_of(await client.call_tool("do", {"script": "1"})) == 1


async def test_an_anonymous_infinite_loop_stops_at_the_anonymous_budget(server: RunningServer) -> None:
    async with connect(server.url) as client:
        result = await client.call_tool("do", {"script": "for (;;) {}"})
    assert result.is_error
    assert text_of(result) == "Execution timeout after 500ms"


async def test_a_runtime_error_points_at_the_line_and_column_of_the_callers_typescript(server: RunningServer) -> None:
    script = "interface O { name: string }\nconst o: O | undefined = undefined as any\nconst n: string = o!.name"
    async with connect(server.url) as client:
        result = await client.call_tool("do", {"script": script})
    assert result.is_error
    assert text_of(result).startswith("Error: ")
    assert re.search(r"\n    at line 3:(19|20|21|22)$", text_of(result)), text_of(result)


async def test_an_unknown_tool_name_is_a_protocol_error_and_the_server_keeps_serving(server: RunningServer) -> None:
    async with connect(server.url) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("delete_everything", {})
        assert caught.value.code == -32602 and "one tool, 'do'" in caught.value.message
    async with connect(server.url) as client:
        assert text_of(await client.call_tool("do", {"script": "1 + 1"})) == "2"
