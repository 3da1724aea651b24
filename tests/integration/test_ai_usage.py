"""Token usage of an execution, through the real wiring (build_local, the runner, the OpenAI-compatible adapter
against a fake model server): in the result, and one log line per execution, also when the script fails."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from mcpdo.bootstrap import App, build_local
from mcpdo.errors import McpdoError
from mcpdo.identity import Identity
from mcpdo.settings import Settings

from tests.support.fake_models import FakeModelServer, fake_model_server

pytestmark = pytest.mark.anyio

MEMBER = Identity.for_roles(id="key_usage", auth_type="apiKey", tenant="t1", roles=("member",))


@pytest.fixture
def models() -> Iterator[FakeModelServer]:
    with fake_model_server() as fake:
        yield fake


@pytest.fixture
async def app(tmp_path: Path, models: FakeModelServer) -> AsyncIterator[App]:
    env = {
        "MCPDO_AI_PROVIDER": "openai",
        "MCPDO_AI_BASE_URL": models.url,
        "MCPDO_AI_MODEL": "m",
        "MCPDO_AI_EMBED_MODEL": "e",
    }
    settings = replace(Settings.from_env(env), data_dir=tmp_path, sandbox_pool_size=1, sandbox_pool_max=1)
    built = build_local(settings)
    await built.start(worker=False)
    yield built
    await built.close()


async def test_usage_is_in_the_result_and_logged_once_per_execution(app: App, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mcpdo.ai"):
        result = await app.executor.run_script("await ai.generate({ prompt: 'a' })\nawait ai.embed('b')\n1", MEMBER)
        plain = await app.executor.run_script("1", MEMBER)
    assert result.usage == {"inputTokens": 11 + 3, "outputTokens": 7, "modelCalls": 2}
    assert plain.usage is None
    lines = [r.getMessage() for r in caplog.records if r.name == "mcpdo.ai"]
    assert lines == ["ai usage for script:key_usage: 14 input tokens, 7 output tokens, 2 model calls"]


async def test_the_tokens_of_a_script_that_fails_afterwards_are_still_logged(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mcpdo.ai"), pytest.raises(McpdoError, match="boom"):
        await app.executor.run_script("await ai.generate({ prompt: 'a' })\nthrow new Error('boom')", MEMBER)
    assert any("1 model calls" in r.getMessage() for r in caplog.records if r.name == "mcpdo.ai")
