"""OAuth bearer tokens at the HTTP front door of a real `mcpdo serve`, against a loopback issuer: a valid
token is a caller with the token's subject, tenant and scopes; every token that does not verify is a 401
with a `WWW-Authenticate` challenge pointing at the RFC 9728 document, which names the issuer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.client import connect, text_of, value_of
from tests.support.local_issuer import AUDIENCE, LocalIssuer
from tests.support.server import RunningServer, start_server, stop_server

pytestmark = pytest.mark.anyio
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, issuer: LocalIssuer) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("oauth"), MCPDO_OAUTH_ISSUER=issuer.issuer, MCPDO_OAUTH_AUDIENCE=AUDIENCE
    )
    yield running
    stop_server(running)


async def run(server: RunningServer, script: str, token: str | None) -> Any:
    async with connect(server.url, token) as client:
        return value_of(await client.call_tool("do", {"script": script}))


def post(server: RunningServer, token: str) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "do", "arguments": {"script": "1"}}}
    return httpx.post(server.url, headers={**HEADERS, "Authorization": f"Bearer {token}"}, json=body)


async def test_a_valid_token_is_its_subject_with_the_tenant_and_scopes_it_carries(
    server: RunningServer, issuer: LocalIssuer
) -> None:
    token = issuer.token(
        "alice", scope="mcp:write openid", extra_claims={"tenant": "acme", "email": "a@acme.test", "name": "Alice"}
    )
    seen = await run(server, "({ me: user.current(), session: user.session() })", token)
    assert seen["me"] == {"id": "alice", "tenant": "acme", "roles": ["member"], "email": "a@acme.test", "name": "Alice"}
    session = seen["session"]
    assert session["authType"] == "oauth" and session["scopes"] == ["mcp:write", "openid"]
    assert session["issuedAt"].endswith("Z") and session["expiresAt"] > session["issuedAt"]
    created = await run(server, "(await db.create('Order', { total: 5 })).id", token)
    assert await run(server, f"(await db.get('Order', '{created}')).total", token) == 5


async def test_a_token_without_a_tenant_claim_gets_a_personal_tenant_never_the_shared_one(
    server: RunningServer, issuer: LocalIssuer
) -> None:
    bob = issuer.token("bob", scope="mcp:write")
    await run(server, "await db.create('Note', { text: 'mine' })", bob)
    assert (await run(server, "user.current()", bob))["tenant"] == "user:bob"
    admin_sees = await run(server, "(await db.list('Note')).length", server.admin_key)
    assert admin_sees == 0
    assert await run(server, "(await db.list('Note')).length", issuer.token("carol", scope="mcp:write")) == 0


async def test_scopes_map_to_roles_and_a_reader_token_cannot_write(server: RunningServer, issuer: LocalIssuer) -> None:
    reader = issuer.token("dora", scope="mcp:read", extra_claims={"tenant": "acme"})
    async with connect(server.url, reader) as client:
        refused = await client.call_tool("do", {"script": "await db.create('Order', {})"})
    assert refused.is_error and "Permission denied: create Order" in text_of(refused)
    unscoped = issuer.token("erin", scope=None, extra_claims={"tenant": "acme"})
    assert (await run(server, "user.current().roles", unscoped)) == ["reader"]


@pytest.mark.parametrize(
    "hostile",
    [
        "alg none",
        "hs256 keyed with the public key",
        "signed with a key the issuer does not publish",
        "expired",
        "not yet valid",
        "another issuer",
        "another audience",
        "tampered claims",
        "not a jwt",
    ],
)
def test_every_token_that_does_not_verify_is_a_401_with_a_challenge(
    server: RunningServer, issuer: LocalIssuer, hostile: str
) -> None:
    from tests.support.local_issuer import with_claims

    tokens = {
        "alg none": lambda: issuer.none_token(),
        "hs256 keyed with the public key": lambda: issuer.hs256_with_public_key(),
        "signed with a key the issuer does not publish": lambda: issuer.foreign_token(),
        "expired": lambda: issuer.token(exp_in=-600),
        "not yet valid": lambda: issuer.token(nbf_in=600),
        "another issuer": lambda: issuer.token(extra_claims={"iss": "https://issuer.evil.example"}),
        "another audience": lambda: issuer.token(aud="https://other.example/mcp"),
        "tampered claims": lambda: with_claims(issuer.token(extra_claims={"tenant": "acme"}), tenant="victim"),
        "not a jwt": lambda: "eyJhbGciOi.not-a.token",
    }
    token = tokens[hostile]()
    answer = post(server, token)
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["WWW-Authenticate"]
    assert 'error="invalid_token"' in challenge
    assert (
        f'resource_metadata="{server.url.removesuffix("/mcp")}/.well-known/oauth-protected-resource/mcp"' in challenge
    )
    assert token not in answer.text and token not in challenge


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"])
def test_the_protected_resource_document_names_the_issuer_and_the_resource(
    server: RunningServer, issuer: LocalIssuer, path: str
) -> None:
    document = httpx.get(server.url.removesuffix("/mcp") + path).json()
    assert document["authorization_servers"] == [issuer.issuer]
    assert document["resource"] == server.url


def test_without_anonymous_callers_a_call_with_no_credentials_is_a_401_without_an_error_code(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    running = start_server(tmp_path_factory.mktemp("closed"), MCPDO_ANONYMOUS="off")
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        answer = httpx.post(running.url, headers=HEADERS, json=body)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer resource_metadata=")
        assert "error=" not in answer.headers["WWW-Authenticate"]
        keyed = httpx.post(running.url, headers={**HEADERS, "Authorization": f"Bearer {running.admin_key}"}, json=body)
        assert keyed.status_code == 200
    finally:
        stop_server(running)
