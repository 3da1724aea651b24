"""A delivery runs its handler only while the module's owner may still receive the event: a grant withdrawn
from the owner's role (MCPDO_ROLES changed) stops the handlers of the events it covered before they act,
straight to the dead letters, and not the module's other handlers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from mcpdo.bootstrap import App, build_local
from mcpdo.ids import ulid
from mcpdo.ports import Event
from mcpdo.query import parse_list_options
from mcpdo.settings import Settings
from mcpdo.timeparse import format_iso, utc_now

pytestmark = pytest.mark.anyio

MODULE = """---
$id: /tests/two-handlers
---
on($.Alpha.ping, async (data) => { await db.create('Seen', { by: 'alpha', n: data.n }) })
on($.Beta.ping, async (data) => { await db.create('Seen', { by: 'beta', n: data.n }) })
"""

EVERYTHING = ["register:*", "subscribe:*", "create:*", "read:*"]
ALPHA_ONLY = ["register:*", "subscribe:Alpha.ping", "create:*", "read:*"]


async def started(data_dir: Path, ops_grants: list[str]) -> App:
    env = {"MCPDO_ROLES": json.dumps({"ops": ops_grants})}
    settings = replace(Settings.from_env(env), data_dir=data_dir, sandbox_pool_size=1, sandbox_pool_max=1)
    app = build_local(settings)
    await app.start(worker=False)
    return app


@pytest.fixture
async def registered(tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    """The module registered by an `ops` key while ops could subscribe to anything; the key's secret."""
    app = await started(tmp_path, EVERYTHING)
    try:
        secret, _ = await app.auth.create_key("ops", roles=("ops",))
        owner = await app.auth.authenticate(f"Bearer {secret}")
        result = await app.tool.call({"module": MODULE}, owner)
        assert not result.is_error, result.texts
    finally:
        await app.close()
    yield tmp_path, secret


async def publish(app: App, event_type: str, n: int) -> Event:
    event_id = f"evt_{ulid()}"
    event = Event(
        id=event_id,
        type=event_type,
        data={"n": n},
        source="test",
        time=format_iso(utc_now()),
        tenant="default",
        correlation_id=event_id,
    )
    await app.publisher.publish(event)
    return event


async def seen(app: App) -> list[tuple[str, int]]:
    rows = await app.adapters.store.list("default", "Seen", parse_list_options({}))
    return sorted((row["by"], row["n"]) for row in rows)


async def test_each_handler_of_a_module_runs_for_its_own_event(registered: tuple[Path, str]) -> None:
    data_dir, _ = registered
    app = await started(data_dir, EVERYTHING)
    try:
        await publish(app, "Alpha.ping", 1)
        await publish(app, "Beta.ping", 2)
        assert app.worker is not None
        await app.worker.run_once()
        assert await seen(app) == [("alpha", 1), ("beta", 2)]
    finally:
        await app.close()


async def test_a_withdrawn_subscribe_grant_stops_that_handler_and_not_its_neighbour(
    registered: tuple[Path, str],
) -> None:
    data_dir, _ = registered
    app = await started(data_dir, ALPHA_ONLY)
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
        assert beta_delivery.last_error is not None
        assert beta_delivery.last_error.startswith("Permission denied: subscribe Beta.ping (module ")
    finally:
        await app.close()
