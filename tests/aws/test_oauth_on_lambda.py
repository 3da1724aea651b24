"""Signing in with Amazon Cognito on the AWS deployment: the MCP function behind the fake API Gateway takes
the access token moto's Cognito hands out, as the template's OAuth parameters configure it, and publishes the
pool as its authorization server in the RFC 9728 document at the URL the client used."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.aws import create_table, function_environment
from tests.support.client import connect, text_of, value_of
from tests.support.cognito import Pool, make_pool
from tests.support.gateway import FakeGateway, fake_gateway
from tests.support.local_issuer import serve_json, with_claims

pytestmark = pytest.mark.anyio
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


@pytest.fixture(scope="module")
def pool(moto_endpoint: str) -> Pool:
    return make_pool("olga@example.com")


@pytest.fixture(scope="module")
def gateway(moto_endpoint: str, pool: Pool) -> Iterator[FakeGateway]:
    # Cognito's discovery document lives at its issuer URL; here it is ours, sending jwks_uri to moto's route.
    document = {"issuer": pool.issuer, "jwks_uri": f"{moto_endpoint}/{pool.pool_id}/.well-known/jwks.json"}
    with serve_json({"/openid-configuration": (200, document)}) as discovery:
        env = {
            **function_environment(create_table()),
            "POWERTOOLS_TRACE_DISABLED": "true",
            "MCPDO_OAUTH_ISSUER": pool.issuer,
            "MCPDO_OAUTH_AUDIENCE": pool.client_id,
            "MCPDO_OAUTH_DISCOVERY_URL": f"{discovery.url}/openid-configuration",
            "MCPDO_OAUTH_ROLE_SCOPES": "aws.cognito.signin.user.admin=member",
        }
        with fake_gateway(env) as running:
            yield running


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_cognito_access_token_is_a_caller_with_a_tenant_of_its_own(gateway: FakeGateway, pool: Pool) -> None:
    async with connect(gateway.url, pool.access_token) as client:
        seen = value_of(await client.call_tool("do", {"script": "({ me: user.current(), s: user.session() })"}))
        created = value_of(await client.call_tool("do", {"script": "(await db.create('Note', { text: 'hi' })).id"}))
        fetched = value_of(await client.call_tool("do", {"script": f"(await db.get('Note', '{created}')).text"}))
    assert seen["me"]["id"] == pool.user_sub and seen["me"]["tenant"] == f"user:{pool.user_sub}"
    assert seen["me"]["roles"] == ["member"]
    assert seen["s"]["authType"] == "oauth" and "aws.cognito.signin.user.admin" in seen["s"]["scopes"]
    assert fetched == "hi"
    async with connect(gateway.url) as anonymous:
        assert value_of(await anonymous.call_tool("do", {"script": "(await db.list('Note')).length"})) == 0


async def test_a_tampered_or_foreign_token_is_a_401_with_the_challenge(gateway: FakeGateway, pool: Pool) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for token in (with_claims(pool.access_token, sub="someone-else"), make_pool().access_token, pool.id_token + "x"):
        answer = httpx.post(gateway.url, headers={**HEADERS, "Authorization": f"Bearer {token}"}, json=body)
        assert answer.status_code == 401, (answer.status_code, answer.text)
        challenge = answer.headers["WWW-Authenticate"]
        assert f'resource_metadata="https://{gateway.host}/.well-known/oauth-protected-resource/mcp"' in challenge


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"])
def test_the_metadata_names_the_pool_and_the_url_the_client_used(gateway: FakeGateway, pool: Pool, path: str) -> None:
    document = httpx.get(f"http://{gateway.host}{path}").json()
    assert document["authorization_servers"] == [pool.issuer]
    assert document["resource"] == f"https://{gateway.host}/mcp"


async def test_a_reader_scope_cannot_write(gateway: FakeGateway, pool: Pool) -> None:
    # The id token carries no scope at all: its bearer reads.
    async with connect(gateway.url, pool.id_token) as client:
        refused = await client.call_tool("do", {"script": "await db.create('Note', {})"})
    assert refused.is_error and "Permission denied: create Note" in text_of(refused)
