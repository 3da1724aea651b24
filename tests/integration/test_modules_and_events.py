"""Modules through the real tool: registration, events delivered by the worker, schedules, dead letters.

The reference's module examples run as written; where they call external services (`ai.generate`), the
call is replaced by the value it would return, and code-only examples get the frontmatter a module needs.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import connect, text_of, value_of
from tests.support.seed import ANALYTICS, ECOMMERCE, ORDER_FULFILLMENT, section
from tests.support.server import RunningServer, start_server, stop_server
from tests.support.sync import outbox, run_script, wait_for

pytestmark = pytest.mark.anyio


async def do(server: RunningServer, key: str | None = None, **arguments: str) -> Any:
    async with connect(server.url, key=key or server.admin_key) as client:
        return await client.call_tool("do", arguments)


async def value(server: RunningServer, script: str, key: str | None = None) -> Any:
    result = await do(server, key, script=script)
    return None if not result.is_error and text_of(result) == "undefined" else value_of(result)


def cli_json(server: RunningServer, *args: str) -> Any:
    done = server.mcpdo(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_the_reference_order_fulfillment_module_registers_and_its_handlers_fire(
    events_server: RunningServer,
) -> None:
    result = await do(events_server, module=ORDER_FULFILLMENT)
    summary = value_of(result)
    assert summary["id"] == "https://platform.do/workflows/order-fulfillment"
    assert summary["type"] == "Workflow"
    assert summary["version"] >= 1
    assert [h["event"] for h in summary["handlers"]] == ["Order.created", "Payment.completed"]
    assert [s["cron"] for s in summary["schedules"]] == ["0 */6 * * *"]
    assert summary["schedules"][0]["next"].endswith("Z")
    assert summary["exports"] == ["config"]

    order = await value(
        events_server,
        """const order = await db.create('Order', {
  customer: $.Person({ name: 'Ann', email: 'ann@example.com' }), status: 'pending', total: 10 })
await send($.Order.created, order)
order""",
    )
    mail = wait_for(lambda: [m for m in outbox(events_server) if m["to"] == "ann@example.com"])
    assert mail[0]["subject"] == "Order Confirmation"
    await value(events_server, f"await send($.Payment.completed, {{ orderId: '{order['id']}' }})")
    wait_for(lambda: _record(events_server, "Order", order["id"], lambda r: r["status"] == "paid"))


async def test_ecommerce_handlers_registered_by_an_exported_setup_function_fire_on_events(
    events_server: RunningServer,
) -> None:
    summary = value_of(await do(events_server, module=ECOMMERCE))
    assert summary["exports"] == ["setupEcommerceHandlers"]
    assert [h["event"] for h in summary["handlers"]] == [
        "Order.created",
        "Order.paid",
        "Order.shipped",
        "Product.lowStock",
        "Customer.inactive",
    ]
    ids = await value(
        events_server,
        """const customer = await db.create('Person', {
  name: 'Bo', email: 'bo@example.com' })
const order = await db.create('Order', {
  orderNumber: 'A-1', customerId: customer.id, total: 650, status: 'new' })
await send($.Order.created, order)
await send($.Order.paid, { orderId: order.id, amount: order.total })
;({ order: order.id })""",
    )
    mail = wait_for(lambda: [m for m in outbox(events_server) if m["to"] == "bo@example.com"])
    assert mail[0]["subject"] == "Order Confirmation #A-1"
    assert "Total: $650" in mail[0]["body"]
    order = wait_for(lambda: _record(events_server, "Order", ids["order"], lambda r: r["status"] == "processing"))
    assert order["processingStartedAt"].endswith("Z")


async def test_analytics_schedules_register_with_their_crons_and_fire_on_demand(events_server: RunningServer) -> None:
    summary = value_of(await do(events_server, module=ANALYTICS))
    assert [s["cron"] for s in summary["schedules"]] == ["0 9 * * *", "0 8 * * MON", "0 * * * *"]
    stale = await value(
        events_server,
        """await db.create('Order', { status: 'pending', total: 5,
  createdAt: new Date(Date.now() - 2 * 24 * 60 * 60 * 1000) })""",
    )
    listed = cli_json(events_server, "schedules", "list")
    hourly = next(s for s in listed if s["module"] == summary["id"] and s["schedule"] == "0 * * * *")
    daily = next(s for s in listed if s["module"] == summary["id"] and s["schedule"] == "0 9 * * *")
    assert events_server.mcpdo("schedules", "fire", hourly["id"]).returncode == 0
    assert events_server.mcpdo("schedules", "fire", daily["id"]).returncode == 0
    cancelled = wait_for(lambda: _record(events_server, "Order", stale["id"], lambda r: r["status"] == "cancelled"))
    assert cancelled["cancelReason"] == "stale"
    report = wait_for(lambda: [m for m in outbox(events_server) if m["subject"].startswith("Daily Sales Report")])
    assert '"totalOrders"' in report[0]["body"]


async def test_registering_the_same_id_again_replaces_its_handlers(events_server: RunningServer) -> None:
    def module(tag: str) -> str:
        return f"""---
