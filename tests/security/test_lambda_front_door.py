"""A hostile caller against the AWS deployment: `functions/mcp/app.py` behind the fake API Gateway, over
DynamoDB in moto, driven with the payload-v2 events API Gateway would send.

Each test either shows a weakness (it asserts the safe behaviour, and fails while the weakness is there) or
shows that an attack is already defended: then it checks that nothing of another caller changed.

Callers: tenant `acme` (the victim, admin), tenants whose names look like the victim's keys (`acme#Order`,
`acme%23Order`: `#` is the separator of every DynamoDB key, `%23` its percent-encoding), a reader, a key
that has been revoked, a key kept for bursts, and anonymous callers, each test from its own address.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from typing import Any

import boto3
import pytest
from botocore.config import Config
from mcpdo.adapters.dynamodb_table import key_part

from tests.aws.test_mcp_function import mcpdo_cli
from tests.support.aws import REGION, create_table
from tests.support.gateway import SAMPLE_HOST, FakeGateway, fake_gateway, v2_event

VICTIM = "acme"
LOOKALIKE = "acme#Order"  # its entity partitions start with the victim's `ENT#acme#Order`
PERCENT = "acme%23Order"  # the percent-encoded form of LOOKALIKE, as the module keys write it
MODERN = "2026-07-28"
# Each anonymous caller its own address (198.18.0.0/15, for tests), unless a test picks one.
_addresses = (str(ipaddress.ip_address("198.18.0.1") + n) for n in itertools.count())


# -- the deployment ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    victim: str
    lookalike: str
    percent: str
    reader: str
    revoked: str
    burst: str


@pytest.fixture(scope="module")
def function_env(moto_endpoint: str) -> dict[str, str]:
    """The environment template.yaml gives the function (rate limits at their documented defaults)."""
    return {
        "MCPDO_BACKEND": "aws",
        "MCPDO_TABLE": create_table(),
        "MCPDO_SANDBOX_POOL_SIZE": "1",
        "MCPDO_SANDBOX_POOL_MAX": "1",
        "MCPDO_TIMEOUT_MS": "25000",
        "MCPDO_ANONYMOUS_TIMEOUT_MS": "2000",
        "MCPDO_RATE_LIMIT_ANONYMOUS": "10",
        "MCPDO_RATE_LIMIT_AUTHENTICATED": "100",
        "POWERTOOLS_SERVICE_NAME": "mcpdo",
        "POWERTOOLS_METRICS_NAMESPACE": "mcpdo",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def create_key(env: dict[str, str], name: str, tenant: str, role: str = "admin") -> tuple[str, str]:
    """`mcpdo keys create` as the operator runs it: (secret, key id)."""
    done = mcpdo_cli(env, "keys", "create", "--name", name, "--tenant", tenant, "--role", role)
    assert done.returncode == 0, done.stderr
    key_id = re.search(r"created (key_[0-9a-f]+)", done.stderr)
    assert key_id is not None, done.stderr
    return done.stdout.strip(), key_id.group(1)


@pytest.fixture(scope="module")
def keys(function_env: dict[str, str]) -> Keys:
    revoked, revoked_id = create_key(function_env, "gone", VICTIM)
    done = mcpdo_cli(function_env, "keys", "revoke", revoked_id)
    assert done.returncode == 0, done.stderr
    return Keys(
        victim=create_key(function_env, "victim", VICTIM)[0],
        lookalike=create_key(function_env, "lookalike", LOOKALIKE)[0],
        percent=create_key(function_env, "percent", PERCENT)[0],
        reader=create_key(function_env, "reader", VICTIM, role="reader")[0],
        revoked=revoked,
        burst=create_key(function_env, "burst", "bursty", role="member")[0],
    )


@pytest.fixture(scope="module")
def gateway(function_env: dict[str, str], keys: Keys) -> Iterator[FakeGateway]:
    with fake_gateway(function_env) as running:
        yield running


# -- requests ------------------------------------------------------------------------------------------------


def rpc(method: str, params: dict[str, Any] | None = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def tool_call(script: str | None = None, module: str | None = None, id: Any = 1) -> dict[str, Any]:
    arguments = {name: text for name, text in (("script", script), ("module", module)) if text is not None}
    return rpc("tools/call", {"name": "do", "arguments": arguments}, id)


def event(
    body: Any = None,
    *,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
    ip: str | None = None,
    raw: bytes | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """The event for a POST /mcp, header names as given (API Gateway lowercases them; a direct invocation,
    `sam local invoke` or another integration need not)."""
    base = {"Host": SAMPLE_HOST, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if key is not None:
        base["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else json.dumps(body).encode()
    return v2_event(
        "POST", "/mcp", {**base, **(headers or {})}, data, source_ip=ip or next(_addresses), base64_body=base64_body
    )


def invoke(gateway: FakeGateway, body: Any = None, **options: Any) -> dict[str, Any]:
    return gateway.invoke(event(body, **options))


def header(response: Mapping[str, Any], name: str) -> str | None:
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def result_of(response: Mapping[str, Any]) -> dict[str, Any]:
    assert response["statusCode"] == 200, response
    result: dict[str, Any] = json.loads(response["body"])["result"]
    return result


def value_of(response: Mapping[str, Any]) -> Any:
    result = result_of(response)
    assert not result["isError"], result["content"][0]["text"]
    return result["structuredContent"]["value"]


def error_of(response: Mapping[str, Any]) -> str:
    result = result_of(response)
    assert result["isError"], result
    text: str = result["content"][0]["text"]
    return text


def run(gateway: FakeGateway, script: str, key: str | None = None, **options: Any) -> Any:
    """The value of `script` run as `key` (anonymous without one)."""
    return value_of(invoke(gateway, tool_call(script), key=key, **options))


def table_items(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every item of the state table, read directly (what an operator would see)."""
    client = boto3.client("dynamodb", region_name=REGION)
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=env["MCPDO_TABLE"], ConsistentRead=True):
        items.extend(page["Items"])
    return items


