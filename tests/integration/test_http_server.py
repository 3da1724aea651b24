"""The whole tool through the SDK's `Client` over HTTP, against a real `mcpdo serve` process."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.client import connect, text_of, value_of
from tests.support.server import RunningServer

pytestmark = pytest.mark.anyio


async def test_the_server_lists_exactly_one_tool_named_do_with_sdk_signatures(server: RunningServer) -> None:
    async with connect(server.url) as client:
        tools = (await client.list_tools()).tools
    assert [tool.name for tool in tools] == ["do"]
    description = tools[0].description or ""
    for signature in (
        "db: {",
        "ai: {",
        "api: {",
        "on: <Event>",
        "send: <Event>",
        "every: (schedule",
        "user: {",
        "$: Proxy",
    ):
        assert signature in description
    assert set(tools[0].input_schema["properties"]) == {"script", "module"}
    assert tools[0].title == "Run Business-as-Code"
    annotations = tools[0].annotations
    assert annotations is not None and annotations.open_world_hint is True and annotations.read_only_hint is False
    output = tools[0].output_schema or {}
    assert {"value", "logs", "durationMs", "error"} <= set(output["properties"])


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_structured_content_matches_the_declared_output_schema(server: RunningServer, mode: str) -> None:
    # The SDK's client checks every result against the tool's output schema, so these calls are the check.
    async with connect(server.url, server.admin_key, mode=mode) as client:
        for script in ("({ a: 1 })", "console.warn('x'); undefined", "db.md", "throw new Error('no')"):
            result = await client.call_tool("do", {"script": script})
            assert result.structured_content is not None and isinstance(result.structured_content["logs"], list)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_docs_are_resources_too(server: RunningServer, mode: str) -> None:
    async with connect(server.url, mode=mode) as client:
        listed = (await client.list_resources()).resources
        assert [str(r.uri) for r in listed][:2] == ["mcpdo://docs/$.md", "mcpdo://docs/db.md"] and len(listed) == 9
        read = await client.read_resource("mcpdo://docs/db.md")
        as_script = text_of(await client.call_tool("do", {"script": "db.md"}))
    [contents] = read.contents
    assert contents.mime_type == "text/markdown" and getattr(contents, "text", None) == as_script


def test_an_unknown_resource_and_an_unknown_tool_are_protocol_errors(server: RunningServer) -> None:
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    requests = {
        "resources/read": {"uri": "mcpdo://docs/secrets.md"},
        "tools/call": {"name": "rm", "arguments": {}},
    }
    for method, params in requests.items():
        body = {"jsonrpc": "2.0", "id": 3, "method": method, "params": params}
        answer = httpx.post(server.url, headers=headers, json=body).json()
        assert answer["error"]["code"] == -32602, answer
        assert "result" not in answer


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_script_returns_its_final_expression_in_both_protocol_generations(
    server: RunningServer, mode: str
) -> None:
    async with connect(server.url, mode=mode) as client:
        result = await client.call_tool("do", {"script": "const x = 10\nconst y = 32\nx + y"})
    assert value_of(result) == 42
    assert result.structured_content is not None
    assert result.structured_content["value"] == 42
    assert result.structured_content["logs"] == []
    assert result.structured_content["durationMs"] >= 0


async def test_console_output_comes_back_as_a_second_text_item_and_in_structured_logs(server: RunningServer) -> None:
    async with connect(server.url) as client:
        result = await client.call_tool("do", {"script": "console.log('hello', 1)\nconsole.warn('careful')\n7"})
    assert value_of(result) == 7
    assert [item.text for item in result.content[1:]] == ["hello 1\n[warn] careful"]  # type: ignore[union-attr]
    assert result.structured_content is not None
    assert [(log["level"], log["message"]) for log in result.structured_content["logs"]] == [
        ("log", "hello 1"),
        ("warn", "careful"),
    ]


async def test_a_call_without_arguments_is_an_error_result_with_the_exact_text(server: RunningServer) -> None:
    async with connect(server.url) as client:
        result = await client.call_tool("do", {})
    assert result.is_error
    assert text_of(result) == "At least one of 'script' or 'module' is required"


async def test_a_script_of_the_wrong_type_is_an_error_naming_the_argument(server: RunningServer) -> None:
    async with connect(server.url) as client:
        result = await client.call_tool("do", {"script": 42})
    assert result.is_error
    assert text_of(result) == "'script' must be a string, got a number"


@pytest.mark.parametrize(
    "name", ["$.md", "db.md", "ai.md", "api.md", "on.md", "send.md", "every.md", "user.md", "do.md"]
)
async def test_every_documentation_request_returns_markdown(server: RunningServer, name: str) -> None:
    async with connect(server.url) as client:
        result = await client.call_tool("do", {"script": name})
    assert not result.is_error
    assert text_of(result).startswith("#")
    assert len(text_of(result)) > 1000


async def test_an_unknown_documentation_request_lists_the_valid_names(server: RunningServer) -> None:
    async with connect(server.url) as client:
        result = await client.call_tool("do", {"script": "nope.md"})
    assert result.is_error
    assert text_of(result).startswith("Unknown documentation 'nope.md'. Available: $.md, db.md")


async def test_anonymous_write_is_refused_before_running_with_every_write_call_and_line(server: RunningServer) -> None:
    script = "const a = await db.list('Order')\n\n\n\nawait db.create('Order', {})\n\n\nawait send($.Email.send, {})"
    async with connect(server.url) as client:
        result = await client.call_tool("do", {"script": script})
    assert result.is_error
    assert text_of(result) == "Readonly violations detected:\n- db.create() at line 5\n- send() at line 8"


async def test_anonymous_write_through_an_alias_is_refused_at_run_time(server: RunningServer) -> None:
    script = "const d = db\nconst name = 'cre' + 'ate'\nawait d[name]('Order', { total: 1 })"
    async with connect(server.url) as client:
        result = await client.call_tool("do", {"script": script})
        listed = await client.call_tool("do", {"script": "await db.list('Order')"})
    assert result.is_error
    assert text_of(result) == "Authentication required for write operations"
    assert value_of(listed) == []


async def test_a_refused_write_can_be_caught_by_the_script_by_its_name(server: RunningServer) -> None:
    reader = server.new_key("catcher", "--role", "reader")
    script = (
        "let seen\ntry { await db.delete('Order', 'ord_1') }\n"
        "catch (error) { seen = [error.name, error.message] }\nseen"
    )
    async with connect(server.url, key=reader) as client:
        named = value_of(await client.call_tool("do", {"script": script}))
    assert named == ["PermissionError", "Permission denied: delete Order"]


async def test_an_authenticated_caller_creates_and_reads_records(server: RunningServer) -> None:
    async with connect(server.url, key=server.admin_key) as client:
        created = value_of(
            await client.call_tool(
                "do",
                {
                    "script": (
                        "const c = await db.create('Person', { name: 'Alice', email: 'alice@example.com' })\n"
                        "const o = await db.create('Order', { customer: c, total: 29.99, status: 'pending' })\n"
                        "o"
                    )
                },
            )
        )
        fetched = value_of(await client.call_tool("do", {"script": f"await db.get('Order', '{created['id']}')"}))
    assert created["id"].startswith("ord_")
    assert created["$type"] == "Order"
    assert created["customer"]["name"] == "Alice"
    assert created["version"] == 1
    assert fetched == created


async def test_user_current_answers_from_the_identity(server: RunningServer) -> None:
    script = "({ me: user.current(), session: user.session(), admin: user.can('admin', '*') })"
    async with connect(server.url, key=server.admin_key) as client:
        known = value_of(await client.call_tool("do", {"script": script}))
    async with connect(server.url) as client:
        anonymous = value_of(await client.call_tool("do", {"script": script}))
    assert known["me"]["roles"] == ["admin"]
    assert known["me"]["tenant"] == "default"
    assert known["session"]["authType"] == "apiKey"
    assert known["admin"] is True
    assert anonymous == {
        "me": None,
        "session": {"id": "anonymous", "authType": "anonymous", "scopes": []},
        "admin": False,
    }


def test_an_invalid_key_is_a_401_with_a_bearer_challenge_not_anonymous(server: RunningServer) -> None:
    response = httpx.post(
        server.url,
        headers={"Authorization": "Bearer sk_not_a_real_key", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    metadata_url = response.headers["WWW-Authenticate"].split('resource_metadata="')[1].rstrip('"')
    metadata = httpx.get(metadata_url).json()
    assert metadata["resource"] == server.url
    assert metadata["bearer_methods_supported"] == ["header"]


def test_get_on_the_mcp_endpoint_is_405(server: RunningServer) -> None:
    response = httpx.get(server.url, headers={"Accept": "text/event-stream"}, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_malformed_json_rpc_gets_a_parse_error_and_the_server_keeps_serving(server: RunningServer) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    broken = httpx.post(server.url, headers=headers, content=b"{not json")
    assert broken.status_code in (400, 200)
    assert broken.json()["error"]["code"] == -32700
    ok = httpx.post(server.url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert ok.status_code == 200


async def test_a_reader_key_cannot_write_and_gets_permission_denied(server: RunningServer) -> None:
    reader = server.new_key("reader", "--role", "reader")
    async with connect(server.url, key=reader) as client:
        result = await client.call_tool("do", {"script": "await db.create('Order', { total: 1 })"})
    assert result.is_error
    assert text_of(result) == "Permission denied: create Order"


async def test_tenants_never_see_each_others_records(server: RunningServer) -> None:
    acme = server.new_key("acme", "--tenant", "acme")
    globex = server.new_key("globex", "--tenant", "globex")
    async with connect(server.url, key=acme) as client:
        secret = value_of(await client.call_tool("do", {"script": "await db.create('Secret', { v: 'acme' })"}))
    async with connect(server.url, key=globex) as client:
        listed = value_of(await client.call_tool("do", {"script": "await db.list('Secret')"}))
        got = value_of(await client.call_tool("do", {"script": f"await db.get('Secret', '{secret['id']}')"}))
        deleted = value_of(await client.call_tool("do", {"script": f"await db.delete('Secret', '{secret['id']}')"}))
    assert listed == [] and got is None and deleted is False
    async with connect(server.url, key=acme) as client:
        still = value_of(await client.call_tool("do", {"script": f"await db.get('Secret', '{secret['id']}')"}))
    assert still == secret


async def test_a_revoked_key_is_refused(server: RunningServer) -> None:
    key = server.new_key("temporary")
    listing = server.mcpdo("keys", "list")
    keys = json.loads(listing.stdout)
    key_id = next(k["id"] for k in keys if k["name"] == "temporary")
    assert key not in listing.stdout
    assert server.mcpdo("keys", "revoke", key_id).returncode == 0
    response = httpx.post(
        server.url,
        headers={"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert response.status_code == 401