$id: /workflows/replaceable
---
on($.Swap.tested, async (data) => {{
  await db.create('SwapMark', {{ tag: '{tag}', n: data.n }})
}})
"""

    first = value_of(await do(events_server, module=module("old")))
    second = value_of(await do(events_server, module=module("new")))
    assert second["version"] == first["version"] + 1
    await value(events_server, "await send($.Swap.tested, { n: 1 })")
    marks = wait_for(lambda: _list(events_server, "SwapMark"))
    time.sleep(0.5)
    assert [m["tag"] for m in _list(events_server, "SwapMark")] == ["new"]
    assert marks


async def test_a_failing_handler_is_retried_then_dead_lettered_and_replay_delivers_it(
    events_server: RunningServer,
) -> None:
    await do(
        events_server,
        module="""---
$id: /workflows/flaky
---
on($.Flaky.happened, async (data, event) => {
  console.log('attempt for', event.id)
  const flag = await db.get('Flag', 'flaky')
  if (!flag) throw new Error('kaput')
  await db.create('FlakyDone', { n: data.n })
})
""",
    )
    sent = await value(events_server, "await send($.Flaky.happened, { n: 7 })")
    dead = wait_for(
        lambda: [d for d in cli_json(events_server, "events", "dead-letters", "list") if d["eventId"] == sent["id"]]
    )
    assert dead[0]["attempts"] == 4
    assert "kaput" in dead[0]["lastError"]
    runs = [r for r in cli_json(events_server, "runs", "list", "--limit", "200") if r["eventId"] == sent["id"]]
    assert len(runs) == 4 and all(r["status"] == "error" for r in runs)
    assert runs[0]["logs"][0]["message"] == f"attempt for {sent['id']}"
    await value(events_server, "await db.create('Flag', { id: 'flaky' })")
    assert events_server.mcpdo("events", "dead-letters", "replay", dead[0]["id"]).returncode == 0
    done = wait_for(lambda: _list(events_server, "FlakyDone"))
    assert done[0]["n"] == 7


async def test_a_script_runs_its_own_handlers_before_send_resolves_and_warns_they_were_not_persisted(
    events_server: RunningServer,
) -> None:
    result = await do(events_server, script=section("// Register persistent event handlers", until="Use Case:"))
    assert not result.is_error, text_of(result)
    order = json.loads(text_of(result))
    assert order["total"] == 29.99 and order["customer"] == {"$type": "Person", "name": "Alice"}
    assert result.structured_content is not None
    assert "nothing was persisted" in result.structured_content["warnings"][0]


async def test_combined_execution_effects_are_visible_on_the_next_line(events_server: RunningServer) -> None:
    result = await value(
        events_server,
        """on($.Counter.bumped, async (data) => {
  await db.update('Counter', data.id, { n: { $inc: 1 } })
})
const counter = await db.create('Counter', { n: 0 })
await send($.Counter.bumped, { id: counter.id })
await send($.Counter.bumped, { id: counter.id })
;(await db.get('Counter', counter.id)).n""",
    )
    assert result == 2


async def test_a_module_and_a_script_in_one_call_share_the_modules_exports(events_server: RunningServer) -> None:
    result = await do(
        events_server,
        module="""---