def victim_state(gateway: FakeGateway, keys: Keys) -> Any:
    """The victim's records and edges, as a reader of its tenant sees them (a key of its own, so that the
    many checks count against no caller's rate limit)."""
    return run(
        gateway,
        "({ orders: await db.list('Order', { sort: { id: 'asc' } }),"
        " notes: await db.list('Note', { sort: { id: 'asc' } }),"
        " related: await db.related({ type: 'Order', id: 'ord_victim' }, undefined, 'both') })",
        keys.reader,
    )


@pytest.fixture(scope="module")
def victim_records(gateway: FakeGateway, keys: Keys) -> Any:
    """The victim's records: two orders (one id the attackers reuse), a note and an edge between them."""
    run(
        gateway,
        "await db.create('Order', { id: 'ord_victim', secret: 'victim-only', total: 10 })\n"
        "await db.create('Order', { id: 'ord_shared', secret: 'victim-shared', total: 20 })\n"
        "await db.create('Note', { id: 'KEY', text: 'victim-note' })\n"
        "await db.relate({ type: 'Order', id: 'ord_victim' }, 'links', { type: 'Order', id: 'ord_shared' })",
        keys.victim,
    )
    return victim_state(gateway, keys)


def module(module_id: str, value: str) -> str:
    return f"---\n$id: {module_id}\n---\n\n```ts export\nexport const who = () => '{value}'\n```\n"


# -- findings: each fails while the weakness is there ---------------------------------------------------------


def test_an_anonymous_address_past_its_quota_of_tool_calls_is_refused_with_429_whatever_x_forwarded_for_says(
    gateway: FakeGateway,
) -> None:
    """README, Security: 10 tool calls per minute per source address for anonymous callers, then 429 with
    Retry-After. The Lambda front door has no rate limiter, so an anonymous address may run as many scripts
    (each up to MCPDO_ANONYMOUS_TIMEOUT_MS of billed Lambda time) as Lambda's concurrency allows."""
    address = next(_addresses)
    answers = [
        invoke(gateway, tool_call("1", id=n), ip=address, headers={"X-Forwarded-For": f"192.0.2.{n}"})
        for n in range(11)
    ]
    assert [answer["statusCode"] for answer in answers[:10]] == [200] * 10
    limited = answers[10]
    assert limited["statusCode"] == 429, limited
    assert int(header(limited, "Retry-After") or "0") >= 1
    error = json.loads(limited["body"])
    assert error["id"] == 10 and "Rate limit exceeded" in error["error"]["message"]
    # Another address is not held back, and the listing is not counted.
    assert run(gateway, "2") == 2
    assert result_of(invoke(gateway, rpc("tools/list"), ip=address))["tools"][0]["name"] == "do"


