"""Tenants never mix: five callers of one real server (key A, key B, a reader in A, an OAuth token user
with a tenant of its own, anonymous) each write and read through every SDK call, import, event, schedule
and CLI listing, and none of them ever sees or changes what belongs to another tenant. Anonymous callers
read the public tenant, never the tenant the deployment's keys live in.

Every writer plants the same names (the same module `$id`, the same record types, the same event type),
so a lookup that forgot the tenant would find another's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.local_issuer import AUDIENCE, LocalIssuer
from tests.support.server import RunningServer, start_server, stop_server
from tests.support.sync import call_as, call_tool, run_script, wait_for

MODULE_ID = "https://matrix.test/watch"
MODULE = f"""---
$id: {MODULE_ID}
$type: Workflow
---
export const owner = (await db.list('Secret'))[0]?.text ?? null
on($.Ping.sent, async (data) => {{ await db.create('Seen', {{ from: data.from }}) }})
every('1 hour', async () => {{}})
"""


@dataclass(frozen=True)
class Caller:
    name: str
    tenant: str
    token: str | None
    writes: bool


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, issuer: LocalIssuer) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("matrix"), MCPDO_OAUTH_ISSUER=issuer.issuer, MCPDO_OAUTH_AUDIENCE=AUDIENCE
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def callers(server: RunningServer, issuer: LocalIssuer) -> dict[str, Caller]:
    token = issuer.token("olga", scope="mcp:write", extra_claims={"tenant": "t-oauth"}, exp_in=3600)
    return {
        "a": Caller("a", "tenant-a", server.new_key("a", "--tenant", "tenant-a"), True),
        "b": Caller("b", "tenant-b", server.new_key("b", "--tenant", "tenant-b"), True),
        "reader": Caller("reader", "tenant-a", server.new_key("ra", "--tenant", "tenant-a", "--role", "reader"), False),
        "oauth": Caller("oauth", "t-oauth", token, True),
        "anonymous": Caller("anonymous", "public", None, False),
    }


@pytest.fixture(scope="module")
def planted(server: RunningServer, callers: dict[str, Caller]) -> dict[str, dict[str, str]]:
    """Each writer's records, module and event; the ids of what it created."""
    ids: dict[str, dict[str, str]] = {}
    for caller in (c for c in callers.values() if c.writes):
        made = run_script(
            server,
            f"""const secret = await db.create('Secret', {{ text: '{caller.tenant}-secret' }})
const other = await db.create('Note', {{ text: 'note of {caller.tenant}' }})
await db.relate(secret, 'note', other)
({{ secret: secret.id, note: other.id }})""",
            caller.token,
        )
        failed, text = call_tool(server, caller.token, {"module": MODULE})
        assert not failed, text
        assert json.loads(text)["exports"] == ["owner"]
        run_script(server, f"await send($.Ping.sent, {{ from: '{caller.tenant}' }})", caller.token)
        ids[caller.tenant] = made
    for caller in (c for c in callers.values() if c.writes):
        wait_for(lambda c=caller: run_script(server, "(await db.list('Seen')).length", c.token) >= 1)
    return ids


def value(server: RunningServer, script: str, caller: Caller) -> Any:
    return run_script(server, script, caller.token)


def test_every_caller_reads_only_its_own_tenant(
    server: RunningServer, callers: dict[str, Caller], planted: dict[str, dict[str, str]]
) -> None:
    for caller in callers.values():
        secrets = value(server, "(await db.list('Secret')).map(s => s.text)", caller)
        own = [f"{caller.tenant}-secret"] if caller.tenant in planted else []
        assert secrets == own, caller.name
        seen = value(server, "(await db.list('Seen')).map(s => s.from)", caller)
        assert seen == ([caller.tenant] if caller.tenant in planted else []), caller.name
        for tenant, made in planted.items():
            mine = tenant == caller.tenant
            record = value(server, f"await db.get('Secret', '{made['secret']}')", caller)
            assert (record is not None) == mine, (caller.name, tenant)
            related = value(server, f"await db.related({{ type: 'Secret', id: '{made['secret']}' }}, 'note')", caller)
            assert (len(related) == 1) == mine, (caller.name, tenant)