$id: /lib/pricing
---
export function withTax(amount: number) {
  return Math.round(amount * 1.2 * 100) / 100
}
""",
        script="withTax(10)",
    )
    assert value_of(result) == 12
    assert result.structured_content is not None
    assert result.structured_content["module"]["exports"] == ["withTax"]
    imported = await value(events_server, "import { withTax } from '/lib/pricing'\nwithTax(100)")
    assert imported == 120


@pytest.mark.parametrize(
    ("module", "error"),
    [
        ("on($.A.b, () => {})", "frontmatter"),
        ("---\n$id: [unclosed\n---\n", "YAML"),
        ("---\n$type: Workflow\n---\non($.A.b, () => {})", "$id"),
        ("---\n$id: /bad/syntax\n---\non($.A.b, async () => {\n  const = 1\n})", "SyntaxError"),
        ("---\n$id: /bad/cron\n---\nevery('61 * * * *', async () => {})", "Invalid schedule"),
        ("---\n$id: /bad/fast\n---\nevery('30s', async () => {})", "Invalid schedule"),
        ("---\n$id: /bad/both-days\n---\nevery('0 9 1 * MON', async () => {})", "Invalid schedule"),
        (
            "---\n$id: /bad/import\n---\nimport { nope } from '/does/not/exist'\non($.A.b, () => nope())",
            "Cannot import",
        ),
    ],
)
async def test_a_bad_module_gets_a_clear_error_and_changes_nothing(
    events_server: RunningServer, module: str, error: str
) -> None:
    before = cli_json(events_server, "schedules", "list")
    result = await do(events_server, module=module)
    assert result.is_error
    assert error in text_of(result)
    assert cli_json(events_server, "schedules", "list") == before


async def test_anonymous_callers_cannot_register_modules(events_server: RunningServer) -> None:
    async with connect(events_server.url) as client:
        result = await client.call_tool("do", {"module": "---\n$id: /anon/x\n---\non($.A.b, () => {})"})
    assert result.is_error
    assert text_of(result) == "Authentication required for write operations"


def test_kill_9_while_handlers_run_loses_no_event_and_repeats_no_completed_effect(tmp_path: Path) -> None:
    server = start_server(tmp_path / "state", MCPDO_RETRY_BASE_MS="50")
    module = """---
$id: /workflows/jobs
---
on($.Job.queued, async (job) => {
  await new Promise((resolve) => setTimeout(resolve, 400))
  if (!(await db.get('Audit', 'audit_' + job.n))) await db.create('Audit', { id: 'audit_' + job.n, n: job.n })
  await send($.Email.send, { to: 'ops@example.com', subject: 'job ' + job.n })
})
"""
    import anyio

    async def setup() -> None:
        assert not (await do(server, module=module)).is_error
        sent = await value(server, "for (let n = 0; n < 12; n++) await send($.Job.queued, { n })\n'queued'")
        assert sent == "queued"

    try:
        anyio.run(setup)
        done_before = wait_for(lambda: (lambda n: n if n >= 2 else 0)(len(_list(server, "Audit"))), timeout=20)
    finally:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
    assert done_before < 12, "every handler finished before the kill; the test proves nothing"

    restarted = start_server(server.data_dir, MCPDO_RETRY_BASE_MS="50")
    restarted.admin_key = server.admin_key  # the key was created on the first start; a restart makes none
    try:
        audits = wait_for(
            lambda: (lambda rows: rows if len(rows) == 12 else None)(_list(restarted, "Audit")), timeout=40
        )
        assert sorted(a["n"] for a in audits) == list(range(12))
        time.sleep(1.0)
        mails = [m for m in outbox(restarted) if m["to"] == "ops@example.com"]
        assert sorted(m["subject"] for m in mails) == sorted(f"job {n}" for n in range(12))
        assert cli_json(restarted, "events", "dead-letters", "list") == []
    finally:
        stop_server(restarted)


def _list(server: RunningServer, kind: str) -> list[dict[str, Any]]:
    return list(run_script(server, f"await db.list('{kind}', {{ limit: 1000 }})"))


def _record(server: RunningServer, kind: str, record_id: str, check: Callable[[dict[str, Any]], bool]) -> Any:
    record = run_script(server, f"await db.get('{kind}', '{record_id}')")
    return record if record and check(record) else None


async def test_revoking_the_key_that_registered_a_module_stops_its_handlers(events_server: RunningServer) -> None:
    owner = events_server.new_key("module-owner")
    await do(
        events_server,
        owner,
        module="""---
$id: /workflows/owned
---
on($.Owned.happened, async (data) => { await db.create('OwnedEffect', { n: data.n }) })
""",
    )
    await value(events_server, "await send($.Owned.happened, { n: 1 })")
    wait_for(lambda: _list(events_server, "OwnedEffect"))
    key_id = next(k["id"] for k in cli_json(events_server, "keys", "list") if k["name"] == "module-owner")
    assert events_server.mcpdo("keys", "revoke", key_id).returncode == 0
    sent = await value(events_server, "await send($.Owned.happened, { n: 2 })")
    dead = wait_for(
        lambda: [d for d in cli_json(events_server, "events", "dead-letters", "list") if d["eventId"] == sent["id"]]
    )
    assert "which has been revoked" in dead[0]["lastError"]
    assert [e["n"] for e in _list(events_server, "OwnedEffect")] == [1]


async def test_errors_in_module_code_point_at_lines_of_the_module_text(events_server: RunningServer) -> None:
    module = """---
$id: /workflows/lines
title: Line numbers
---
# Heading

Some prose that is not code.

```ts
// an untagged fence is documentation
```

