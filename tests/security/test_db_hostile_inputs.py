"""Hostile `db` inputs through the real server, sandbox and store: each attack gets a clear error naming what
was wrong (never `Internal error`, a Python traceback or a truncated message), another tenant's records stay
exactly as they were, and the next call works."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.client import connect, text_of, value_of
from tests.support.server import RunningServer
from tests.support.sync import call_tool
from tests.support.victim import make_victim

pytestmark = pytest.mark.anyio

DEEP = "let w: any = {{ a: 1 }}\nfor (let i = 0; i < {n}; i++) w = {wrap}\n"
# The runner refuses values nested deeper than its own limit before they reach the host; the host refuses
# a `where` deeper than 32 levels. Either way the message names a nesting limit.
NESTING_LIMIT = re.compile(r"nested too deeply \(more than 32 levels|nested more than \d+ levels deep")
RECORD_NESTING_LIMIT = re.compile(r"nested too deeply \(more than 64 levels|nested more than \d+ levels deep")


def contains(text: str) -> Callable[[str], bool]:
    return lambda result: text in result


def matches(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda result: pattern.search(result) is not None


def surrogate_refused(result: str) -> bool:
    # The runner may refuse the string as it crosses the bridge; the host refuses it otherwise.
    return "lone surrogate" in result and "valid Unicode" in result


# (name, script, check of the error text)
ATTACKS: list[tuple[str, str, Callable[[str], bool]]] = [
    (
        "offset 1e20",
        "await db.list('Order', { offset: 1e20 })",
        contains("offset must be between 0 and 1000000000, got 100000000000000000000"),
    ),
    (
        "offset NaN-like string",
        "await db.list('Order', { offset: 'NaN' })",
        contains("offset must be between 0 and 1000000000, got 'NaN'"),
    ),
    (
        "offset boolean",
        "await db.list('Order', { offset: true })",
        contains("offset must be between 0 and 1000000000, got true"),
    ),
    (
        "ifVersion 1e20",
        "const r = await db.create('Order', { n: 1 })\nawait db.update('Order', r.id, { n: 2 }, { ifVersion: 1e20 })",
        contains("ifVersion must be between 1 and 9007199254740991, got 100000000000000000000"),
    ),
    (
        "$inc to infinity",
        "const r = await db.create('Product', { stock: 1e308 })\n"
        "await db.update('Product', r.id, { stock: { $inc: 1e308 } })",
        contains(
            "$inc on field 'stock' needs a finite number between -9007199254740991 and 9007199254740991, got 1e+308"
        ),
    ),
    (
        "createdAt past year 9999",
        "await db.create('Order', { createdAt: 8e15 })",
        contains("createdAt must be a date of the years 0001 to 9999"),
    ),
    (
        "relative time overflow",
        "await db.list('Order', { where: { at: { after: '9'.repeat(400) + ' days ago' } } })",
        contains("'after' on field 'at' needs a date, an epoch-ms number or a relative time"),
    ),
    (
        "2,000-deep $or",
        DEEP.format(n=2000, wrap="{ $or: [w] }") + "await db.list('Order', { where: w })",
        matches(NESTING_LIMIT),
    ),
    (
        "2,000-deep $and",
        DEEP.format(n=2000, wrap="{ $and: [w, { b: 1 }] }") + "await db.list('Order', { where: w })",
        matches(NESTING_LIMIT),
    ),
    (
        "2,000-deep $not",
        DEEP.format(n=2000, wrap="{ $not: w }") + "await db.list('Order', { where: w })",
        matches(NESTING_LIMIT),
    ),
    (
        "2,000-deep nested field objects",
        DEEP.format(n=2000, wrap="{ a: w }") + "await db.list('Order', { where: w })",
        matches(NESTING_LIMIT),
    ),
    (
        "20-deep $or",
        DEEP.format(n=20, wrap="{ $or: [w] }") + "await db.list('Order', { where: w })",
        matches(NESTING_LIMIT),
    ),
    (
        "40-deep $not",
        DEEP.format(n=40, wrap="{ $not: w }") + "await db.list('Order', { where: w })",
        matches(NESTING_LIMIT),
    ),
    (
        "3,000 conditions",
        "await db.list('Order', { where: { $or: Array.from({ length: 1500 }, (_, n) => ({ n })) } })",
        contains("where is too large (more than 2000 keys and array items in all)"),
    ),
    (
        "NUL in a where field",
        "await db.list('Order', { where: { 'a\\u0000b': 1 } })",
        contains("Field 'a\\x00b' contains a control character (\\x00); names cannot contain control characters"),
    ),
    (
        "NUL in a sort key",
        "await db.list('Order', { sort: { 'total\\u0000x': 'asc' } })",
        contains("Field 'total\\x00x' contains a control character (\\x00)"),
    ),
    (
        "NUL in a cursor",
        "await db.list('Order', { cursor: 'ord_\\u0000x' })",
        contains("cursor must be the id of the last record of the previous page, got 'ord_\\x00x'"),
    ),
    (
        "NUL in a data field name",
        "await db.create('Order', { 'a\\u0000b': 1 })",
        contains("db.create(): field name 'a\\x00b' contains a control character (\\x00)"),
    ),
    (
        "NUL in a nested data field name",
        "await db.create('Order', { customer: { 'e\\u0000mail': 'x' } })",
        contains("db.create(): field name 'e\\x00mail' contains a control character (\\x00)"),
    ),
    (
        "NUL in an id",
        "await db.get('Order', 'ord_\\u0000x')",
        contains("db.get(): id 'ord_\\x00x' contains a control character (\\x00)"),
    ),
    (
        "NUL in a related id",
        "await db.related({ type: 'Order', id: 'ord_\\u0000x' })",
        contains("db.related(): from id 'ord_\\x00x' contains a control character (\\x00)"),
    ),
    (
        "NUL in a relation",
        "const a = await db.create('Order', { n: 1 })\nawait db.relate(a, 'r\\u0000el', a)",
        contains("db.relate(): the relation 'r\\x00el' contains a control character (\\x00)"),
    ),
    ("newline after a type", "await db.list('Order\\n')", contains("type must be a name like 'Order', got 'Order\\n'")),
    ("lone surrogate in data", "await db.create('Order', { name: '\\ud800' })", surrogate_refused),
    ("lone surrogate in a data key", "await db.create('Order', { ['n\\udc00']: 1 })", surrogate_refused),
    ("lone surrogate in an id", "await db.get('Order', '\\ud800')", surrogate_refused),
    ("lone surrogate in a where value", "await db.list('Order', { where: { name: 'x\\ud800' } })", surrogate_refused),
    (
        "lone surrogate in a type",
        "await db.create('Order\\ud800', {})",
        lambda result: surrogate_refused(result) or "got 'Order\\ud800'" in result,
    ),
    (
        "100-deep record data",
        DEEP.format(n=100, wrap="{ d: w }") + "await db.create('Order', { w })",
        matches(RECORD_NESTING_LIMIT),
    ),
]


@pytest.fixture(scope="module")
def keys(server: RunningServer) -> dict[str, str]:
    return {
        "attacker": server.new_key("db-attacker", "--tenant", "db-attackers"),
        "victim": server.new_key("db-victim", "--tenant", "db-victims"),
    }


async def run(server: RunningServer, key: str, script: str) -> Any:
    async with connect(server.url, key=key) as client:
        return await client.call_tool("do", {"script": script})


async def snapshot(server: RunningServer, key: str) -> Any:
    return value_of(
        await run(server, key, "[await db.list('Order', { limit: 1000 }), await db.list('Product', { limit: 1000 })]")
    )


@pytest.mark.parametrize(("name", "script", "check"), ATTACKS, ids=[attack[0] for attack in ATTACKS])
async def test_each_hostile_db_input_gets_its_clear_error_and_other_callers_data_is_unchanged(
    server: RunningServer, keys: dict[str, str], name: str, script: str, check: Callable[[str], bool]
) -> None:
    victim = value_of(
        await run(server, keys["victim"], "await db.create('Order', { status: 'pending', total: 5, n: 1 })")
    )
    value_of(await run(server, keys["victim"], "await db.create('Product', { stock: 10 })"))
    before = await snapshot(server, keys["victim"])
    mine = value_of(await run(server, keys["attacker"], "await db.create('Marker', { n: 1 })"))

    result = await run(server, keys["attacker"], script)

    text = text_of(result)
    assert result.is_error, f"{name} did not fail: {text[:300]}"
    assert check(text), f"{name}: {text[:500]}"
    for leak in (
        "Internal error",
        "Traceback",
        "RecursionError",
        "OverflowError",
        "UnicodeEncodeError",
        "maximum recursion",
        "sqlite",
        "\x00",
    ):
        assert leak not in text, f"{name}: {text[:500]}"
    assert len(text) < 2000
    assert await snapshot(server, keys["victim"]) == before
    assert value_of(await run(server, keys["victim"], f"await db.get('Order', '{victim['id']}')")) == victim
    assert value_of(await run(server, keys["attacker"], f"await db.get('Marker', '{mine['id']}')")) == mine
    assert value_of(await run(server, keys["attacker"], "1 + 1")) == 2


async def test_lists_at_the_limits_still_work_after_the_attacks(server: RunningServer, keys: dict[str, str]) -> None:
    # 1,000 `in` values and 30 levels of alternating negations compile within SQLite's own limits.
    created = value_of(await run(server, keys["attacker"], "await db.create('Order', { n: 7, leaf: 'x' })"))
    script = (
        "const ins = await db.list('Order', { where: { n: { in: Array.from({ length: 1000 }, (_, i) => i) } } })\n"
        "let w: any = { leaf: 'x' }\n"
        "for (let i = 0; i < 29; i++) w = { $not: { ['k' + i]: { ne: 1 }, ...w } }\n"
        "const deep = await db.list('Order', { where: w, offset: 1000000000 })\n"
        ";({ ins: ins.map(r => r.id), deep: deep.length })"
    )
    found = value_of(await run(server, keys["attacker"], script))
    assert created["id"] in found["ins"]
    assert found["deep"] == 0


@pytest.mark.parametrize("argument", ["script", "module"])
def test_a_lone_surrogate_in_the_tools_text_is_refused_and_nothing_is_stored(
    server: RunningServer, keys: dict[str, str], argument: str
) -> None:
    # JSON escapes (`"\ud800"`) can carry text no store can encode: the server's JSON parser refuses it
    # before the tool (which would refuse it too, by name: tests/unit/test_tool.py).
    victim = make_victim(server, f"surrogate-victim-{argument}")
    text = (
        "---\n$id: https://acme.test/surrogate\n$type: Workflow\n---\n# Bad \ud800 title\n\n"
        "```ts\nexport const a = await db.create('Pwned', { n: 1 })\n```\n"
        if argument == "module"
        else "await db.create('Pwned', { note: '\ud800' })"
    )
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "do", "arguments": {argument: text}}}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-11-25",
        "Authorization": f"Bearer {keys['attacker']}",
    }
    response = httpx.post(server.url, content=json.dumps(body), headers=headers, timeout=60)
    error = response.json()["error"]
    assert error["code"] == -32700 and "escape" in error["message"]
    assert call_tool(server, keys["attacker"], {"script": "await db.list('Pwned')"}) == (False, "[]")
    victim.assert_untouched()