def test_a_key_past_its_quota_of_tool_calls_is_refused_with_429(gateway: FakeGateway, keys: Keys) -> None:
    """README, Security: 100 tool calls per minute per API key, then 429 with Retry-After."""
    statuses = [invoke(gateway, tool_call("1", id=n), key=keys.burst)["statusCode"] for n in range(100)]
    assert statuses == [200] * 100
    # The bucket refills at 100/60 per second while calls go on: a refusal comes within a bounded number more.
    refused = None
    for n in range(100, 200):
        answer = invoke(gateway, tool_call("1", id=n), key=keys.burst)
        if answer["statusCode"] == 429:
            refused = answer
            break
        assert answer["statusCode"] == 200, answer
    assert refused is not None, "100 more calls within a minute were never refused"
    assert int(header(refused, "Retry-After") or "0") >= 1
    assert run(gateway, "2", key=keys.victim) == 2  # another key is not limited by this one


@pytest.mark.parametrize(
    "spelled",
    [
        pytest.param(lambda k: {"Authorization": "Bearer sk_wrong", "authorization": ""}, id="bad-key-then-empty"),
        pytest.param(
            lambda k: {"Authorization": "Bearer sk_wrong", "authorization": f"Bearer {k.victim}"}, id="bad-then-good"
        ),
        pytest.param(
            lambda k: {"authorization": f"Bearer {k.revoked}", "AUTHORIZATION": f"Bearer {k.victim}"},
            id="revoked-then-good",
        ),
    ],
)
def test_a_bad_key_is_401_even_when_another_spelling_of_the_header_follows_it(
    gateway: FakeGateway, keys: Keys, spelled: Any
) -> None:
    """README: a header with a bad, revoked or unknown key is 401, never downgraded to anonymous (nor
    replaced by another credential). `_headers` lowercases names into a dict, so of `Authorization` and
    `authorization` the last silently wins, although its docstring says repeated headers are joined. API
    Gateway itself sends lowercased names, duplicates joined with commas (`Bearer sk_wrong,` is a 401, see
    the `joined-*` cases below); events from anywhere else (sam local, another integration) are taken at
    their word."""
    response = invoke(gateway, tool_call("user.current()"), headers=spelled(keys))
    assert response["statusCode"] == 401, response
    assert (header(response, "WWW-Authenticate") or "").startswith('Bearer error="invalid_token"')


def test_a_foreign_host_is_421_even_when_another_spelling_of_the_header_follows_it(gateway: FakeGateway) -> None:
    """Same weakness for Host: `Host: evil.example` plus `host: <the API's host>` passes the Host check."""
    response = invoke(gateway, rpc("tools/list"), headers={"Host": "evil.example", "host": SAMPLE_HOST})
    assert response["statusCode"] == 421, response


@contextmanager
def state_table_unreachable(gateway: FakeGateway) -> Iterator[str]:
    """The shared table's client pointed at a closed port for the block (DynamoDB unreachable); its URL."""
    table = gateway.function.runtime.app.adapters.store._table
    endpoint = "http://127.0.0.1:9"
    dead = boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=endpoint,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=1),
    )
    saved, table.client = table.client, dead
    try:
        yield endpoint
    finally:
        table.client = saved


def test_when_dynamodb_is_unreachable_the_caller_is_not_told_botocores_error_or_the_endpoint(
    gateway: FakeGateway,
) -> None:
    """DynamoTable.raw puts `str(BotoCoreError)` in the StoreError a caller sees, e.g. on AWS: `The state
    table is unavailable (query): Could not connect to the endpoint URL: "https://dynamodb.<region>.amazonaws
    .com/"`. The caller should learn that the store is unavailable, not boto3's text."""
    with state_table_unreachable(gateway) as endpoint:
        text = error_of(invoke(gateway, tool_call("await db.list('Order')")))
    assert "unavailable" in text
    for internal in (endpoint, "127.0.0.1", "endpoint URL", "Could not connect", "botocore"):
        assert internal not in text, text
    assert run(gateway, "'back'") == "back"  # and the next call works


# -- defended: the tenants' data and the API keys in the shared table -----------------------------------------


VICTIM_DATA = ("victim-only", "victim-shared", "victim-note")

