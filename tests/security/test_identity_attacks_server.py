"""Identity attacks against a real `mcpdo serve` (and `mcpdo stdio` / `mcpdo run` on its state folder), with a
loopback OIDC issuer and a loopback web service: hostile token headers, tokens whose tenant claim resembles
someone else's, credentials that expire or are revoked while in use, handlers that outlive their owner's
credential, the audit trail read and probed by the wrong callers, and host-scoped fetch grants.

Each test either shows a weakness (it asserts the safe behaviour and fails while the weakness is there) or
shows that an attack is already defended, checking that nothing of another caller changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters

from tests.support.client import text_of
from tests.support.fake_web import FakeWeb, Raw, fake_web
from tests.support.local_issuer import AUDIENCE, LocalIssuer, local_issuer, with_header
from tests.support.server import RunningServer, start_server, stop_server
from tests.support.sync import call_as, call_tool, run_script, wait_for

BIN = Path(sys.executable).parent
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
ROLES = {"partner": ["fetch:127.0.0.1", "read:*", "list:*", "get:*"]}


@dataclass
class World:
    server: RunningServer
    issuer: LocalIssuer
    web: FakeWeb


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with local_issuer() as issuer, fake_web() as web:
        port = web.host_port.split(":")[1]
        running = start_server(
            tmp_path_factory.mktemp("identity"),
            MCPDO_OAUTH_ISSUER=issuer.issuer,
            MCPDO_OAUTH_AUDIENCE=AUDIENCE,
            MCPDO_ROLES=json.dumps(ROLES),
            MCPDO_FETCH_ALLOW=f"127.0.0.1:{port},localhost:{port}",
            MCPDO_RETRY_BASE_MS="50",
        )
        try:
            yield World(running, issuer, web)
        finally:
            stop_server(running)


def post(server: RunningServer, authorization: str | None, body: dict[str, Any] = LIST) -> httpx.Response:
    headers = dict(HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization
    return httpx.post(server.url, json=body, headers=headers, timeout=30)


def key_id(server: RunningServer, name: str) -> str:
    listing = server.mcpdo("keys", "list")
    assert listing.returncode == 0, listing.stderr
    return str(next(k["id"] for k in json.loads(listing.stdout) if k["name"] == name))


def stdio(data_dir: Path, key: str | None, **env: str) -> StdioServerParameters:
    variables = {"MCPDO_DATA_DIR": str(data_dir), "PATH": os.environ.get("PATH", ""), **env}
    if key:
        variables["MCPDO_API_KEY"] = key
    return StdioServerParameters(command=str(BIN / "mcpdo"), args=["stdio"], env=variables)


# -- hostile token headers ------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [{"kid": "\u20ac"}, {"alg": "RS\u20ac"}], ids=["kid", "alg"])
def test_a_non_latin1_kid_or_alg_is_a_401_not_a_500(world: World, header: dict[str, str]) -> None:
    """Attack: anyone on the internet (no key, no valid token: the signature is never checked) sends
    `Authorization: Bearer <any JWT whose kid or alg is '€'>`. The refusal's message quotes it into
    `WWW-Authenticate` (bearer.challenge), Starlette cannot encode that header as Latin-1, and the server
    answers 500 Internal Server Error (with a traceback in its log) at every such request: the refusal path
    becomes a crash path an anonymous caller triggers at will.

    Safe: a 401 with an ASCII challenge, like every other refusal.
    """
    token = with_header(world.issuer.token("mallory"), **header)
    answer = post(world.server, f"Bearer {token}")
    assert answer.status_code == 401, (answer.status_code, answer.text[:100])
    assert answer.headers["WWW-Authenticate"].isascii()


def test_a_far_future_exp_from_the_issuer_is_not_a_500(world: World) -> None:
    """Attack: a token the issuer signed with `exp` past year 9999 (a 'never expires' service token, a typo in
    a claims mapper). `format_iso(exp * 1000)` overflows in auth.py and the server answers 500.

    Safe: a 401 (or the call succeeds); never an internal error.
    """
    token = world.issuer.token("svc", extra_claims={"exp": 10**13})
    assert post(world.server, f"Bearer {token}").status_code in (200, 401)


def test_refused_tokens_never_reach_the_servers_log(world: World) -> None:
    """Attack: get a token (someone's, replayed or tampered) written to the operator log through a refusal,
    a crash on the refusal path included. Defended: no part of any refused token is in the log."""
    issuer = world.issuer
    good = issuer.token("alice", scope="mcp:write")
    tokens = [
        with_header(good, kid="\u20ac"),  # the refusal that crashes (a 500 with a traceback)
        good[:-8] + "AAAAAAAA",
        issuer.token("alice", exp_in=-3600),
        issuer.foreign_token("alice"),
        issuer.token("alice", extra_claims={"exp": 10**13}),
    ]
    for token in tokens:
        post(world.server, f"Bearer {token}")
    time.sleep(0.3)
    log = "".join(world.server.output)
    for token in tokens:
        for part in token.split(".")[1:]:
            assert part not in log


# -- tenant claims that resemble another's ----------------------------------------------------------------


def test_tenant_claim_lookalikes_never_reach_the_tenant_they_resemble(world: World) -> None:
    """Attack: alice's token carries a tenant claim spelt like bob's personal tenant (case, space, fullwidth)
    or like tenant `acme`'s storage keys (`acme#Order`, `acme%23Order`), and lists and fetches their records.
    Defended: bob's tenant by name is a 401; each lookalike is an empty tenant of its own; bob's and acme's
    records are unchanged."""
    server, issuer = world.server, world.issuer
    bob = issuer.token("bob", scope="mcp:write", exp_in=3600)
    acme = server.new_key("acme-writer", "--tenant", "acme")
    bobs = run_script(server, "(await db.create('Secret', { text: 'bob-secret' })).id", bob)
    acmes = run_script(server, "(await db.create('Order', { text: 'acme-order' })).id", acme)
    assert post(server, f"Bearer {issuer.token('alice', extra_claims={'tenant': 'user:bob'})}").status_code == 401
    for claim in (" user:bob", "User:bob", "\uff55ser:bob", "user:bob ", "acme#Order", "acme%23Order", "acme ", "ACME"):
        alice = issuer.token("alice", scope="mcp:write", extra_claims={"tenant": claim})
        if post(server, f"Bearer {alice}").status_code == 401:
            continue  # refused outright (`user:bob `: another user's personal prefix)
        seen = run_script(
            server,
            f"""const out = {{ secrets: await db.list('Secret'), orders: await db.list('Order'), got: [] }}
for (const [t, id] of [['Secret', '{bobs}'], ['Order', '{acmes}']]) {{
  try {{ out.got.push(await db.get(t, id)) }} catch (e) {{ out.got.push(String(e.message).slice(0, 40)) }}
}}
await db.create('Order', {{ text: 'alice was here' }})
out""",
            alice,
        )
        assert seen["secrets"] == [] and seen["orders"] == [], claim
        assert "bob-secret" not in json.dumps(seen) and "acme-order" not in json.dumps(seen), claim
    assert [r["text"] for r in run_script(server, "await db.list('Secret')", bob)] == ["bob-secret"]
    assert [r["text"] for r in run_script(server, "await db.list('Order')", acme)] == ["acme-order"]


# -- credentials that end while in use ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_key_revoked_during_a_stdio_session_stops_working(world: World) -> None:
    """Attack: an MCP client launched `mcpdo stdio` with MCPDO_API_KEY; the operator revokes that key
    (`mcpdo keys revoke`) because it leaked or its holder left. cli.py authenticates the key once at start
    and stdio.py answers every later call with that same Identity, so the session keeps creating records
    for as long as it stays open. README: "a revoked or expired key is refused from the next call on".

    Safe: the next call after the revocation is refused.
    """
    server = world.server
    secret = server.new_key("stdio-revoked", "--tenant", "stdio-t")
    async with Client(stdio(server.data_dir, secret)) as client:
        first = await client.call_tool("do", {"script": "(await db.create('Note', { n: 1 })).id"})
        assert not first.is_error, text_of(first)
        assert server.mcpdo("keys", "revoke", key_id(server, "stdio-revoked")).returncode == 0
        after = await client.call_tool("do", {"script": "(await db.create('Note', { n: 2 })).id"})
    assert after.is_error, f"a revoked key still wrote over stdio: {text_of(after)}"


@pytest.mark.anyio
async def test_a_key_that_expires_during_a_stdio_session_stops_working(world: World) -> None:
    """Attack: the same with `--expires`: a key handed out for a few hours keeps working in a stdio session
    that was opened before it expired, indefinitely.

    Safe: the first call after the expiry is refused.
    """
    server = world.server
    secret = server.new_key("stdio-expiring", "--tenant", "stdio-t", "--expires", "in 3 seconds")
    started = time.monotonic()
    async with Client(stdio(server.data_dir, secret)) as client:
        first = await client.call_tool("do", {"script": "1"})
        assert not first.is_error, text_of(first)
        await anyio.sleep(max(0.0, 3.5 - (time.monotonic() - started)))
        after = await client.call_tool("do", {"script": "(await db.create('Note', { n: 3 })).id"})
    assert after.is_error, f"an expired key still wrote over stdio: {text_of(after)}"


@pytest.mark.anyio
async def test_an_expired_key_is_refused_by_http_mcpdo_run_and_a_new_stdio_session(
    world: World, tmp_path: Path
) -> None:
    """Attack: keep using a key after its `--expires` on every front door that starts afresh. Defended: HTTP
    answers 401, `mcpdo run` exits non-zero without running, `mcpdo stdio` refuses to start."""
    server = world.server
    secret = server.new_key("short", "--tenant", "expiry-t", "--expires", "in 2 seconds")
    assert post(server, f"Bearer {secret}").status_code == 200
    time.sleep(2.2)
    refused = post(server, f"Bearer {secret}")
    assert refused.status_code == 401 and "expired" in refused.text
    script = tmp_path / "write.ts"
    script.write_text("await db.create('Note', { by: 'expired' })\n")
    ran = server.mcpdo("run", str(script), "--key", secret)
    assert ran.returncode != 0 and "expired" in ran.stderr
    started = subprocess.run(
        [str(BIN / "mcpdo"), "stdio"],
        env=stdio(server.data_dir, secret).env,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0 and "expired" in started.stderr
    admin = server.new_key("expiry-admin", "--tenant", "expiry-t", "--role", "admin")
    assert run_script(server, "(await db.list('Note')).length", admin) == 0


# -- handlers that outlive their owner's credential ----------------------------------------------------------

HANDLER_TENANT = "handlers-t"


def _module(module_id: str) -> str:
    return f"""---
$id: {module_id}
$type: Workflow
---
on($.Tick.sent, async () => {{ await db.create('Seen', {{ by: user.current().id, at: Date.now() }}) }})
"""


@pytest.fixture(scope="module")
def outlived(world: World) -> dict[str, Any]:
    """Two modules on one event: one registered with a key that then expires, one with a token that then
    expires; an event sent afterwards; the runs of both handlers."""
    server, issuer = world.server, world.issuer
    sender = server.new_key("handlers-admin", "--tenant", HANDLER_TENANT, "--role", "admin")
    short_key = server.new_key("handlers-short", "--tenant", HANDLER_TENANT, "--expires", "in 3 seconds")
    minted = time.monotonic()
    # Expired 28 s ago: still inside the verifier's 30 s skew, so registration succeeds; 3 s later it is
    # expired by any reading. This stands for any token whose user is later disabled at the issuer.
    token = issuer.token("harriet", scope="mcp:write", exp_in=-28, extra_claims={"tenant": HANDLER_TENANT})
    for secret, module_id in ((token, "https://handlers.test/by-token"), (short_key, "https://handlers.test/by-key")):
        failed, text = call_tool(server, secret, {"module": _module(module_id)})
        assert not failed, text
    time.sleep(max(0.0, 3.5 - (time.monotonic() - minted)))
    run_script(server, "await send($.Tick.sent, { n: 1 })", sender)

    def runs() -> list[dict[str, Any]] | None:
        done = server.mcpdo("runs", "list", "--tenant", HANDLER_TENANT)
        listed = [run for run in json.loads(done.stdout) if run["eventType"] == "Tick.sent"]
        modules = {run["module"] for run in listed}
        return listed if len(modules) == 2 else None

    listed = wait_for(runs, timeout=30)
    seen = run_script(server, "await db.list('Seen')", sender)
    return {"runs": {run["module"]: run for run in listed}, "seen": seen}


def test_the_handlers_of_an_expired_key_stop(outlived: dict[str, Any]) -> None:
    """Attack: a key with `--expires` registers a handler, so it keeps acting after the key expired.
    Defended: the delivery looks the key up and refuses (non-retryable), nothing is written as the key."""
    run = outlived["runs"]["https://handlers.test/by-key"]
    assert run["status"] == "error" and "expired" in (run["error"] or "")
    assert all(not str(row["by"]).startswith("key_") for row in outlived["seen"])


def test_the_handlers_of_an_expired_token_stop(outlived: dict[str, Any]) -> None:
    """Attack: an OAuth user registers `on(...)` / `every(...)` handlers, then their token expires (or the
    issuer disables them: the server cannot tell, it only ever sees tokens). Authenticator.current
    (auth.py) re-checks only API keys; for an OAuth owner it returns the identity stored at registration
    (modules.owner_of keeps no expiry), so the handlers run as that user, with the roles their scopes gave
    then, for ever: a departed user's `every('1 minute', ...)` keeps reading and fetching out.

    Safe: a handler whose owner's token has expired is refused like an expired key's (the owner's
    `expiresAt` kept with the module and checked at each delivery), and nothing is written as that user.
    """
    run = outlived["runs"]["https://handlers.test/by-token"]
    rows = [row for row in outlived["seen"] if row["by"] == "harriet"]
    assert run["status"] == "error" and rows == [], (run["status"], rows)


# -- the audit trail ----------------------------------------------------------------------------------------

AUDIT_TENANT = "audit-t"


@pytest.fixture(scope="module")
def audit_keys(world: World) -> dict[str, str]:
    server = world.server
    keys = {
        role: server.new_key(f"audit-{role}", "--tenant", AUDIT_TENANT, "--role", role)
        for role in ("admin", "member", "reader")
    }
    keys["other-admin"] = server.new_key("audit-other", "--tenant", "audit-other-t", "--role", "admin")
    run_script(server, "await db.create('Note', { text: 'audit-secret-text' })", keys["member"])
    return keys


def test_readers_and_members_cannot_reach_trail_entries_by_id_or_relation(
    world: World, audit_keys: dict[str, str]
) -> None:
    """Attack: a member or reader who learnt an entry id (from an admin's output) reads it with `db.get`,
    `db.related`, a relation to it, or overwrites/deletes it. Defended: no entry data comes back, nothing
    of the trail changes."""
    server = world.server
    entries = run_script(server, "await db.list('Execution', { limit: 50 })", audit_keys["admin"])
    target = entries[0]["id"]
    probe = f"""const out = []
for (const f of [
  () => db.get('Execution', '{target}'),
  () => db.related({{ type: 'Execution', id: '{target}' }}),
  () => db.related({{ type: 'Execution', id: '{target}' }}, 'x', 'in'),
  () => db.update('Execution', '{target}', {{ outcome: 'ok' }}),
  () => db.delete('Execution', '{target}'),
  async () => db.relate(await db.create('Note', {{}}), 'hides', {{ type: 'Execution', id: '{target}' }}),
  () => db.list('Execution'),
]) {{ try {{ out.push(JSON.stringify(await f()) ?? 'undefined') }} catch (e) {{ out.push('ERR ' + e.message) }} }}
out"""
    for role in ("member", "reader"):
        seen = run_script(server, probe, audit_keys[role])
        assert all(target not in item or item.startswith("ERR") for item in seen), (role, seen)
        assert all("scriptHash" not in item for item in seen), (role, seen)
    after = run_script(server, "await db.list('Execution', { limit: 500 })", audit_keys["admin"])
    kept = next(entry for entry in after if entry["id"] == target)
    assert kept == entries[0]


@pytest.mark.parametrize(
    "options",
    [
        "{ before: 123 }",
        "{ before: 'not a date' }",
        "{ before: '9999-99-99T99:99:99Z' }",
        "{ before: { $gt: '' } }",
        '{ before: "2020\' OR 1=1 --" }',
        "{ limit: -1 }",
        "{ limit: 1.5 }",
        "{ limit: '10' }",
        "{ where: { tenant: 'audit-other-t' } }",
        "{ tenant: 'audit-other-t' }",
        "[]",
        "null",
    ],
)
def test_hostile_trail_listing_options_never_crash_or_cross_tenants(
    world: World, audit_keys: dict[str, str], options: str
) -> None:
    """Attack: an admin of one tenant passes hostile `db.list('Execution', ...)` options (SQL-looking text,
    operators, huge numbers, another tenant's name). Defended: an input error or the own tenant's entries,
    never an internal error and never another tenant's entries."""
    failed, text = call_as(world.server, audit_keys["admin"], f"await db.list('Execution', {options})")
    assert "internal" not in text.lower() and "Traceback" not in text, text
    if not failed:
        assert {entry["tenant"] for entry in json.loads(text)} <= {AUDIT_TENANT}


def test_the_trail_listing_is_bounded_like_every_other_listing(world: World, audit_keys: dict[str, str]) -> None:
    """Attack: a tenant's admin asks for `db.list('Execution', { limit: 100000000 })`. `check_listing_limit`
    has no upper bound (every other `db.list` stops at 1000), so the store reads every entry of the tenant's
    90-day trail into the shared server's memory in one call (on DynamoDB, page after page until the end):
    the admin of one tenant loads the process all tenants share, and can grow their own trail cheaply first
    (every execution and handler run adds an entry).

    `limit: 2 ** 64` passes the same check and overflows SQLite's integer: "Internal error in db.list".

    Safe: limits above db.list's maximum are refused (or clamped), as for records.
    """
    failed, text = call_as(world.server, audit_keys["admin"], "await db.list('Note', { limit: 100000000 })")
    assert failed and "limit" in text  # the rule for records
    for limit in ("100000000", "2 ** 64"):
        failed, text = call_as(
            world.server, audit_keys["admin"], f"(await db.list('Execution', {{ limit: {limit} }})).length"
        )
        assert failed and "limit" in text, f"the trail took limit {limit}: {text}"


def test_dropping_the_connection_does_not_keep_an_execution_out_of_the_trail(
    world: World, audit_keys: dict[str, str]
) -> None:
    """Attack: a member writes, then holds the runner while the client hangs up (hoping cancellation skips
    the `finally` that records the entry). Defended: the execution is recorded with its db.create."""
    server = world.server
    script = "await db.create('Note', { text: 'evasion' }); const t = Date.now(); while (Date.now() - t < 1500) {}; 1"
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "do", "arguments": {"script": script}},
    }
    with pytest.raises(httpx.TimeoutException):
        httpx.post(
            server.url, json=body, headers={**HEADERS, "Authorization": f"Bearer {audit_keys['member']}"}, timeout=0.4
        )

    def recorded() -> Any:
        entries = run_script(server, "await db.list('Execution', { limit: 200 })", audit_keys["admin"])
        return [e for e in entries if e["calls"].get("db.create") == 1 and e["durationMs"] >= 1400]

    assert wait_for(recorded, timeout=15)


def test_the_trail_never_holds_the_scripts_data(world: World, audit_keys: dict[str, str]) -> None:
    """Attack: read another caller's script text, arguments or results back through the trail. Defended:
    entries hold a hash and counts only; another tenant's admin sees none of this tenant's entries."""
    entries = run_script(world.server, "await db.list('Execution', { limit: 500 })", audit_keys["admin"])
    assert "audit-secret-text" not in json.dumps(entries)
    others = run_script(world.server, "await db.list('Execution', { limit: 500 })", audit_keys["other-admin"])
    assert {entry["tenant"] for entry in others} <= {"audit-other-t"}


# -- host-scoped grants --------------------------------------------------------------------------------------


def test_a_fetch_grant_for_one_host_does_not_follow_redirects_to_another(world: World) -> None:
    """Attack: a key whose custom role grants `fetch:127.0.0.1` only (MCPDO_ROLES; README: "a grant can name
    the host") fetches a URL on that host which redirects (an open redirect, a URL shortener, user content
    on the partner's domain) to a host it was not granted, carrying data out in the query string.
    FetchApi.fetch (sdk/fetch.py) authorizes the first URL's host only; the web client then follows the
    redirect wherever it points.

    Safe: every hop is held to the grant: the script gets `Permission denied: fetch localhost` and the other
    host never sees the request.
    """
    server, web = world.server, world.web
    port = web.host_port.split(":")[1]
    web.routes["/bounce"] = (302, Raw("text/plain", b"", {"Location": f"http://localhost:{port}/steal?data=secret"}))
    web.routes["/steal"] = (200, {"stolen": True})
    partner = server.new_key("partner", "--tenant", "partner-t", "--role", "partner")
    direct, text = call_as(server, partner, f"await api.fetch('http://localhost:{port}/steal?direct=1')")
    assert direct and "Permission denied" in text  # the grant does hold for a direct call
    failed, text = call_as(server, partner, f"await api.fetch('http://127.0.0.1:{port}/bounce')")
    stolen = [r for r in web.received if r["path"].startswith("/steal") and "direct" not in r["path"]]
    assert stolen == [] and failed, f"the redirect reached the other host: {text[:100]}"


# -- MCPDO_ANONYMOUS=off on every front door ----------------------------------------------------------------


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("closed"), MCPDO_ANONYMOUS="off")
    try:
        yield running
    finally:
        stop_server(running)