def test_imports_resolve_in_the_callers_tenant_only(
    server: RunningServer, callers: dict[str, Caller], planted: dict[str, dict[str, str]]
) -> None:
    for caller in callers.values():
        failed, text = call_as(server, caller.token, f"import {{ owner }} from '{MODULE_ID}'\nowner")
        if caller.tenant in planted:
            assert not failed and json.loads(text) == f"{caller.tenant}-secret", (caller.name, text)
        else:
            assert failed and "no module is registered" in text, (caller.name, text)


def test_no_caller_can_write_into_or_over_another_tenant(
    server: RunningServer, callers: dict[str, Caller], planted: dict[str, dict[str, str]]
) -> None:
    attacker = callers["b"]
    victim = planted["tenant-a"]
    secret = f"{{ type: 'Secret', id: '{victim['secret']}' }}"
    attacks = (
        f"await db.update('Secret', '{victim['secret']}', {{ text: 'owned' }})",
        f"await db.delete('Secret', '{victim['secret']}')",
        f"await db.relate({secret}, 'x', {{ type: 'Note', id: '{victim['note']}' }})",
    )
    for attack in attacks:
        failed, text = call_as(server, attacker.token, attack)
        assert failed or json.loads(text) in (None, False), (attack, text)
    for name in ("reader", "anonymous"):
        failed, text = call_as(server, callers[name].token, "await db.create('Secret', { text: 'planted' })")
        assert failed and ("Permission denied: create Secret" in text or "Readonly violations" in text), text
    a = callers["a"]
    assert value(server, f"(await db.get('Secret', '{victim['secret']}')).text", a) == "tenant-a-secret"
    assert value(server, "(await db.list('Secret')).length", a) == 1


def test_the_cli_listings_are_per_tenant_and_show_the_tenant(
    server: RunningServer, callers: dict[str, Caller], planted: dict[str, dict[str, str]]
) -> None:
    def listing(*args: str) -> list[dict[str, Any]]:
        done = server.mcpdo(*args)
        assert done.returncode == 0, done.stderr
        result: list[dict[str, Any]] = json.loads(done.stdout)
        return result

    key_tenants = {c.tenant for c in callers.values() if c.token and c.token.startswith("sk_")}
    for tenant in planted:
        wait_for(lambda t=tenant: listing("runs", "list", "--tenant", t))
        commands = [("schedules", "list"), ("runs", "list"), ("audit", "list")]
        for command in commands + ([("keys", "list")] if tenant in key_tenants else []):
            rows = listing(*command, "--tenant", tenant)
            assert rows and {row["tenant"] for row in rows} == {tenant}, (command, tenant)
        assert listing("events", "dead-letters", "list", "--tenant", tenant) == []
        assert listing("outbox", "list", "--tenant", tenant) == []
    everyone = {row["tenant"] for row in listing("audit", "list", "--limit", "500")}
    assert {"tenant-a", "tenant-b", "t-oauth", "public"} <= everyone


def test_the_audit_trail_is_for_admins_of_the_tenant_only(
    server: RunningServer, callers: dict[str, Caller], planted: dict[str, dict[str, str]]
) -> None:
    for name in ("a", "reader", "anonymous", "oauth"):
        failed, text = call_as(server, callers[name].token, "await db.list('Execution')")
        assert failed and "Permission denied: list Execution" in text, (name, text)
    admin_a = server.new_key("admin-a", "--tenant", "tenant-a", "--role", "admin")
    entries = run_script(server, "await db.list('Execution', { limit: 500 })", admin_a)
    assert entries and {entry["tenant"] for entry in entries} == {"tenant-a"}
    assert "tenant-a-secret" not in json.dumps(entries)  # the trail keeps no script data
    failed, text = call_as(server, admin_a, "await db.create('Execution', { kind: 'forged' })")
    assert failed and "audit trail" in text