READS = """
const attempt = async (f) => { try { return await f() } catch (e) { return 'error: ' + e.message } }
;({
  list: await db.list('Order'),
  getVictimOnly: await db.get('Order', 'ord_victim'),
  byIds: await db.list('Order', { where: { id: { in: ['ord_victim', 'ord_shared'] } } }),
  byPrefix: await db.list('Order', { where: { id: { startsWith: 'ord_' } } }),
  byRange: await db.list('Order', { where: { id: { gte: 'a' } }, sort: { id: 'asc' } }),
  bySecret: await db.list('Order', { where: { secret: { startsWith: 'victim' } } }),
  cursor: await attempt(() => db.list('Order', { cursor: 'ord_victim' })),
  related: await db.related({ type: 'Order', id: 'ord_victim' }, undefined, 'both'),
  hashType: await attempt(() => db.list('Order#ord_victim')),
  hashId: await attempt(() => db.get('Order', 'ord_victim#x')),
  keyNote: await db.get('Note', 'KEY'),
})
"""

WRITES = """
const attempt = async (f) => { try { return await f() } catch (e) { return 'error: ' + e.message } }
;({
  update: await attempt(() => db.update('Order', 'ord_victim', { secret: 'owned' })),
  remove: await attempt(() => db.delete('Order', 'ord_victim')),
  removeNote: await attempt(() => db.delete('Note', 'KEY')),
  relate: await attempt(() =>
    db.relate({ type: 'Order', id: 'ord_shared' }, 'links', { type: 'Order', id: 'ord_victim' })),
  shared: await db.update('Order', 'ord_shared', { total: { $inc: 1 } }),
})
"""


@pytest.mark.parametrize("attacker", ["lookalike", "percent", "anonymous"])
def test_a_tenant_whose_name_looks_like_the_victims_keys_sees_and_changes_none_of_its_records(
    gateway: FakeGateway, keys: Keys, victim_records: Any, attacker: str
) -> None:
    key = {"lookalike": keys.lookalike, "percent": keys.percent, "anonymous": None}[attacker]
    if key is not None:
        # Its own record reuses the victim's id: a shared partition would show up as a duplicate or a mix.
        own = run(gateway, "await db.create('Order', { id: 'ord_shared', secret: 'attacker', total: 1 })", key)
        assert own["secret"] == "attacker"
    seen = run(gateway, READS, key)
    assert not [data for data in VICTIM_DATA if data in json.dumps(seen)], seen
    assert (seen["getVictimOnly"], seen["related"], seen["keyNote"], seen["bySecret"]) == (None, [], None, [])
    assert str(seen["cursor"]).startswith("error: Unknown cursor")
    if key is not None:
        assert [order["secret"] for order in seen["list"]] == ["attacker"]
        written = run(gateway, WRITES, key)
        assert (written["remove"], written["removeNote"]) == (False, False)
        assert written["update"].endswith("not found") and written["relate"].endswith("not found")
        assert written["shared"]["secret"] == "attacker"
    assert victim_state(gateway, keys) == victim_records


def test_record_ids_and_types_that_spell_other_adapters_keys_are_refused_or_kept_in_the_callers_partition(
    gateway: FakeGateway, keys: Keys, function_env: dict[str, str]
) -> None:
    # Type and id as the other adapters' keys would need them: `KEY` / `LATEST` / `SET` are the sort keys of
    # API keys, modules and subscription sets; `#` and `%` would forge a partition key.
    accepted = [("KEY", "KEY"), ("LATEST", "LATEST"), ("SET", "SET"), ("KEYHASH", "KEY")]
    refused = [
        ("Note", "KEYHASH%23x"),
        ("KEY", "KEY#key_1"),
        ("MOD", "MOD#acme#https://acme.test/shared"),
        ("Order", "ord_victim#"),
        ("SUB#acme", "x"),
        ("ENT#acme#Order", "ord_victim"),
        ("Order%23x", "ord_victim"),
    ]
    before = {(item["pk"]["S"], item["sk"]["S"]): item for item in table_items(function_env)}
    attempts = run(
        gateway,
        "const attempt = async (f) => { try { return (await f()).id } catch (e) { return 'error: ' + e.message } }\n"
        "const out = []\n"
        f"for (const [type, id] of {json.dumps(accepted + refused)})\n"
        "  out.push(await attempt(() => db.create(type, { id, text: 'planted' })))\n"
        "out",
        keys.lookalike,
    )
    assert attempts[: len(accepted)] == [id for _, id in accepted]
    assert all(str(answer).startswith("error: ") for answer in attempts[len(accepted) :]), attempts
    after = table_items(function_env)
    # Nothing that existed changed (but the time a key was last used), and every new item is in the attacker's
    # own entity partitions or its own audit trail, where each execution is recorded.
    for item in after:
        key = (item["pk"]["S"], item["sk"]["S"])
        if key in before:
            assert _unused(item) == _unused(before[key]), key
        else:
            own_audit = f"AUDIT#{key_part(LOOKALIKE)}"
            assert item["pk"]["S"].startswith(f"ENT#{LOOKALIKE}#") or item["pk"]["S"] == own_audit, key
    api_keys = [item for item in after if item["pk"]["S"].startswith("KEY")]
    assert len(api_keys) == len([item for item in before.values() if item["pk"]["S"].startswith("KEY")])
    assert all(item["sk"]["S"] == "KEY" for item in api_keys)
    assert run(gateway, "user.current().tenant", keys.victim) == VICTIM  # the victim's key still works