def test_anonymous_off_holds_on_http_stdio_and_run(closed: RunningServer, tmp_path: Path) -> None:
    """Attack: with MCPDO_ANONYMOUS=off, call without credentials (or with a blank header) over HTTP, start
    `mcpdo stdio` with no key, `mcpdo run` with no key. Defended: 401 / refusal everywhere, nothing runs."""
    for authorization in (None, ""):
        answer = post(closed, authorization)
        assert answer.status_code == 401, (authorization, answer.status_code)
        assert 'error="' not in answer.headers["WWW-Authenticate"]  # no credential: no error code
    env = {**closed.env, "MCPDO_ANONYMOUS": "off"}
    env.pop("MCPDO_API_KEY", None)
    started = subprocess.run(
        [str(BIN / "mcpdo"), "stdio"], env=env, input="", capture_output=True, text=True, timeout=60
    )
    assert started.returncode != 0 and "anonymous" in started.stderr
    script = tmp_path / "read.ts"
    script.write_text("(await db.list('Note')).length\n")
    ran = subprocess.run([str(BIN / "mcpdo"), "run", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode != 0 and "anonymous" in ran.stderr and ran.stdout == ""


# -- what the rate limiter reads of a body ------------------------------------------------------------------

QUOTA = 2
TOOL_CALL = '{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"do","arguments":{"script":"1"}}}'


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Anonymous quota 2/min; the test client is the trusted proxy, so each test picks its own client."""
    running = start_server(
        tmp_path_factory.mktemp("counted"),
        MCPDO_RATE_LIMIT_ANONYMOUS=str(QUOTA),
        MCPDO_TRUSTED_PROXIES="127.0.0.1",
    )
    try:
        yield running
    finally:
        stop_server(running)


def raw_post(server: RunningServer, body: bytes, client: str) -> httpx.Response:
    headers = {**HEADERS, "Content-Type": "application/json", "X-Forwarded-For": client}
    return httpx.post(server.url, content=body, headers=headers, timeout=30)


def ran(answer: httpx.Response) -> bool:
    return answer.status_code == 200 and '"content"' in answer.text and '"isError":false' in answer.text


@pytest.mark.parametrize(
    "body",
    [
        "[" + TOOL_CALL % "{n}" + "]",
        TOOL_CALL.replace('"method":"tools/call"', '"method":"tools/list"').replace(
            "}}}", '}},"method":"tools/call"}}'
        ),
        TOOL_CALL.replace('"method":"tools/call"', '"method":"tools/call"').replace(
            "}}}", '}},"method":"tools/list"}}'
        ),
        TOOL_CALL.replace("tools/call", "tools\\/call"),
        TOOL_CALL.replace("tools/call", "tools\\u002fcall"),
        "\ufeff" + TOOL_CALL,
        "  \n" + TOOL_CALL + "\n  ",
    ],
    ids=["batch", "duplicate-method-last", "duplicate-method-first", "escaped-slash", "unicode-escape", "bom", "space"],
)
def test_no_spelling_of_a_tool_call_escapes_the_quota(counted: RunningServer, body: str) -> None:
    """Attack: an anonymous client spells its `tools/call` so that the limiter's parse (json.loads, before the
    SDK sees the body) reads something else than the SDK does: a batch, a duplicate `method` key, escapes,
    a BOM, whitespace. Defended: a body the SDK runs as a tool call is counted; past the quota none runs."""
    client = f"198.51.100.{zlib.crc32(body.encode()) % 250 + 1}"
    answers = [raw_post(counted, body.replace("{n}", str(n)).encode(), client) for n in range(QUOTA + 2)]
    assert sum(ran(answer) for answer in answers) <= QUOTA, [(a.status_code, a.text[:60]) for a in answers]


def test_the_429_answer_survives_a_hostile_request_id(counted: RunningServer) -> None:
    """Attack: once over quota, send tool calls whose JSON-RPC id is `NaN` (json.loads accepts it). The 429 body
    echoes the id and Starlette's JSONResponse refuses to encode NaN: the refusal is a 500 instead (the
    client learns nothing more, but the refusal path throws, and logs a traceback, on demand).

    Safe: a 429 (with the id replaced by null, as for an unreadable id).
    """
    client = "198.51.100.251"
    for n in range(QUOTA):
        assert raw_post(counted, (TOOL_CALL % n).encode(), client).status_code == 200
    answer = raw_post(counted, (TOOL_CALL % "NaN").encode(), client)
    assert answer.status_code == 429, (answer.status_code, answer.text[:80])
