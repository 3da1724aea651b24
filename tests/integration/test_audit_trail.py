"""The audit trail of a real server: each execution's entry says who ran what kind, how it ended and how
many SDK calls it made, with a hash of the code and nothing of its data; admins list it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.support.server import RunningServer
from tests.support.sync import call_as, call_tool, run_script, wait_for


def audit(server: RunningServer, *args: str) -> list[dict[str, Any]]:
    done = server.mcpdo("audit", "list", *args)
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, Any]] = json.loads(done.stdout)
    return entries


def test_each_execution_is_recorded_with_its_counts_and_outcome(server: RunningServer) -> None:
    key = server.new_key("audited", "--tenant", "audited")
    script = (
        "await db.create('Memo', { text: 'classified' }); await db.create('Memo', {}); (await db.list('Memo')).length"
    )
    assert run_script(server, script, key) == 2
    failed, _ = call_as(server, key, "throw new Error('classified')")
    assert failed
    latest = wait_for(lambda: (found := audit(server, "--tenant", "audited")) and len(found) >= 2 and found)
    error, ok = latest[0], latest[1]
    assert ok["kind"] == "script" and ok["outcome"] == "ok" and ok["authType"] == "apiKey"
    assert ok["calls"] == {"db.create": 2, "db.list": 1}
    assert ok["scriptHash"] == hashlib.sha256(script.encode()).hexdigest()
    assert error["outcome"] == "error" and error["errorKind"] == "ScriptRuntimeError"
    assert "classified" not in json.dumps(latest)


def test_module_registrations_and_handlers_are_recorded_too(server: RunningServer) -> None:
    key = server.new_key("audited-modules", "--tenant", "audited-modules")
    module = "---\n$id: https://audit.test/m\n---\non($.Thing.done, async () => { await db.list('Thing') })\n"
    failed, text = call_tool(server, key, {"module": module})
    assert not failed, text
    run_script(server, "await send($.Thing.done, {})", key)
    kinds = wait_for(
        lambda: {e["kind"] for e in audit(server, "--tenant", "audited-modules")} >= {"module", "handler", "script"}
    )
    assert kinds
    handler = next(e for e in audit(server, "--tenant", "audited-modules") if e["kind"] == "handler")
    assert handler["calls"]["db.list"] == 1 and handler["caller"].startswith("key_")


def test_an_admin_reads_the_own_tenants_trail_in_a_script(server: RunningServer) -> None:
    admin = server.new_key("trail-admin", "--tenant", "trail", "--role", "admin")
    run_script(server, "1 + 1", admin)
    entries = run_script(server, "await db.list('Execution', { limit: 5 })", admin)
    assert entries and all(entry["tenant"] == "trail" and entry["$type"] == "Execution" for entry in entries)
    older = run_script(server, f"await db.list('Execution', {{ before: '{entries[-1]['startedAt']}' }})", admin)
    assert all(entry["startedAt"] < entries[-1]["startedAt"] for entry in older)