def test_modules_of_lookalike_tenants_never_resolve_for_each_other(gateway: FakeGateway, keys: Keys) -> None:
    shared = "https://acme.test/shared"
    # `MOD#acme#Order#...` would be the victim's key for an id starting `Order#` if tenants were not encoded.
    for key, who, module_id in (
        (keys.victim, "victim", shared),
        (keys.victim, "victim-hash", "https://acme.test/x#y"),
        (keys.lookalike, "lookalike", shared),
        (keys.percent, "percent", shared),
    ):
        registered = value_of(invoke(gateway, tool_call(module=module(module_id, who)), key=key))
        assert registered["id"] == module_id
    use = f"import {{ who }} from '{shared}'\nwho()"
    assert run(gateway, use, keys.victim) == "victim"
    assert run(gateway, use, keys.lookalike) == "lookalike"
    assert run(gateway, use, keys.percent) == "percent"
    for attacker in (keys.lookalike, keys.percent, None):
        hashed = tool_call("import { who } from 'https://acme.test/x#y'\nwho()")
        refused = error_of(invoke(gateway, hashed, key=attacker))
        assert "no module is registered" in refused and "victim" not in refused
        by_path = error_of(invoke(gateway, tool_call("import { who } from '/x'\nwho()"), key=attacker))
        assert "victim" not in by_path
    assert run(gateway, use, keys.victim) == "victim"


def test_subscriptions_of_lookalike_tenants_stay_apart(gateway: FakeGateway, keys: Keys) -> None:
    source = "---\n$id: https://acme.test/subs\n---\n\non($.Order.created, async () => {})\n"
    for key in (keys.victim, keys.lookalike, keys.percent):
        assert value_of(invoke(gateway, tool_call(module=source), key=key))["handlers"]
    subscriptions = gateway.function.runtime.app.adapters.subscriptions

    async def matching() -> dict[str, list[str]]:
        return {
            tenant: [sub.handler.tenant for sub in await subscriptions.matching(tenant, "Order.created")]
            for tenant in (VICTIM, LOOKALIKE, PERCENT, "acme%2523Order")
        }

    with gateway.server.lock:  # type: ignore[attr-defined]
        found = gateway.function.runtime.run(matching())
    assert found == {VICTIM: [VICTIM], LOOKALIKE: [LOOKALIKE], PERCENT: [PERCENT], "acme%2523Order": []}


