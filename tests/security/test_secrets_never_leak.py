"""Secrets hygiene: with an API key, an OAuth token, a model provider's key and a proxied service's secret
all in play, and scripts that try every way to surface them (errors, console output, `user.session()`,
failing handlers, near-miss credentials), none of the four appears in any result, error, log line of the
server, handler run, audit entry or CLI listing the run produced."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fake_models import FakeModelServer, fake_model_server
from tests.support.fake_web import FakeWeb, fake_web
from tests.support.local_issuer import AUDIENCE, LocalIssuer
from tests.support.server import RunningServer, start_server, stop_server
from tests.support.sync import call_tool, wait_for

PROVIDER_KEY = "prov-key-7d1f0c9a55e34b8c"
PROXY_SECRET = "proxy-secret-e0b1c2d3a4f5"
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}

LEAKY_SCRIPTS = (
    "user.session()",
    "console.log(JSON.stringify(user.session())); throw new Error(JSON.stringify(user.current()))",
    "await ai.generate({ prompt: 'say hi' })",
    "const r = await api.proxy('acme', '/v1/things'); console.log(JSON.stringify(r)); r",
    "await api.proxy('acme', '/v1/missing')",
    "await api.proxy('nope', '/x')",
    "throw new Error(String(globalThis.process?.env ?? 'no env'))",
)
MODULE = """---
$id: https://leaks.test/handler
$type: Workflow
---
on($.Leak.tried, async () => {
  console.log(JSON.stringify(user.session()))
  await api.proxy('acme', '/v1/missing')
})
"""


@pytest.fixture(scope="module")
def models() -> Iterator[FakeModelServer]:
    with fake_model_server() as running:
        yield running


@pytest.fixture(scope="module")
def service() -> Iterator[FakeWeb]:
    with fake_web() as running:
        running.routes["/v1/things"] = (200, {"things": [1, 2]})
        yield running


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, issuer: LocalIssuer, models: FakeModelServer, service: FakeWeb
) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("leaks")
    secrets = folder / "secrets.json"
    secrets.write_text(json.dumps({"ACME_KEY": PROXY_SECRET}))
    services = {"acme": {"baseUrl": service.url, "auth": "bearer", "secret": "ACME_KEY"}}
    running = start_server(
        folder / "state",
        MCPDO_OAUTH_ISSUER=issuer.issuer,
        MCPDO_OAUTH_AUDIENCE=AUDIENCE,
        MCPDO_AI_PROVIDER="openai",
        MCPDO_AI_BASE_URL=models.url,
        MCPDO_AI_API_KEY=PROVIDER_KEY,
        MCPDO_AI_MODEL="fake-default",
        MCPDO_SERVICES=json.dumps(services),
        MCPDO_SECRETS_FILE=str(secrets),
        MCPDO_FETCH_ALLOW="127.0.0.1",
        MCPDO_RETRY_BASE_MS="20",
    )
    yield running
    stop_server(running)


def test_no_secret_appears_anywhere_the_suite_can_see(
    server: RunningServer, issuer: LocalIssuer, service: FakeWeb, models: FakeModelServer
) -> None:
    key = server.new_key("leaky", "--role", "admin")
    token = issuer.token("tess", scope="mcp:write", extra_claims={"tenant": "leaks"})
    secrets = {"api key": key, "oauth token": token, "provider key": PROVIDER_KEY, "proxy secret": PROXY_SECRET}
    seen: list[str] = []
    for credential in (key, token):
        for script in LEAKY_SCRIPTS:
            seen.append(repr(call_tool(server, credential, {"script": script})))
        seen.append(repr(call_tool(server, credential, {"module": MODULE})))
        seen.append(repr(call_tool(server, credential, {"script": "await send($.Leak.tried, {})"})))
    for near_miss in (key + "x", key[:-1], token[:-4] + "AAAA", token + "."):
        answer = httpx.post(
            server.url,
            headers={**HEADERS, "Authorization": f"Bearer {near_miss}"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
        assert answer.status_code == 401
        seen += [answer.text, json.dumps(dict(answer.headers))]
    # The credentials did reach where they belong, so the searches below search something real.
    assert any(h.get("authorization") == f"Bearer {PROXY_SECRET}" for h in (r["headers"] for r in service.received))
    assert any(h.get("authorization") == f"Bearer {PROVIDER_KEY}" for h in models.headers)

    def listing(*args: str) -> str:
        done = server.mcpdo(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    def handler_runs() -> int:
        return len(json.loads(server.mcpdo("runs", "list", "--limit", "500").stdout))

    wait_for(lambda: handler_runs() >= 2)  # each credential's handler ran (and failed) at least once
    for command in (
        ("runs", "list", "--limit", "500"),
        ("audit", "list", "--limit", "500"),
        ("events", "dead-letters", "list"),
        ("keys", "list"),
        ("schedules", "list"),
        ("outbox", "list"),
    ):
        seen.append(listing(*command))
    stop_server(server)
    seen.append("".join(server.output))  # everything the server logged after its banner
    assert any(line.get("message") == "tool call" for line in server.log_lines())  # it did log

    leaks = {name: [text[:200] for text in seen if secret in text] for name, secret in secrets.items()}
    assert leaks == {name: [] for name in secrets}
