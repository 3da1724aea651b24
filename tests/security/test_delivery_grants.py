"""A handler runs only while its module's owner may still receive the event. A grant withdrawn from the
owner's role (MCPDO_ROLES changed) stops the handlers of the events it covered before they act, straight to
the dead letters, and not the module's other handlers. Nor can a module keep a handler running by saying
something else at delivery time: a delivery re-runs the module's top level, and hostile code can tell a
delivery from a registration (by timing, say) and then register its handler under a pattern or a kind the
owner may still use; the host decides from the owner's grants and the event, never from what the code
registers then."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from mcpdo.bootstrap import App, build_local
from mcpdo.settings import Settings
from mcpdo.timeparse import utc_now

from tests.support.deliveries import publish, seen

pytestmark = pytest.mark.anyio

# Handler 0 is a probe, never delivered: while registering, its on() waits for the host; in a delivery it
# resolves at once. Handler 1 was registered for $.Beta.ping and claims $.Alpha.ping in a delivery.
SPOOFED_PATTERN = """---
$id: /tests/spoof
---
let delivery = false
on($.Probe.never, async () => {}).then(() => { delivery = true })
await null; await null; await null; await null
on(delivery ? $.Alpha.ping : $.Beta.ping, async (data) => { await db.create('Seen', { by: 'beta', n: data.n }) })
"""

# A schedule registered with every(), claimed as an on() in a delivery.
SPOOFED_KIND = """---
$id: /tests/spoof-schedule
---
let delivery = false
on($.Probe.never, async () => {}).then(() => { delivery = true })
await null; await null; await null; await null
const h = async () => { await db.create('Seen', { by: 'schedule', n: 0 }) }
if (delivery) on($.Anything.at.all, h); else every('5m', h)
"""

TWO_HANDLERS = """---
$id: /tests/two-handlers
---
on($.Alpha.ping, async (data) => { await db.create('Seen', { by: 'alpha', n: data.n }) })
on($.Beta.ping, async (data) => { await db.create('Seen', { by: 'beta', n: data.n }) })
"""

# Subscribed with one pattern, delivered under a grant for another pattern that matches the same events.
WILDCARD = """---
$id: /tests/wildcard
---
on($.Order.created, async (data) => { await db.create('Seen', { by: 'order', n: data.n }) })
"""

EVERYTHING = ["register:*", "subscribe:*", "schedule:*", "create:*", "read:*"]
ALPHA_ONLY = ["register:*", "subscribe:Alpha.ping", "create:*", "read:*"]
NO_SCHEDULE = ["register:*", "subscribe:*", "create:*", "read:*"]
ORDERS = ["register:*", "subscribe:Order.*", "create:*", "read:*"]


async def started(data_dir: Path, ops_grants: list[str]) -> App:
    env = {"MCPDO_ROLES": json.dumps({"ops": ops_grants})}
    settings = replace(Settings.from_env(env), data_dir=data_dir, sandbox_pool_size=1, sandbox_pool_max=1)
    app = build_local(settings)
    await app.start(worker=False)
    return app


async def register(data_dir: Path, text: str) -> None:
    app = await started(data_dir, EVERYTHING)
    try:
        secret, _ = await app.auth.create_key("ops", roles=("ops",))
        owner = await app.auth.authenticate(f"Bearer {secret}")
        result = await app.tool.call({"module": text}, owner)
        assert not result.is_error, result.texts
    finally:
        await app.close()


async def test_each_handler_of_a_module_runs_for_its_own_event(tmp_path: Path) -> None:
    await register(tmp_path, TWO_HANDLERS)
    app = await started(tmp_path, EVERYTHING)
    try:
        await publish(app, "Alpha.ping", 1)
        await publish(app, "Beta.ping", 2)
        assert app.worker is not None
        await app.worker.run_once()
        assert await seen(app) == [("alpha", 1), ("beta", 2)]
    finally:
        await app.close()


async def test_a_withdrawn_subscribe_grant_stops_that_handler_and_not_its_neighbour(tmp_path: Path) -> None:
    await register(tmp_path, TWO_HANDLERS)
    app = await started(tmp_path, ALPHA_ONLY)
    try:
        alpha = await publish(app, "Alpha.ping", 1)
        beta = await publish(app, "Beta.ping", 2)
        assert app.worker is not None
        await app.worker.run_once()
        assert await seen(app) == [("alpha", 1)]
        [alpha_delivery] = await app.adapters.deliveries.deliveries(alpha.id)
        assert alpha_delivery.status == "done"
        [beta_delivery] = await app.adapters.deliveries.deliveries(beta.id)
        assert beta_delivery.status == "dead"
        assert (beta_delivery.last_error or "").startswith("Permission denied: subscribe Beta.ping (module ")
    finally:
        await app.close()


async def test_a_handler_claiming_an_allowed_pattern_in_a_delivery_is_still_refused(tmp_path: Path) -> None:
    await register(tmp_path, SPOOFED_PATTERN)
    app = await started(tmp_path, ALPHA_ONLY)
    try:
        beta = await publish(app, "Beta.ping", 2)
        assert app.worker is not None
        await app.worker.run_once()
        [delivery] = await app.adapters.deliveries.deliveries(beta.id)
        assert delivery.status == "dead"
        assert (delivery.last_error or "").startswith("Permission denied: subscribe Beta.ping")
        assert await seen(app) == []
    finally:
        await app.close()


async def test_a_schedule_claiming_to_be_a_subscription_in_a_delivery_is_still_refused(tmp_path: Path) -> None:
    await register(tmp_path, SPOOFED_KIND)
    app = await started(tmp_path, NO_SCHEDULE)
    try:
        [entry] = await app.adapters.schedules.list("default")
        event = await app.deliveries.fire(entry, utc_now())
        assert app.worker is not None
        await app.worker.run_once()
        [delivery] = await app.adapters.deliveries.deliveries(event.id)
        assert delivery.status == "dead"
        assert (delivery.last_error or "").startswith("Permission denied: schedule")
        assert await seen(app) == []
    finally:
        await app.close()


async def test_a_grant_for_a_pattern_that_covers_the_event_lets_its_handlers_run(tmp_path: Path) -> None:
    await register(tmp_path, WILDCARD)
    app = await started(tmp_path, ORDERS)
    try:
        await publish(app, "Order.created", 7)
        assert app.worker is not None
        await app.worker.run_once()
        assert await seen(app) == [("order", 7)]
    finally:
        await app.close()