# -- defended: credentials -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(lambda k: f"Bearer {k.revoked}", id="revoked"),
        pytest.param(lambda k: "Bearer sk_unknown", id="unknown"),
        pytest.param(lambda k: f"Bearer {k.victim},Bearer sk_wrong", id="joined-good-then-bad"),
        pytest.param(lambda k: f"Bearer sk_wrong, Bearer {k.victim}", id="joined-bad-then-good"),
        pytest.param(lambda k: f"Basic {k.victim}", id="basic"),
        pytest.param(lambda k: "Bearer ", id="bearer-nothing"),
        pytest.param(lambda k: k.victim, id="no-scheme"),
        pytest.param(lambda k: f"Bearer {k.victim[:-1]}", id="truncated"),
        pytest.param(lambda k: f"Bearer {k.victim}\x00", id="trailing-nul"),
    ],
)
@pytest.mark.parametrize("shape", ["legacy", "modern", "notification", "base64"])
def test_a_bad_or_revoked_key_is_401_and_never_anonymous_whatever_the_request_looks_like(
    gateway: FakeGateway, keys: Keys, authorization: Any, shape: str, function_env: dict[str, str]
) -> None:
    body = tool_call("await db.create('Planted', { by: 'bad key' })")
    headers = {"Authorization": authorization(keys)}
    if shape == "modern":
        body["params"]["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        headers |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "do"}
    if shape == "notification":
        del body["id"]
    response = invoke(gateway, body, headers=headers, base64_body=shape == "base64")
    assert response["statusCode"] == 401, response
    challenge = header(response, "WWW-Authenticate") or ""
    assert challenge.startswith('Bearer error="invalid_token"')
    assert keys.victim not in json.dumps(response) and keys.revoked not in json.dumps(response)
    assert not [item for item in table_items(function_env) if "Planted" in item["pk"]["S"]]


def test_a_key_revoked_after_warming_its_sandbox_instance_is_refused_at_once(
    gateway: FakeGateway, function_env: dict[str, str]
) -> None:
    secret, key_id = create_key(function_env, "soon-gone", VICTIM)
    assert run(gateway, "globalThis.kept = 1\nuser.current().id", secret) == key_id
    assert mcpdo_cli(function_env, "keys", "revoke", key_id).returncode == 0
    assert invoke(gateway, tool_call("1"), key=secret)["statusCode"] == 401


# -- defended: anonymous callers cannot write ------------------------------------------------------------------


ANONYMOUS_WRITES = [
    "await db.create('Planted', { by: 'anonymous' })",
    "const d = db\nconst verb = ['cre', 'ate'].join('')\nawait d[verb]('Planted', { by: 'anonymous' })",
    "await (0, eval)('db.create')('Planted', { by: 'anonymous' })",
    "await db.update('Order', 'ord_victim', { secret: 'anonymous' })",
    "await db.delete('Order', 'ord_victim')",
    "await db.relate({ type: 'Order', id: 'ord_victim' }, 'x', { type: 'Order', id: 'ord_shared' })",
]


@pytest.mark.parametrize("script", ANONYMOUS_WRITES)
@pytest.mark.parametrize(
    "credential",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": ""}, id="empty-header"),
        pytest.param({"Authorization": "   "}, id="blank-header"),
        pytest.param({"MCP-Protocol-Version": "2024-11-05"}, id="oldest-version"),
    ],
)
def test_an_anonymous_write_is_refused_and_stores_nothing(
    gateway: FakeGateway,
    keys: Keys,
    function_env: dict[str, str],
    victim_records: Any,
    script: str,
    credential: dict[str, str],
) -> None:
    response = invoke(gateway, tool_call(script), headers=credential)
    text = error_of(response)
    assert "Readonly violations" in text or "Authentication required" in text, text
    assert not [item for item in table_items(function_env) if "Planted" in item["pk"]["S"]]
    assert victim_state(gateway, keys) == victim_records


def test_an_anonymous_module_registration_is_refused_in_both_generations(
    gateway: FakeGateway, function_env: dict[str, str]
) -> None:
    legacy = error_of(invoke(gateway, tool_call(module=module("https://anon.test/m", "anon"))))
    body = tool_call(module=module("https://anon.test/m", "anon"))
    body["params"]["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "do"}
    modern = error_of(invoke(gateway, body, headers=headers))
    assert "Authentication required" in legacy and "Authentication required" in modern
    assert not [item for item in table_items(function_env) if "anon.test" in item["pk"]["S"]]


# -- defended: hostile bodies and protocol games ----------------------------------------------------------------


def planted_count(env: Mapping[str, str]) -> int:
    return len([item for item in table_items(env) if item["pk"]["S"].startswith(f"ENT#{VICTIM}#Planted")])


PLANT = "await db.create('Planted', { by: 'hostile body' })"


PLANTING = json.dumps(tool_call(PLANT))
NESTED_PARAMS = PLANTING[:-1] + ',"x":' + "[" * 50_000 + "]" * 50_000 + "}"
MODERN_PLANTING = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "do"}