on($.Lines.checked, async (data) => {
  if (data.fail) throw new Error('handler broke')
})
const broken = undefined as any
broken.field = 1
"""
    result = await do(events_server, module=module)
    assert result.is_error
    assert text_of(result).startswith("Error: TypeError: ")
    assert text_of(result).endswith("at line 17:7")
    fixed = value_of(await do(events_server, module=module.replace("broken.field = 1", "")))
    assert fixed["version"] == 1  # the failed registration stored nothing
    sent = await value(events_server, "await send($.Lines.checked, { fail: true })")
    dead = wait_for(
        lambda: [d for d in cli_json(events_server, "events", "dead-letters", "list") if d["eventId"] == sent["id"]]
    )
    assert dead[0]["lastError"].startswith("Error: handler broke\n    at line 14:")


OWNED_V = """---
$id: /workflows/replayable
---
on($.Replay.asked, async (data) => { await db.create('ReplayEffect', { n: data.n, by: '%s' }) })
"""


async def test_a_revoked_owner_dead_letters_at_once_and_a_replay_runs_the_module_registered_since(
    events_server: RunningServer,
) -> None:
    first = events_server.new_key("replay-owner-1")
    await do(events_server, first, module=OWNED_V % "v1")
    key_id = next(k["id"] for k in cli_json(events_server, "keys", "list") if k["name"] == "replay-owner-1")
    assert events_server.mcpdo("keys", "revoke", key_id).returncode == 0
    sent = await value(events_server, "await send($.Replay.asked, { n: 7 })")
    dead = wait_for(
        lambda: [d for d in cli_json(events_server, "events", "dead-letters", "list") if d["eventId"] == sent["id"]]
    )
    # Another attempt could not succeed: no retries were spent on it.
    assert dead[0]["attempts"] == 1
    assert "which has been revoked" in dead[0]["lastError"]
    second = events_server.new_key("replay-owner-2")
    registered = value_of(await do(events_server, second, module=OWNED_V % "v2"))
    assert events_server.mcpdo("events", "dead-letters", "replay", dead[0]["id"]).returncode == 0
    effects = wait_for(lambda: [e for e in _list(events_server, "ReplayEffect") if e["n"] == 7])
    assert [e["by"] for e in effects] == ["v2"]
    runs = cli_json(events_server, "runs", "list")
    replayed = [r for r in runs if r["eventId"] == sent["id"] and r["status"] == "ok"]
    assert replayed[0]["version"] == registered["version"]


async def test_a_replay_is_refused_when_the_module_was_registered_again_without_that_handler(
    events_server: RunningServer,
) -> None:
    owner = events_server.new_key("replay-gone")
    module = "---\n$id: /workflows/replay-gone\n---\non($.Gone.asked, async () => { throw new Error('no') })\n"
    await do(events_server, owner, module=module)
    sent = await value(events_server, "await send($.Gone.asked, {})")
    dead = wait_for(
        lambda: [d for d in cli_json(events_server, "events", "dead-letters", "list") if d["eventId"] == sent["id"]],
        timeout=30,
    )
    await do(events_server, owner, module="---\n$id: /workflows/replay-gone\n---\nexport const nothing = 1\n")
    done = events_server.mcpdo("events", "dead-letters", "replay", dead[0]["id"])
    assert done.returncode != 0
    assert "has no handler #0 for Gone.asked" in done.stderr
    assert [
        d["id"] for d in cli_json(events_server, "events", "dead-letters", "list") if d["eventId"] == sent["id"]
    ] == [dead[0]["id"]]


async def test_a_schedule_id_shared_by_two_tenants_is_fired_only_with_its_tenant_named(
    events_server: RunningServer,
) -> None:
    module = "---\n$id: /jobs/nightly\n---\nevery('0 3 * * *', async () => { await db.create('Nightly', {}) })\n"
    alpha = events_server.new_key("alpha-admin", "--tenant", "alpha")
    beta = events_server.new_key("beta-admin", "--tenant", "beta")
    await do(events_server, alpha, module=module)
    await do(events_server, beta, module=module)
    ids = {
        s["tenant"]: s["id"]
        for s in cli_json(events_server, "schedules", "list")
        if s["module"].endswith("/jobs/nightly")
    }
    assert ids["alpha"] == ids["beta"]
    ambiguous = events_server.mcpdo("schedules", "fire", ids["alpha"])
    assert ambiguous.returncode != 0
    assert "exists in several tenants (alpha, beta): name one with --tenant" in ambiguous.stderr
    assert events_server.mcpdo("schedules", "fire", ids["beta"], "--tenant", "beta").returncode == 0
    wait_for(lambda: run_script(events_server, "await db.list('Nightly')", key=beta))
    assert run_script(events_server, "await db.list('Nightly')", key=alpha) == []
