"""What a process keeps between deliveries (module versions, module owners' keys) stays per tenant and per
key: two tenants' modules with the same $id and version each run their own code in their own tenant, and
revoking one owner's key through the process stops that owner's handlers at once, even with keys kept for
a while, and nobody else's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from mcpdo.bootstrap import App, build_local
from mcpdo.settings import Settings

from tests.support.deliveries import publish, seen

pytestmark = pytest.mark.anyio


def module(marker: str) -> str:
    return f"""---
$id: /tests/same-id
---
on($.Order.created, async (data) => {{ await db.create('Seen', {{ by: '{marker}', n: data.n }}) }})
"""


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = replace(
        Settings.from_env({"MCPDO_KEY_CACHE_SECONDS": "300"}),
        data_dir=tmp_path,
        sandbox_pool_size=1,
        sandbox_pool_max=1,
    )
    built = build_local(settings)
    await built.start(worker=False)
    yield built
    await built.close()


async def owner_key(app: App, tenant: str, marker: str) -> str:
    secret, key = await app.auth.create_key(f"{tenant} owner", tenant=tenant)
    owner = await app.auth.authenticate(f"Bearer {secret}")
    result = await app.tool.call({"module": module(marker)}, owner)
    assert not result.is_error, result.texts
    return key.id


async def test_same_module_id_and_version_in_two_tenants_each_run_their_own_code(app: App) -> None:
    await owner_key(app, "acme", "acme code")
    await owner_key(app, "globex", "globex code")
    assert app.worker is not None
    for n in (1, 2):  # the second round runs on what the process kept from the first
        await publish(app, "Order.created", n, "acme")
        await publish(app, "Order.created", n, "globex")
        await app.worker.run_once()
    assert await seen(app, "acme") == [("acme code", 1), ("acme code", 2)]
    assert await seen(app, "globex") == [("globex code", 1), ("globex code", 2)]


async def test_revoking_one_owner_stops_its_handlers_at_once_and_no_one_else_s(app: App) -> None:
    acme_key = await owner_key(app, "acme", "acme code")
    await owner_key(app, "globex", "globex code")
    assert app.worker is not None
    await publish(app, "Order.created", 1, "acme")
    await publish(app, "Order.created", 1, "globex")
    await app.worker.run_once()  # both owners' keys are now kept by this process
    await app.auth.revoke_key(acme_key)
    stopped = await publish(app, "Order.created", 2, "acme")
    await publish(app, "Order.created", 2, "globex")
    await app.worker.run_once()
    [delivery] = await app.adapters.deliveries.deliveries(stopped.id)
    assert delivery.status == "dead"
    assert "revoked" in (delivery.last_error or "")
    assert await seen(app, "acme") == [("acme code", 1)]
    assert await seen(app, "globex") == [("globex code", 1), ("globex code", 2)]