@pytest.mark.parametrize(
    ("body", "is_base64", "headers", "status"),
    [
        pytest.param("%%% not base64 %%%", True, {}, 400, id="invalid-base64"),
        pytest.param(base64.b64encode(PLANTING.encode()).decode() + "\n", True, {}, 400, id="base64-with-newline"),
        pytest.param(base64.b64encode(b"\xff\xfe" + PLANTING.encode()).decode(), True, {}, 400, id="not-utf8"),
        pytest.param(" " * (6 * 1024 * 1024 - 1) + "{}", False, {}, 413, id="just-over-6-MiB"),
        pytest.param("[" * 200_000 + "]" * 200_000, False, {}, 400, id="deeply-nested"),
        pytest.param(NESTED_PARAMS, False, {}, 400, id="deeply-nested-params"),
        pytest.param(json.dumps([tool_call(PLANT), tool_call(PLANT)]), False, {}, 400, id="batch"),
        pytest.param(json.dumps(tool_call(PLANT, id=True)), False, {}, 400, id="id-true"),
        pytest.param(json.dumps(tool_call(PLANT, id=None)), False, {}, 400, id="id-null"),
        pytest.param(json.dumps(tool_call(PLANT, id={"a": 1})), False, {}, 400, id="id-object"),
        pytest.param(json.dumps(tool_call(PLANT, id=1.5)), False, {}, 400, id="id-fraction"),
        pytest.param(PLANTING, False, {"MCP-Protocol-Version": "1999-01-01"}, 400, id="unknown-version"),
        pytest.param(PLANTING, False, {"MCP-Protocol-Version": "2025-11-25,2026-07-28"}, 400, id="versions-joined"),
        pytest.param(PLANTING, False, MODERN_PLANTING, 400, id="modern-without-envelope"),
        pytest.param(PLANTING, False, {"Content-Type": "text/plain"}, 400, id="text-plain"),
    ],
)
def test_a_hostile_body_is_refused_without_running_anything(
    gateway: FakeGateway,
    keys: Keys,
    function_env: dict[str, str],
    body: str,
    is_base64: bool,
    headers: dict[str, str],
    status: int,
) -> None:
    hostile = event(raw=b"", key=keys.victim, headers=headers)
    hostile["body"], hostile["isBase64Encoded"] = body, is_base64  # as API Gateway would put it in the event
    before = planted_count(function_env)
    response = gateway.invoke(hostile)
    assert response["statusCode"] == status, (response["statusCode"], response["body"][:300])
    assert "Traceback" not in response["body"] and 'File "' not in response["body"]
    assert planted_count(function_env) == before
    assert run(gateway, "'still serving'", keys.victim) == "still serving"


def test_a_notification_runs_nothing_and_answers_nothing(
    gateway: FakeGateway, keys: Keys, function_env: dict[str, str]
) -> None:
    body = tool_call(PLANT)
    del body["id"]
    before = planted_count(function_env)
    response = invoke(gateway, body, key=keys.victim)
    assert (response["statusCode"], response["body"]) == (202, "")
    assert planted_count(function_env) == before


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Host": SAMPLE_HOST + "."}, id="trailing-dot"),
        pytest.param({"Host": SAMPLE_HOST + ":443"}, id="port"),
        pytest.param({"Host": "evil.example"}, id="foreign"),
        pytest.param({"Host": f"evil.example,{SAMPLE_HOST}"}, id="joined"),
        pytest.param({"Host": f"{SAMPLE_HOST}.evil.example"}, id="suffix"),
        pytest.param({"Origin": "https://evil.example"}, id="origin-foreign"),
        pytest.param({"Origin": "null"}, id="origin-null"),
        pytest.param({"Origin": f"http://{SAMPLE_HOST}"}, id="origin-http"),
        pytest.param({"Origin": f"https://{SAMPLE_HOST}.evil.example"}, id="origin-suffix"),
        pytest.param({"Origin": ""}, id="origin-empty"),
    ],
)
def test_a_request_for_another_host_or_from_another_origin_runs_nothing(
    gateway: FakeGateway, keys: Keys, function_env: dict[str, str], headers: dict[str, str]
) -> None:
    before = planted_count(function_env)
    response = invoke(gateway, tool_call(PLANT), key=keys.victim, headers=headers)
    assert response["statusCode"] in (421, 403), response
    assert planted_count(function_env) == before


def test_without_a_host_header_the_domain_name_is_checked_instead(gateway: FakeGateway, keys: Keys) -> None:
    e = event(tool_call("1"), key=keys.victim)
    del e["headers"]["Host"]
    e["requestContext"]["domainName"] = "evil.example"
    assert gateway.invoke(e)["statusCode"] == 421
    e["requestContext"]["domainName"] = SAMPLE_HOST.upper()
    assert value_of(gateway.invoke(e)) == 1


# -- defended: nothing one caller does reaches the next one in the same execution environment ------------------


