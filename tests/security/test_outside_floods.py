"""A script that fires a thousand requests at once (`Promise.all`) cannot flood the model provider or take
the process's outgoing connections from other callers: each execution has a bound on what it has in flight,
and every request still completes, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from mcpdo.bootstrap import App, build_local
from mcpdo.identity import Identity
from mcpdo.sdk.web import REQUESTS_IN_FLIGHT
from mcpdo.settings import Settings

from tests.support.fake_models import FakeModelServer, fake_model_server
from tests.support.fake_web import FakeWeb, fake_web

pytestmark = pytest.mark.anyio

ATTACKER = Identity.for_roles(id="key_flood", auth_type="apiKey", tenant="t1", roles=("member",))


@pytest.fixture
def fakes() -> Iterator[tuple[FakeModelServer, FakeWeb]]:
    with fake_model_server() as models, fake_web() as web:
        yield models, web


@pytest.fixture
async def app(tmp_path: Path, fakes: tuple[FakeModelServer, FakeWeb]) -> AsyncIterator[App]:
    models, web = fakes
    env = {
        "MCPDO_AI_PROVIDER": "openai",
        "MCPDO_AI_BASE_URL": models.url,
        "MCPDO_AI_MODEL": "m",
        "MCPDO_AI_EMBED_MODEL": "e",
        "MCPDO_AI_BATCH_CONCURRENCY": "3",
        "MCPDO_FETCH_ALLOW": web.host_port,
    }
    settings = replace(Settings.from_env(env), data_dir=tmp_path, sandbox_pool_size=1, sandbox_pool_max=1)
    built = build_local(settings)
    await built.start(worker=False)
    yield built
    await built.close()


async def test_promise_all_over_fetches_keeps_a_bounded_number_in_flight(
    app: App, fakes: tuple[FakeModelServer, FakeWeb]
) -> None:
    _, web = fakes
    web.routes["/item"] = (200, {"ok": True})
    web.delay_s = 0.02
    script = f"(await Promise.all(Array.from({{ length: 40 }}, () => api.fetch('{web.url}/item')))).length"
    result = await app.executor.run_script(script, ATTACKER)
    assert result.value == 40
    assert 1 < web.most_in_flight <= REQUESTS_IN_FLIGHT


async def test_promise_all_over_model_calls_keeps_the_configured_number_in_flight(
    app: App, fakes: tuple[FakeModelServer, FakeWeb]
) -> None:
    models, _ = fakes
    models.delay_s = 0.02
    script = "(await Promise.all(Array.from({ length: 30 }, (_, i) => ai.embed('t' + i)))).length"
    result = await app.executor.run_script(script, ATTACKER)
    assert result.value == 30
    assert 1 < models.most_in_flight <= 3
