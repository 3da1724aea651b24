"""`$.Type(props)` records reach the host with the result, through the real runner: what each construction was
given (type name, own keys), distinct and bounded; the vocabulary turns them into warnings, and a served `do`
call shows them."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from mcpdo.errors import ScriptRuntimeError
from mcpdo.sandbox import ExecutionRequest, ExecutionResult, Limits, Sandbox
from mcpdo.vocabulary import Vocabulary, default_schemas_dir

from tests.support.server import RunningServer

from .conftest import RecordingHost


async def run(sandbox: Sandbox, code: str) -> ExecutionResult:
    with anyio.fail_after(15):
        return await sandbox.execute(ExecutionRequest(code=code, limits=Limits(), readonly=False), RecordingHost())


@pytest.mark.anyio
async def test_each_distinct_construction_comes_back_with_the_result(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        """
        const alice = $.Person({ nmae: 'Alice', email: 'a@example.com' })
        $.Person({ nmae: 'Bob', email: 'b@example.com' })
        $.Organization()
        $.Order({ customer: alice, seller: $.Organization({ id: 'org_1' }) })
        alice.nmae
        """,
    )
    assert result.value == "Alice"
    assert result.constructed == (
        ("Person", ("nmae", "email")),
        ("Organization", ("id",)),
        ("Order", ("customer", "seller")),
    )


@pytest.mark.anyio
async def test_a_script_without_dollar_has_no_records(sandbox: Sandbox) -> None:
    result = await run(sandbox, "1 + 1")
    assert result.constructed == ()


@pytest.mark.anyio
async def test_records_are_bounded_in_count_keys_and_length(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        """
        const wide = {}
        for (let i = 0; i < 200; i++) wide['k' + i] = i
        $.Thing(wide)
        $.Thing({ ['x'.repeat(5000)]: 1 })
        $['Y'.repeat(5000)]({ a: 1 })
        for (let i = 0; i < 500; i++) $.Product({ ['p' + i]: i })
        'done'
        """,
    )
    assert result.value == "done"
    assert len(result.constructed) == 64
    assert result.constructed[0] == ("Thing", tuple(f"k{i}" for i in range(64)))
    assert result.constructed[1] == ("Thing", ("x" * 100,))
    assert result.constructed[2] == ("Y" * 100, ("a",))
    assert all(name == "Product" for name, _ in result.constructed[3:])


@pytest.mark.anyio
async def test_the_vocabulary_turns_the_records_into_a_warning(sandbox: Sandbox) -> None:
    result = await run(sandbox, "$.Person({ nmae: 'x', id: 'per_1', $extra: 1 }); $.Ticketing({ nmae: 1 }); null")
    vocabulary = Vocabulary.at(default_schemas_dir(None))
    assert vocabulary.unknown_properties_warnings(result.constructed) == (
        "$.Person({ nmae }): \"nmae\" is not a schema.org Person property (did you mean 'name'?)",
    )


@pytest.mark.anyio
async def test_a_construction_that_throws_records_nothing_and_the_script_goes_on(sandbox: Sandbox) -> None:
    result = await run(
        sandbox,
        """
        let caught = ''
        try { $.Person({ name: 'a', get email() { throw new Error('boom') } }) } catch (e) { caught = e.message }
        $.Person({ givenName: 'b' })
        caught
        """,
    )
    assert result.value == "boom"
    assert result.constructed == (("Person", ("givenName",)),)


@pytest.mark.anyio
async def test_an_uncaught_error_still_fails_as_before(sandbox: Sandbox) -> None:
    with pytest.raises(ScriptRuntimeError, match="boom"):
        await run(sandbox, "$.Person({ get name() { throw new Error('boom') } })")


def _do(server: RunningServer, script: str) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "do", "arguments": {"script": script}},
    }
    response = httpx.post(
        server.url,
        content=json.dumps(body),
        timeout=60,
        headers={
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": "2025-11-25",
            "Authorization": f"Bearer {server.admin_key}",
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["result"])


def test_a_served_script_shows_the_unknown_property_warning(server: RunningServer) -> None:
    result = _do(server, "$.Person({ nmae: 'Alice' })")
    assert not result.get("isError"), result
    warnings = result["structuredContent"]["warnings"]
    assert warnings == ["$.Person({ nmae }): \"nmae\" is not a schema.org Person property (did you mean 'name'?)"]
    assert any("did you mean 'name'?" in item["text"] for item in result["content"])
    clean = _do(server, "$.Person({ name: 'Alice', id: 'per_1' })")
    assert "warnings" not in clean["structuredContent"]