def test_globals_and_prototypes_a_caller_plants_are_gone_for_every_later_caller(
    gateway: FakeGateway, keys: Keys
) -> None:
    plant = (
        "globalThis.planted = 'victim'\n"
        "Object.prototype.polluted = 'victim'\n"
        "Array.prototype.map = function () { return ['victim'] }\n"
        "JSON.stringify = () => '\"victim\"'\n"
        "'planted'"
    )
    look = "[typeof planted, ({}).polluted ?? null, [1].map((x) => x + 1), JSON.stringify({ a: 1 })]"
    clean = ["undefined", None, [2], '{"a":1}']
    for _ in range(3):  # the victim's instance is kept for its next execution: plant again on it
        assert run(gateway, plant, keys.victim) == "planted"
    assert run(gateway, look, keys.lookalike) == clean
    assert run(gateway, look) == clean
    assert run(gateway, look, keys.reader) == clean
    assert run(gateway, look, keys.victim) == clean


def test_a_callers_unawaited_writes_never_run_as_the_next_caller(
    gateway: FakeGateway, keys: Keys, function_env: dict[str, str]
) -> None:
    run(gateway, "for (let i = 0; i < 20; i++) db.create('Late', { n: i })\n'left'", keys.lookalike)
    assert run(gateway, "await db.list('Late')", keys.victim) == []
    assert run(gateway, "await db.list('Late')") == []
    late = [item for item in table_items(function_env) if "#Late" in item["pk"]["S"]]
    assert {item["pk"]["S"] for item in late} <= {f"ENT#{LOOKALIKE}#Late"}


def test_who_a_call_runs_as_is_decided_per_invocation(gateway: FakeGateway, keys: Keys) -> None:
    answers = [
        run(gateway, "user.current()?.tenant ?? 'anonymous'", key)
        for key in (keys.victim, None, keys.lookalike, None, keys.percent, keys.victim)
    ]
    assert answers == [VICTIM, "anonymous", LOOKALIKE, "anonymous", PERCENT, VICTIM]


# -- defended: secrets and internals stay out of logs and answers ----------------------------------------------


@contextmanager
def captured_logs(*names: str) -> Iterator[StringIO]:
    """Every record of these loggers (and the root) at DEBUG, formatted as Powertools writes them."""
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LambdaPowertoolsFormatter())
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in (*names, "")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def test_no_key_authorization_header_or_script_reaches_the_logs(
    gateway: FakeGateway, keys: Keys, capfd: pytest.CaptureFixture[str]
) -> None:
    marker = "MARKER_of_the_script_text"
    with captured_logs("mcpdo", "mcp", "aws_lambda_powertools") as logs:
        for key in (keys.victim, keys.revoked, "sk_guessed_key_1234567890", None):
            invoke(gateway, tool_call(f"console.log('{marker}')\nthrow new Error('{marker}')"), key=key)
            invoke(gateway, rpc("tools/list"), key=key)
        invoke(gateway, tool_call("1"), headers={"Authorization": f"Token {keys.victim}"})
        invoke(gateway, rpc("no/such/method"), key=keys.victim)
    out, err = capfd.readouterr()
    written = logs.getvalue() + out + err
    assert "tool call" in written  # the observer's line was captured
    for secret in (keys.victim, keys.revoked, keys.victim[3:], "sk_guessed_key", "Bearer", marker):
        assert secret not in written, secret


def test_error_answers_name_no_table_endpoint_or_python_internals(
    gateway: FakeGateway, keys: Keys, function_env: dict[str, str], moto_endpoint: str
) -> None:
    scripts = [
        "await db.create('Blob', { x: 'a'.repeat(500000) })",
        "await db.list('Order', { cursor: 'nope' })",
        "await db.get('Order', 'x'.repeat(5000))",
        "import { x } from 'https://nowhere.test/m'\nx",
        "await db.list('Order', { where: { $where: 'x' } })",
    ]
    answers = [json.dumps(invoke(gateway, tool_call(script), key=keys.victim)) for script in scripts]
    answers.append(
        json.dumps(invoke(gateway, tool_call(module=module("https://acme.test/" + "a" * 1500, "x")), key=keys.victim))
    )
    answers.append(json.dumps(invoke(gateway, rpc("tools/call", {"name": "do", "arguments": "x"}), key=keys.victim)))
    for answer in answers:
        for internal in (
            function_env["MCPDO_TABLE"],
            moto_endpoint,
            "Traceback",
            'File "',
            "botocore",
            "arn:aws",
            "StateTable",
        ):
            assert internal not in answer, (internal, answer[:400])


def _unused(item: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in item.items() if name != "last_used_at"}
