"""Against a real OpenAI-compatible server, when the environment names one (MCPDO_AI_BASE_URL, and
MCPDO_AI_MODEL, MCPDO_AI_API_KEY as that server needs): generating a `$.Article` gives its properties."""

from __future__ import annotations

import os

import pytest
from mcpdo.adapters.openai_models import OpenAIModels
from mcpdo.identity import Identity
from mcpdo.sdk.ai import AiApi
from mcpdo.settings import Settings
from mcpdo.vocabulary import Vocabulary, default_schemas_dir

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.live,
    pytest.mark.skipif(
        not os.environ.get("MCPDO_AI_BASE_URL"),
        reason="no live model server: set MCPDO_AI_BASE_URL (and MCPDO_AI_MODEL, MCPDO_AI_API_KEY) to run it",
    ),
]


async def test_a_live_server_generates_an_article_with_headline_and_body() -> None:
    settings = Settings.from_env({**os.environ, "MCPDO_AI_PROVIDER": "openai"}).ai
    assert settings.base_url is not None
    models = OpenAIModels(settings.base_url, settings.api_key, timeout_s=settings.timeout_s)
    member = Identity.for_roles(id="live", auth_type="apiKey", tenant="live", roles=("member",))
    try:
        ai = AiApi(member, models, settings, Vocabulary.at(default_schemas_dir(None)))
        article = await ai.generate([{"prompt": "A three-sentence post about composting", "schema": "Article"}])
    finally:
        await models.close()
    assert isinstance(article["headline"], str) and article["headline"]
    assert isinstance(article["articleBody"], str) and article["articleBody"]
