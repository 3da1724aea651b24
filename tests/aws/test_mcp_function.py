"""The MCP function (`functions/mcp/app.py`) behind a fake API Gateway, over DynamoDB in moto: the SDK's
own `Client` in both protocol generations, raw HTTP for the edges, and every sample in `events/`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.aws import create_table, function_environment, mcpdo_cli
from tests.support.client import connect, text_of, value_of
from tests.support.gateway import SAMPLE_HOST, FakeGateway, fake_gateway, sample_events, v2_event

pytestmark = pytest.mark.anyio

TENANT = "acme"


@pytest.fixture(scope="module")
def function_env(moto_endpoint: str) -> dict[str, str]:
    """The environment template.yaml gives the function, over a fresh table in moto (no X-Ray daemon here)."""
    return {**function_environment(create_table()), "POWERTOOLS_TRACE_DISABLED": "true"}


@pytest.fixture(scope="module")
def admin_key(function_env: dict[str, str]) -> str:
    done = mcpdo_cli(function_env, "keys", "create", "--name", "ops", "--tenant", TENANT, "--role", "admin")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def gateway(function_env: dict[str, str], admin_key: str) -> Iterator[FakeGateway]:
    with fake_gateway(function_env) as running:
        yield running


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_script_returns_its_final_expression_in_both_protocol_generations(
    gateway: FakeGateway, admin_key: str, mode: str
) -> None:
    async with connect(gateway.url, admin_key, mode=mode) as client:
        [tool] = (await client.list_tools()).tools
        assert tool.name == "do"
        result = await client.call_tool("do", {"script": "const a = 40\na + 2"})
    assert value_of(result) == 42


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_records_are_kept_in_dynamodb_across_invocations(gateway: FakeGateway, admin_key: str, mode: str) -> None:
    async with connect(gateway.url, admin_key, mode=mode) as client:
        created = value_of(
            await client.call_tool("do", {"script": f"await db.create('Order', {{ total: 30, mode: '{mode}' }})"})
        )
        listed = value_of(
            await client.call_tool(
                "do", {"script": f"await db.list('Order', {{ where: {{ mode: '{mode}', total: {{ $gte: 10 }} }} }})"}
            )
        )
        fetched = value_of(await client.call_tool("do", {"script": f"await db.get('Order', '{created['id']}')"}))
    assert [order["id"] for order in listed] == [created["id"]]
    assert fetched == created and created["version"] == 1


async def test_docs_are_served(gateway: FakeGateway) -> None:
    async with connect(gateway.url) as client:
        text = text_of(await client.call_tool("do", {"script": "db.md"}))
    assert "db.create" in text


async def test_a_registered_module_is_importable_by_a_later_script(gateway: FakeGateway, admin_key: str) -> None:
    module = (
        "---\n$id: https://acme.test/tax\n$type: Module\n---\n\n"
        "```ts export\nexport const withTax = (n: number) => n * 2\n```\n"
    )
    async with connect(gateway.url, admin_key) as client:
        registered = await client.call_tool("do", {"module": module})
        used = await client.call_tool("do", {"script": "import { withTax } from 'https://acme.test/tax'\nwithTax(21)"})
    summary = value_of(registered)
    assert (summary["id"], summary["version"], summary["exports"]) == ("https://acme.test/tax", 1, ["withTax"])
    assert value_of(used) == 42


async def test_an_anonymous_write_is_refused_with_its_line(gateway: FakeGateway) -> None:
    async with connect(gateway.url) as client:
        result = await client.call_tool("do", {"script": "const a = 1\nawait db.create('Order', { total: 1 })"})
    assert result.is_error
    assert "db.create" in text_of(result) and "line 2" in text_of(result)


async def test_without_the_events_settings_send_says_which_settings_it_needs(
    gateway: FakeGateway, admin_key: str
) -> None:
    # This module's function has the table only (no bus, no queues): nothing would deliver an event.
    async with connect(gateway.url, admin_key) as client:
        result = await client.call_tool("do", {"script": "await send('Order.created', { id: 1 })"})
    assert result.is_error
    assert "send() needs the events deployment" in text_of(result) and "MCPDO_EVENT_BUS" in text_of(result)


def post(gateway: FakeGateway, body: Any, **headers: str) -> httpx.Response:
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    return httpx.post(gateway.url, content=json.dumps(body), headers={**base, **headers}, timeout=60)


def test_a_bad_key_is_a_401_pointing_at_the_resource_metadata(gateway: FakeGateway) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    response = post(gateway, call, Authorization="Bearer sk_wrong")
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    assert f'resource_metadata="https://{gateway.host}/.well-known/oauth-protected-resource/mcp"' in challenge


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_on_mcp_are_405(gateway: FakeGateway, method: str) -> None:
    response = httpx.request(method, gateway.url, headers={"Accept": "text/event-stream"}, timeout=60)
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")


def test_a_host_api_gateway_does_not_answer_on_is_refused(gateway: FakeGateway) -> None:
    response = post(gateway, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, Host="evil.example")
    assert response.status_code == 421


def test_a_cross_site_origin_is_refused(gateway: FakeGateway) -> None:
    response = post(gateway, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, Origin="https://evil.example")
    assert response.status_code == 403


def test_health_and_the_protected_resource_metadata_name_the_url_the_client_used(gateway: FakeGateway) -> None:
    assert httpx.get(gateway.url.replace("/mcp", "/health"), timeout=60).json() == {"status": "ok"}
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        document = httpx.get(gateway.url.replace("/mcp", path), timeout=60).json()
        assert document["resource"] == f"https://{gateway.host}/mcp"


def test_a_base64_body_with_header_names_in_any_case_is_served(gateway: FakeGateway, admin_key: str) -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "do", "arguments": {"script": "6 * 7"}}}
    ).encode()
    headers = {
        "HOST": SAMPLE_HOST,
        "content-TYPE": "application/json",
        "Accept": "application/json, text/event-stream",
        "authorization": f"Bearer {admin_key}",
        "Mcp-Protocol-Version": "2025-11-25",
    }
    response = gateway.invoke(v2_event("POST", "/mcp", headers, body, base64_body=True))
    assert response["statusCode"] == 200, response
    result = json.loads(response["body"])["result"]
    assert (result["isError"], result["content"][0]["text"]) == (False, "42")


def expect_result(response: dict[str, Any]) -> dict[str, Any]:
    assert response["statusCode"] == 200, response
    result: dict[str, Any] = json.loads(response["body"])["result"]
    return result


SAMPLE_CHECKS: dict[str, Any] = {
    "initialize": lambda r: expect_result(r)["serverInfo"]["name"] == "mcpdo",
    "tools-list": lambda r: [t["name"] for t in expect_result(r)["tools"]] == ["do"],
    "tools-call-script": lambda r: expect_result(r)["content"][0]["text"] == "6",
    "tools-call-docs": lambda r: "db.create" in expect_result(r)["content"][0]["text"],
    "tools-call-module": lambda r: json.loads(expect_result(r)["content"][0]["text"])["exports"] == ["withTax"],
    "bad-key": lambda r: r["statusCode"] == 401 and "resource_metadata=" in r["headers"]["WWW-Authenticate"],
    "get-mcp": lambda r: (r["statusCode"], r["headers"]["Allow"]) == (405, "POST"),
}


def test_every_sample_event_gives_its_documented_response(gateway: FakeGateway, admin_key: str) -> None:
    samples = sample_events(admin_key)
    assert sorted(samples) == sorted(SAMPLE_CHECKS)
    for name, event in samples.items():
        response = gateway.invoke(event)
        assert SAMPLE_CHECKS[name](response), (name, response)


def test_the_module_sample_is_base64_as_api_gateway_sends_binary_bodies() -> None:
    event = sample_events("sk_x")["tools-call-module"]
    assert event["isBase64Encoded"] is True
    assert json.loads(base64.b64decode(event["body"]))["params"]["arguments"]["module"].startswith("---")
